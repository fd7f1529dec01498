// @socket.io/redis-emitter 5.1.0 (what a Next.js API route would use) against two gateways on one Valkey:
// to(room).emit, except, emit to all, binary, socketsJoin, socketsLeave, disconnectSockets, serverSideEmit.
//
// Gateway A: alice1, bob1, carol; gateway B: alice2, bob2, dave.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Emitter } from "@socket.io/redis-emitter";
import { connect, emitAck, expectNothing, waitDisconnect, assertAlive } from "../lib/gateway.mjs";
import { startValkey, redisClient, closeAllRedis, pubsubNumsub, broadcastChannel, until } from "../lib/valkey.mjs";
import { startRelayStack, recorder, assertExactlyOnce } from "./helpers.mjs";

let valkey, s, A, B, emitter, admin;
let alice1, bob1, carol, alice2, bob2, dave;
let all;
before(async () => {
  valkey = await startValkey();
  s = await startRelayStack({ valkeyUrl: valkey.url, gateways: 2 });
  [A, B] = s.gws;
  admin = redisClient(valkey.url);
  emitter = new Emitter(redisClient(valkey.url));
  [alice1, bob1, carol, alice2, bob2, dave] = await Promise.all([
    connect(A.url, s.cookies.alice),
    connect(A.url, s.cookies.bob),
    connect(A.url, s.cookies.carol),
    connect(B.url, s.cookies.alice),
    connect(B.url, s.cookies.bob),
    connect(B.url, s.cookies.dave),
  ]);
  all = { alice1, bob1, carol, alice2, bob2, dave };
});
after(async () => {
  await s?.stop();
  closeAllRedis();
  await valkey?.stop();
});

let n = 0;
const unique = (label) => `${label} #${++n} ${Date.now()}`;
const others = (...names) => Object.keys(all).filter((k) => !names.includes(k));

/** Resolves once PUBSUB NUMSUB of `room`'s channel is `count` (the gateways' per-room subscriptions settled). */
function roomSubscribers(room, count, ms = 3000) {
  const ch = broadcastChannel(room);
  return until(async () => (await pubsubNumsub(admin, [ch]))[ch] === count, { ms, what: `NUMSUB ${ch} = ${count}` });
}

test("emitter.to('channel:c1').emit → alice and bob on both gateways once; carol, dave never", async () => {
  const tag = unique("em-room");
  const rec = recorder(all, "em:room", (x) => x?.tag === tag);
  emitter.to("channel:c1").emit("em:room", { tag, n: 1.5, ok: true, none: null });
  await assertExactlyOnce(rec, ["alice1", "bob1", "alice2", "bob2"], ["carol", "dave"], { label: "emitter to(c1)" });
  assert.deepEqual(rec.args("alice2")[0][0], { tag, n: 1.5, ok: true, none: null });
});

test("emitter.emit (no room) → every socket once", async () => {
  const tag = unique("em-all");
  const rec = recorder(all, "em:all", (x) => x === tag);
  emitter.emit("em:all", tag);
  await assertExactlyOnce(rec, Object.keys(all), [], { label: "emitter emit" });
});

test("emitter.to('workspace:w1').except('channel:c3') → alice only; to(w2).to(c3) → alice, dave, bob, carol", async () => {
  const tag = unique("em-except");
  const rec = recorder(all, "em:except", (x) => x === tag);
  emitter.to("workspace:w1").except("channel:c3").emit("em:except", tag);
  await assertExactlyOnce(rec, ["alice1", "alice2"], others("alice1", "alice2"), { label: "emitter except" });

  const tag2 = unique("em-two-rooms");
  const rec2 = recorder(all, "em:two", (x) => x === tag2);
  emitter.to("workspace:w2").to("channel:c3").emit("em:two", tag2);
  await assertExactlyOnce(rec2, Object.keys(all), [], { label: "emitter two rooms" });
});

test("emitter binary: Buffer args arrive as binary", async () => {
  const tag = unique("em-bin");
  const rec = recorder(all, "em:bin", (t) => t === tag);
  emitter.to("dm:d2").emit("em:bin", tag, Buffer.from([9, 8, 7]), { inner: Buffer.from("héllo") });
  await assertExactlyOnce(rec, ["alice1", "alice2", "dave"], ["bob1", "bob2", "carol"], { label: "emitter binary" });
  const [, buf, obj] = rec.args("dave")[0];
  assert.ok(Buffer.isBuffer(buf), `arrived as ${JSON.stringify(buf)}`);
  assert.deepEqual([...buf], [9, 8, 7]);
  assert.ok(Buffer.isBuffer(obj?.inner));
  assert.equal(obj.inner.toString(), "héllo");
});

test("emitter.in(user:bob).socketsJoin('extra:room') → bob's sockets on both gateways join; to(extra:room) reaches them", async () => {
  emitter.in(`user:${s.users.bob.id}`).socketsJoin("extra:room");
  await roomSubscribers("extra:room", 2); // both gateways now have a local member
  const tag = unique("em-joined");
  const rec = recorder(all, "em:joined", (x) => x === tag);
  emitter.to("extra:room").emit("em:joined", tag);
  await assertExactlyOnce(rec, ["bob1", "bob2"], others("bob1", "bob2"), { label: "after socketsJoin" });
});

test("emitter.in(user:bob).socketsLeave('channel:c1') → bob no longer gets c1 messages; alice still does", async () => {
  emitter.in(`user:${s.users.bob.id}`).socketsLeave("channel:c1");
  // c1 keeps alice on both gateways, so its subscriptions stay; wait for the leave itself by probing.
  await until(
    async () => {
      const tag = unique("probe");
      const rec = recorder(all, "em:probe", (x) => x === tag);
      emitter.to("channel:c1").emit("em:probe", tag);
      await new Promise((r) => setTimeout(r, 150));
      rec.stop();
      const c = rec.counts();
      return c.alice1 === 1 && c.alice2 === 1 && c.bob1 === 0 && c.bob2 === 0;
    },
    { ms: 3000, everyMs: 0, what: "bob out of channel:c1" },
  );
  const content = unique("after leave");
  const rec = recorder(all, "message:new", (m) => m?.content === content);
  const ack = await emitAck(alice1, "message:send", { channelId: "c1", content });
  assert.equal(ack?.ok, true, JSON.stringify(ack));
  await assertExactlyOnce(rec, ["alice1", "alice2"], others("alice1", "alice2"), { label: "c1 after bob left" });
});

test("emitter socketsLeave of the last members drops the room's subscriptions", async () => {
  await roomSubscribers("extra:room", 2);
  emitter.in("extra:room").socketsLeave("extra:room");
  await roomSubscribers("extra:room", 0);
});

test("emitter.serverSideEmit: gateways ignore it (no socket receives it), stay up", async () => {
  const none = Object.values(all).map((sock) => expectNothing(sock, "em:sse", 400));
  emitter.serverSideEmit("em:sse", 1);
  await Promise.all(none);
  assertAlive(A);
  assertAlive(B);
});

test("emitter.in(user:dave).disconnectSockets() → dave disconnected ('io server disconnect'); others stay", async () => {
  const gone = waitDisconnect(dave, 3000);
  const stay = Object.entries(all)
    .filter(([k]) => k !== "dave")
    .map(([, sock]) => expectNothing(sock, "disconnect", 600));
  emitter.in(`user:${s.users.dave.id}`).disconnectSockets();
  assert.equal(await gone, "io server disconnect");
  await Promise.all(stay);
});

test("emitter.in(channel:c2).disconnectSockets(true) → carol and both alices lose their connection", async () => {
  const gone = [alice1, alice2, carol].map((sock) => waitDisconnect(sock, 3000));
  const stay = [bob1, bob2].map((sock) => expectNothing(sock, "disconnect", 600));
  emitter.in("channel:c2").disconnectSockets(true);
  const reasons = await Promise.all(gone);
  for (const r of reasons) assert.ok(["transport close", "io server disconnect"].includes(r), `reason ${r}`);
  await Promise.all(stay);
  assertAlive(A);
  assertAlive(B);
});
