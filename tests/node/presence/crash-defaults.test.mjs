// The shipped presence timings (heartbeat 2 s, TTL 6 s, grace 4 s): after a SIGKILL of one instance, its users
// go offline on the survivor within TTL + heartbeat. Reports the measured time.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect, sleep } from "../lib/gateway.mjs";
import { stopProcess } from "../lib/procs.mjs";
import { startValkey, closeAllRedis } from "../lib/valkey.mjs";
import { startRelayStack } from "../relay/helpers.mjs";
import { presenceRecorder, expectUpdates } from "./helpers.mjs";

const HEARTBEAT_MS = 2000;
const TTL_MS = 6000;

let valkey, s, A, B;
before(async () => {
  valkey = await startValkey();
  s = await startRelayStack({ valkeyUrl: valkey.url, gateways: 2 });
  [A, B] = s.gws;
});
after(async () => {
  await s?.stop();
  closeAllRedis();
  await valkey?.stop();
});

test(`default timings: SIGKILL → offline on the survivor within TTL + heartbeat (${TTL_MS} + ${HEARTBEAT_MS} ms)`, async (t) => {
  const bobB = await connect(B.url, s.cookies.bob);
  const rec0 = presenceRecorder({ bobB });
  await connect(A.url, s.cookies.alice);
  await rec0.waitAll(["bobB"], s.users.alice.id, "online");
  rec0.stop();
  await sleep(HEARTBEAT_MS);
  const rec = presenceRecorder({ bobB });
  const killedAt = Date.now();
  await stopProcess(A.proc, { signal: "SIGKILL" });
  const first = await expectUpdates(rec, ["bobB"], s.users.alice.id, "offline", { ms: TTL_MS + HEARTBEAT_MS + 5000 });
  rec.stop();
  const measured = first.bobB.at - killedAt;
  t.diagnostic(`default timings: SIGKILL → offline on the survivor in ${measured} ms`);
  assert.ok(measured >= TTL_MS - HEARTBEAT_MS - 100, `offline after ${measured} ms`);
  assert.ok(measured <= TTL_MS + HEARTBEAT_MS + 1000, `offline after ${measured} ms`);
});
