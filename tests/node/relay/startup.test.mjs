// Valkey down when the gateways start: they start anyway, report relay "down", serve local-only, retry with
// backoff (at most ~2 s apart) and relay once Valkey comes up, without a restart. Also: relay "disabled".
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect, emitAck, expectNothing, startGateway, assertAlive, sleep } from "../lib/gateway.mjs";
import { freePort } from "../lib/procs.mjs";
import { startValkey, redisClient, closeAllRedis, clientList, pubsubNumsub, until, singleNodeFault } from "../lib/valkey.mjs";
import { startRelayStack, startNodePeer, peerClient, readyz, waitRelay, recorder, assertExactlyOnce } from "./helpers.mjs";

let port, valkey, s, A, B, P;
const extra = [];
before(async () => {
  port = await freePort();
  s = await startRelayStack({ valkeyUrl: `redis://127.0.0.1:${port}`, gateways: 2, waitUp: false });
  [A, B] = s.gws;
});
after(async () => {
  await P?.close();
  await Promise.all(extra.map((g) => g.stop()));
  await s?.stop();
  closeAllRedis();
  await valkey?.stop();
});

let aliceA, bobA, bobB;

test("Valkey unreachable at start: both gateways listen and answer /readyz 200 {ready:true, relay:'down'}", { skip: singleNodeFault }, async () => {
  for (const gw of [A, B]) {
    await waitRelay(gw, "down", 5000);
    const r = await readyz(gw);
    assert.deepEqual({ status: r.status, ready: r.body.ready, relay: r.body.relay }, { status: 200, ready: true, relay: "down" });
    assertAlive(gw);
  }
});

test("local-only meanwhile: sockets connect, sends are acked and delivered on the same instance only", { skip: singleNodeFault }, async () => {
  [aliceA, bobA, bobB] = await Promise.all([
    connect(A.url, s.cookies.alice),
    connect(A.url, s.cookies.bob),
    connect(B.url, s.cookies.bob),
  ]);
  const content = `local-only ${Date.now()}`;
  const rec = recorder({ aliceA, bobA }, "message:new", (m) => m?.content === content);
  const t0 = Date.now();
  const ack = await emitAck(aliceA, "message:send", { channelId: "c1", content });
  assert.equal(ack?.ok, true, JSON.stringify(ack));
  assert.ok(Date.now() - t0 < 2500, `the ack took ${Date.now() - t0} ms with Valkey down`);
  await assertExactlyOnce(rec, ["aliceA", "bobA"], [], { label: "local-only" });
});

test("Valkey starts: both gateways go 'up' within the backoff (≤ ~2 s + connect) and relay A ↔ B", { skip: singleNodeFault }, async (t) => {
  await sleep(2500); // let the gateways fail a few retries first
  valkey = await startValkey({ port });
  const started = Date.now();
  const upA = await waitRelay(A, "up", 6000);
  const upB = await waitRelay(B, "up", 6000);
  const total = Date.now() - started;
  t.diagnostic(`"up" on A ${upA} ms after Valkey answered PING, both up after ${total} ms`);
  assert.ok(upA < 4000, `A took ${upA} ms to reconnect (backoff should be at most ~2 s)`);
  for (const gw of [A, B]) assert.match(gw.output(), /relay connected/, `no "relay connected" line on ${gw.url}`);

  for (const [sender, yes, label] of [
    [aliceA, ["aliceA", "bobA", "bobB"], "A → B"],
    [bobB, ["aliceA", "bobA", "bobB"], "B → A"],
  ]) {
    const content = `after start ${label} ${Date.now()}`;
    const rec = recorder({ aliceA, bobA, bobB }, "message:new", (m) => m?.content === content);
    const ack = await emitAck(sender, "message:send", { channelId: "c1", content });
    assert.equal(ack?.ok, true, JSON.stringify(ack));
    await assertExactlyOnce(rec, yes, [], { label });
  }
});

test("sockets connected before Valkey came up are visible to a Node peer (fetchSockets) and reachable", { skip: singleNodeFault }, async () => {
  P = await startNodePeer(valkey.url);
  // The Node adapter counts the servers that must answer by NUMSUB of the request channel when
  // it asks: wait until the peer's own subscription is counted too (both gateways + the peer),
  // or it expects one answer too few and resolves without one of the gateways' sockets.
  const admin = redisClient(valkey.url);
  const ch = "socket.io-request#/#";
  await until(async () => (await pubsubNumsub(admin, [ch]))[ch] >= 3, { ms: 5000, what: `NUMSUB ${ch} >= 3` });
  const sockets = await P.io.in("channel:c1").fetchSockets();
  assert.deepEqual(sockets.map((x) => x.id).sort(), [aliceA.id, bobA.id, bobB.id].sort());
  const pc = await peerClient(P, ["channel:c1"]);
  try {
    const tag = `peer ${Date.now()}`;
    const rec = recorder({ aliceA, bobA, bobB, pc }, "from-peer", (x) => x === tag);
    P.io.to("channel:c1").emit("from-peer", tag);
    await assertExactlyOnce(rec, ["aliceA", "bobA", "bobB", "pc"], [], { label: "peer → gateways" });
  } finally {
    pc.close();
  }
});

test("relay disabled: /readyz says relay 'disabled' and the gateway opens no Valkey connection", { skip: singleNodeFault }, async () => {
  const admin = redisClient(valkey.url);
  const before = (await clientList(admin)).length;
  const gw = await startGateway({ appUrl: s.app.url, env: { GATEWAY_REDIS__ENABLED: "false", REDIS_URL: valkey.url } });
  extra.push(gw);
  const r = await readyz(gw);
  assert.deepEqual({ status: r.status, ready: r.body.ready, relay: r.body.relay }, { status: 200, ready: true, relay: "disabled" });
  const sock = await connect(gw.url, s.cookies.bob);
  // A c1 message from an enabled gateway does not reach the disabled one.
  const none = expectNothing(sock, "message:new", 500);
  const ack = await emitAck(aliceA, "message:send", { channelId: "c1", content: `not for the disabled one ${Date.now()}` });
  assert.equal(ack?.ok, true);
  await none;
  await sleep(200);
  assert.equal((await clientList(admin)).length, before, "the disabled gateway connected to Valkey");
  sock.close();
});
