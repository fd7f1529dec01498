// What a peak leaves behind: one gateway (with Valkey, the fixture app and recovery, as in the
// matrix) is filled with N sockets, every socket closes, and after a wait (past the session
// cache's TTL and two of the gateway's 30 s memory checks) its RSS and open files are read
// again; several rounds show whether a second peak reuses what the first one left.
//
//   CARGO_PROFILE=release VALKEY_SERVER=.cache/bin/valkey-server \
//     node tests/node/chaos/peak.mjs [--sockets 10000] [--rounds 2] [--wait-s 100]
//
// Prints one line per stage; exits 0 (it measures, RELIABILITY.md "The soak" reads it).
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { startFleet } from "./fleet.mjs";
import { ensureUsers, procUsage, startChaosStack } from "./stack.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const { values } = parseArgs({
  options: {
    sockets: { type: "string", default: "10000" },
    rounds: { type: "string", default: "2" },
    "wait-s": { type: "string", default: "100" },
    out: { type: "string", default: path.join(os.tmpdir(), `peak-${Date.now()}`) },
  },
});
const sockets = Number(values.sockets);
const users = ensureUsers(Math.max(sockets, 20000));
const stack = await startChaosStack({ dir: values.out, users, gateways: 1 });
const gw = stack.gws[0];
const report = (stage) => {
  const u = gw.usage();
  console.log(`${stage}: RSS ${(u.rssKiB / 1024).toFixed(1)} MiB, open files ${u.fds}`);
};
try {
  await sleep(2000);
  report("before");
  for (let round = 1; round <= Number(values.rounds); round++) {
    const fleet = await startFleet({ sockets, usersFile: users.usersFile, targets: [gw.addr], recordDir: values.out, inflight: 2000 });
    await fleet.connect(0, sockets, 60);
    while ((await fleet.stats()).connected < sockets) await sleep(1000);
    report(`round ${round}, ${sockets} sockets`);
    await fleet.leave();
    await sleep(3000);
    await fleet.stop();
    await sleep(Number(values["wait-s"]) * 1000);
    report(`round ${round}, ${values["wait-s"]} s after every socket closed`);
  }
} finally {
  await stack.stop();
}
