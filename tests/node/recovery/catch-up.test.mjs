// A gateway's subscriber connection lost while its sockets stay connected (a Valkey stall, a
// partition, `CLIENT KILL`): Pub/Sub keeps nothing for a lost connection, so whatever the
// recovery channels carried meanwhile never reached that gateway's sockets, and since they did
// not disconnect, no recovery would bring it (the fault matrix lost 46,356 logged messages in a
// 20 s partition). The gateway must make up for it from the log when it subscribes again: every
// message once, in order, before newer ones.
import { test, before, after } from "node:test";
import { execFileSync } from "node:child_process";
import assert from "node:assert/strict";
import { connect, emitAck, sleep } from "../lib/gateway.mjs";
import { startValkey, redisClient, closeAllRedis, nodesOf } from "../lib/valkey.mjs";
import { startRelayStack } from "../relay/helpers.mjs";

let valkey, s, A, B;

/** Kills gateway `gw`'s subscriber connection (its Pub/Sub client in Valkey's CLIENT LIST). */
async function killSubscriberOf(gw, admin) {
  const pid = gw.proc.child.pid;
  const ports = execFileSync("ss", ["-tnpH", "state", "established"])
    .toString()
    .split("\n")
    .filter((l) => l.includes(`pid=${pid},`))
    .map((l) => l.trim().split(/\s+/)[2]?.split(":").pop());
  let killed = 0;
  // Every node the gateway may subscribe on (a Cluster's primaries).
  for (const node of nodesOf(admin)) {
    const clients = String(await node.call("CLIENT", "LIST", "TYPE", "pubsub")).split("\n");
    const mine = clients.filter((c) => ports.some((p) => c.includes(`addr=127.0.0.1:${p} `)));
    for (const c of mine) killed += Number(await node.call("CLIENT", "KILL", "ID", /id=(\d+)/.exec(c)[1]));
  }
  return killed;
}
before(async () => {
  valkey = await startValkey();
  s = await startRelayStack({ valkeyUrl: valkey.url, gateways: 2, gatewayEnv: { GATEWAY_RECOVERY__ENABLED: "true" } });
  [A, B] = s.gws;
});
after(async () => {
  await s?.stop();
  closeAllRedis();
  await valkey?.stop();
});

test("subscriber connections killed during traffic: the other gateway's socket gets every logged message once, in order", async () => {
  const bobA = await connect(A.url, s.cookies.bob);
  const aliceB = await connect(B.url, s.cookies.alice);
  const tag = `catch-up ${Date.now()}`;
  const got = [];
  bobA.on("message:new", (m) => {
    if (typeof m?.content === "string" && m.content.startsWith(tag)) got.push(Number(m.content.slice(tag.length + 1)));
  });
  const admin = redisClient(valkey.url);
  // Alice (on B) sends to c1 every 20 ms: B records each (its link to Valkey is untouched), so
  // every one is in the log; only A's subscriber connection is killed, again and again.
  let i = 0;
  let running = true;
  const acked = [];
  const pump = (async () => {
    while (running) {
      const n = i++;
      emitAck(aliceB, "message:send", { channelId: "c1", content: `${tag} ${n}` }).then((ack) => ack?.ok && acked.push(n), () => {});
      await sleep(20);
    }
  })();
  await sleep(500);
  let killed = 0;
  for (let k = 0; k < 10; k++) {
    killed += await killSubscriberOf(A, admin);
    await sleep(400);
  }
  running = false;
  await pump;
  await sleep(2000);
  assert.ok(killed >= 5, `subscriber connections killed: ${killed}`);
  assert.ok(acked.length > 50, `messages sent: ${acked.length}`);
  const missing = acked.filter((n) => !got.includes(n));
  assert.deepEqual(missing, [], `bob on A missed ${missing.length} of ${acked.length} logged messages`);
  assert.equal(new Set(got).size, got.length, "nothing twice");
  assert.deepEqual(got, [...got].sort((a, b) => a - b), "in order");
  assert.ok(bobA.connected, "bob's socket stayed connected");
});
