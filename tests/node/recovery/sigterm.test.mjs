// SIGTERM during traffic: the draining instance closes its sockets, they reconnect to the other instance and
// recover, and every message sent meanwhile arrives exactly once, in order.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect, emitAck, closeAllClients, sleep } from "../lib/gateway.mjs";
import { startValkey, closeAllRedis, until } from "../lib/valkey.mjs";
import { startRelayStack } from "../relay/helpers.mjs";
import { recoveryEnv, recoverable, nextConnect, closeRecoverable } from "./helpers.mjs";

let valkey, s, A, B;

before(async () => {
  valkey = await startValkey();
  s = await startRelayStack({
    valkeyUrl: valkey.url,
    gateways: 2,
    gatewayEnv: recoveryEnv(valkey.url, { GATEWAY_SERVER__DRAIN_WINDOW_MS: "600" }),
  });
  [A, B] = s.gws;
});
after(async () => {
  closeRecoverable();
  closeAllClients();
  await s?.stop();
  closeAllRedis();
  await valkey?.stop();
});

test("SIGTERM on A during traffic: A's clients recover on B with every message once, in order", async (t) => {
  const users = ["alice", "alice", "bob"];
  const socks = await Promise.all(users.map((u) => recoverable(A.url, s.cookies[u], { reconnectMs: 300 })));
  const sender = await connect(B.url, s.cookies.bob, { transports: ["websocket"] });
  const contents = (sock) => sock.got.filter((g) => g.event === "message:new").map((g) => g.args[0].content);

  let sending = true;
  const sent = [];
  const traffic = (async () => {
    for (let i = 0; sending && i < 400; i++) {
      const content = `t-${i}`;
      const ack = await emitAck(sender, "message:send", { channelId: "c1", content });
      if (ack?.ok) sent.push(content);
      await sleep(10);
    }
  })();
  await until(() => sent.length >= 10, { what: "traffic flowing" });

  const reconnected = socks.map((sock) => {
    sock.moveTo(B.url);
    return nextConnect(sock, 10000);
  });
  const t0 = Date.now();
  A.proc.child.kill("SIGTERM");
  const recovered = await Promise.all(reconnected);
  t.diagnostic(`all ${socks.length} back on B ${Date.now() - t0} ms after SIGTERM; recovered: ${recovered}`);
  await sleep(300);
  sending = false;
  await traffic;
  await sleep(500);
  assert.deepEqual(recovered, [true, true, true], "every socket recovered");
  for (const [i, sock] of socks.entries()) {
    const got = contents(sock);
    const first = sent.indexOf(got[0]);
    assert.ok(first >= 0, `socket ${i} got known messages`);
    assert.deepEqual(got, sent.slice(first), `socket ${i}: every message from its first on, once, in order`);
  }
  t.diagnostic(`${sent.length} messages sent; each socket got all of them from its first one on`);
});
