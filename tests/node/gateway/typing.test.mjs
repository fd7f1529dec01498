// typing:start / typing:stop: typing:update to the room's other sockets, only for rooms the socket is
// in, expiring by itself, throttled in bursts. Default event limits (this is what clients get).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startStack, connect, waitFor, expectNothing, collect, emitAck, sleep, assertAlive } from "../lib/gateway.mjs";

let s;
let alice1, alice2, bob, carol, dave;
before(async () => {
  s = await startStack();
  [alice1, alice2, bob, carol, dave] = await Promise.all([
    connect(s.url, s.cookies.alice),
    connect(s.url, s.cookies.alice),
    connect(s.url, s.cookies.bob),
    connect(s.url, s.cookies.carol),
    connect(s.url, s.cookies.dave),
  ]);
});
after(async () => {
  await s?.stop();
});

const fromAlice = (isTyping, room) => (u) =>
  u?.userId === s.users.alice.id && (isTyping === undefined || u?.isTyping === isTyping) && (room === undefined || u?.room === room);

function expected(room, isTyping) {
  return { room, userId: s.users.alice.id, user: { id: s.users.alice.id, name: s.users.alice.name }, isTyping };
}

/** Lets the typing throttle and the per-socket event budget settle between tests. */
async function settle() {
  await sleep(600);
}

test("typing:start in c1 → bob gets typing:update isTyping:true; the sender, carol and dave get nothing", async () => {
  const got = waitFor(bob, "typing:update", 2000, fromAlice(true));
  const none = [alice1, carol, dave].map((sock) => expectNothing(sock, "typing:update", 400, fromAlice()));
  alice1.emit("typing:start", { channelId: "c1" });
  assert.deepEqual(await got, expected("channel:c1", true));
  await Promise.all(none);

  const stopped = waitFor(bob, "typing:update", 2000, fromAlice(false));
  const none2 = [alice1, carol, dave].map((sock) => expectNothing(sock, "typing:update", 400, fromAlice()));
  alice1.emit("typing:stop", { channelId: "c1" });
  assert.deepEqual(await stopped, expected("channel:c1", false));
  await Promise.all(none2);
  await settle();
});

test("typing in a dm (d1) → bob gets room dm:d1; dave and carol nothing", async () => {
  const got = waitFor(bob, "typing:update", 2000, fromAlice(true));
  const none = [carol, dave].map((sock) => expectNothing(sock, "typing:update", 400, fromAlice()));
  alice1.emit("typing:start", { conversationId: "d1" });
  assert.deepEqual(await got, expected("dm:d1", true));
  await Promise.all(none);
  const stopped = waitFor(bob, "typing:update", 2000, fromAlice(false));
  alice1.emit("typing:stop", { conversationId: "d1" });
  assert.deepEqual(await stopped, expected("dm:d1", false));
  await settle();
});

test("typing in c2 reaches carol, not bob", async () => {
  const got = waitFor(carol, "typing:update", 2000, fromAlice(true, "channel:c2"));
  const none = expectNothing(bob, "typing:update", 400, fromAlice());
  alice1.emit("typing:start", { channelId: "c2" });
  await got;
  await none;
  const stopped = waitFor(carol, "typing:update", 2000, fromAlice(false, "channel:c2"));
  alice1.emit("typing:stop", { channelId: "c2" });
  await stopped;
  await settle();
});

test("typing for a room she is not in (c3) → `error` event to her, nobody gets typing:update", async () => {
  const err = waitFor(alice1, "error", 2000);
  const none = [bob, carol, alice2].map((sock) => expectNothing(sock, "typing:update", 400, fromAlice()));
  alice1.emit("typing:start", { channelId: "c3" });
  const e = await err;
  assert.equal(typeof e?.code, "string", JSON.stringify(e));
  assert.ok(e.code.length > 0);
  assert.equal(typeof e.message, "string", JSON.stringify(e));
  await Promise.all(none);
  assert.ok(alice1.connected);
  await settle();
});

test("typing after room:leave of that room → `error`, nothing delivered; after room:join it works again", async () => {
  const left = await emitAck(alice2, "room:leave", { room: "channel:c1" });
  assert.deepEqual(left, { ok: true });
  const err = waitFor(alice2, "error", 2000);
  const none = expectNothing(bob, "typing:update", 400, fromAlice());
  alice2.emit("typing:start", { channelId: "c1" });
  await err;
  await none;
  const joined = await emitAck(alice2, "room:join", { room: "channel:c1" });
  assert.deepEqual(joined, { ok: true });
  const got = waitFor(bob, "typing:update", 2000, fromAlice(true, "channel:c1"));
  alice2.emit("typing:start", { channelId: "c1" });
  await got;
  const stopped = waitFor(bob, "typing:update", 2000, fromAlice(false, "channel:c1"));
  alice2.emit("typing:stop", { channelId: "c1" });
  await stopped;
  await settle();
});

test("bad typing payloads → `error` event with a code, no update, no disconnect", async () => {
  const none = [bob, carol].map((sock) => expectNothing(sock, "typing:update", 800, fromAlice()));
  const gone = expectNothing(alice1, "disconnect", 800);
  for (const args of [[], ["c1"], [{}], [{ channelId: 5 }], [{ channelId: "c1", conversationId: "d1" }], [null]]) {
    const err = waitFor(alice1, "error", 2000);
    alice1.emit("typing:start", ...args);
    const e = await err.catch((x) => assert.fail(`typing:start ${JSON.stringify(args)}: ${x.message}`));
    assert.equal(typeof e?.code, "string", `typing:start ${JSON.stringify(args)} → ${JSON.stringify(e)}`);
  }
  await Promise.all(none);
  await gone;
  await settle();
});

test("a typing:start without stop expires by itself (isTyping:false within 8 s)", async () => {
  const got = waitFor(bob, "typing:update", 2000, fromAlice(true, "channel:c1"));
  const t0 = Date.now();
  alice1.emit("typing:start", { channelId: "c1" });
  await got;
  const u = await waitFor(bob, "typing:update", 8000, fromAlice(false, "channel:c1"));
  const took = Date.now() - t0;
  assert.deepEqual(u, expected("channel:c1", false));
  assert.ok(took >= 1000, `expired after only ${took} ms`);
  await settle();
});

test("a burst of 20 typing:start in 100 ms yields at most 3 updates", async () => {
  const seen = collect(bob, "typing:update", 1000, fromAlice(undefined, "channel:c1"));
  const errors = collect(alice1, "error", 1000);
  const t0 = Date.now();
  for (let i = 0; i < 20; i++) {
    alice1.emit("typing:start", { channelId: "c1" });
    await sleep(4);
  }
  assert.ok(Date.now() - t0 < 400, `the burst took ${Date.now() - t0} ms`);
  const got = await seen;
  const trues = got.filter((u) => u.isTyping === true);
  assert.ok(trues.length >= 1, "no typing:update at all");
  assert.ok(got.length <= 3, `${got.length} updates: ${JSON.stringify(got.map((u) => u.isTyping))}`);
  const errs = await errors;
  assert.ok(alice1.connected, "throttled typing disconnected the sender");
  if (errs.length) console.log(`  (burst produced ${errs.length} error events: ${JSON.stringify(errs[0])})`);
  const stopped = waitFor(bob, "typing:update", 3000, fromAlice(false, "channel:c1"));
  alice1.emit("typing:stop", { channelId: "c1" });
  await stopped;
});

test("typing state ends when the typing socket disconnects (no stale 'typing' left behind)", async () => {
  const tab = await connect(s.url, s.cookies.alice);
  const got = waitFor(bob, "typing:update", 2000, fromAlice(true, "channel:c1"));
  tab.emit("typing:start", { channelId: "c1" });
  await got;
  const t0 = Date.now();
  const stopped = waitFor(bob, "typing:update", 8000, fromAlice(false, "channel:c1"));
  tab.close();
  await stopped;
  console.log(`  (isTyping:false ${Date.now() - t0} ms after disconnect)`);
});

test("the gateway process is still running at the end of the file", () => {
  assertAlive(s.gw);
});
