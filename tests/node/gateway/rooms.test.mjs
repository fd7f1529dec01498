// Rooms: sockets are in exactly the rooms of their memberships (user, workspace, channel, dm);
// room:join only after the app authorizes; room:leave at once; malformed requests get an error ack.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { setMembership, fault } from "../lib/app.mjs";
import { startStack, connect, waitFor, expectNothing, emitAck, collect, assertAlive } from "../lib/gateway.mjs";

let s;
let alice1, alice2, bob, carol, dave;
before(async () => {
  // The malformed-payload test sends ~30 events back to back: keep the per-socket event limiter out of the way.
  s = await startStack({ gatewayEnv: { GATEWAY_LIMITS__EVENTS_PER_S: "1000", GATEWAY_LIMITS__EVENTS_BURST: "1000" } });
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

let n = 0;
const unique = (label) => `${label} #${++n} ${Date.now()}`;

const withContent = (content) => (m) => m?.content === content;

/**
 * `sender` sends to `target`; every socket of `yes` must get message:new, none of `no` within 300 ms.
 * The listeners are registered before the send.
 */
async function deliveredExactly(sender, target, yes, no, label = "msg") {
  const content = unique(label);
  const f = withContent(content);
  const got = yes.map((sock) => waitFor(sock, "message:new", 2000, f));
  const none = no.map((sock) => expectNothing(sock, "message:new", 300, f));
  const ack = await emitAck(sender, "message:send", { ...target, content });
  assert.equal(ack?.ok, true, `message:send refused: ${JSON.stringify(ack)}`);
  const msgs = await Promise.all(got);
  for (const m of msgs) assert.equal(m.content, content);
  await Promise.all(none);
  return msgs;
}

test("connect joins channel rooms from memberships: c1 reaches alice (both tabs) and bob only", async () => {
  await deliveredExactly(bob, { channelId: "c1" }, [alice1, alice2], [carol, dave], "c1 from bob");
  await deliveredExactly(alice1, { channelId: "c1" }, [alice2, bob], [carol, dave], "c1 from alice");
});

test("channel c2 reaches alice and carol, not bob or dave", async () => {
  await deliveredExactly(carol, { channelId: "c2" }, [alice1, alice2], [bob, dave], "c2");
});

test("channel c3 reaches bob and carol, not alice", async () => {
  await deliveredExactly(bob, { channelId: "c3" }, [carol], [alice1, alice2, dave], "c3");
});

test("connect joins dm rooms: d1 (alice+bob) and d2 (alice+dave)", async () => {
  await deliveredExactly(bob, { conversationId: "d1" }, [alice1, alice2], [carol, dave], "d1");
  await deliveredExactly(dave, { conversationId: "d2" }, [alice1, alice2], [bob, carol], "d2");
});

test("workspace rooms: dave's presence reaches alice (w2) and not bob or carol (w1 only)", async () => {
  const fromDave = (st) => (u) => u?.userId === s.users.dave.id && u?.status === st;
  const away = waitFor(alice1, "presence:update", 3000, fromDave("away"));
  const away2 = waitFor(alice2, "presence:update", 3000, fromDave("away"));
  const noneB = expectNothing(bob, "presence:update", 500, (u) => u?.userId === s.users.dave.id);
  const noneC = expectNothing(carol, "presence:update", 500, (u) => u?.userId === s.users.dave.id);
  const daveErrors = collect(dave, "error", 1000);
  dave.emit("presence:setAway");
  let u;
  try {
    [u] = await Promise.all([away, away2]);
  } catch (e) {
    throw new Error(`${e.message}; dave's error events after presence:setAway: ${JSON.stringify(await daveErrors)}`);
  }
  assert.equal(u.status, "away");
  assert.ok(u.lastSeen !== undefined, `presence:update without lastSeen: ${JSON.stringify(u)}`);
  await Promise.all([noneB, noneC]);
  const back = waitFor(alice1, "presence:update", 3000, fromDave("online"));
  dave.emit("presence:setActive");
  await back;
});

test("room:join user:<own id> is allowed, user:<other id> is refused", async () => {
  const own = await emitAck(alice1, "room:join", { room: `user:${s.users.alice.id}` });
  assert.equal(own?.ok, true, JSON.stringify(own));
  const other = await emitAck(alice1, "room:join", { room: `user:${s.users.bob.id}` });
  assert.equal(other?.ok, false, JSON.stringify(other));
  assert.ok(other.error, `refusal without error: ${JSON.stringify(other)}`);
});

test("room:join of a channel she is not in (c3) is refused, and c3 messages do not reach her", async () => {
  const ack = await emitAck(alice1, "room:join", { room: "channel:c3" });
  assert.equal(ack?.ok, false, JSON.stringify(ack));
  assert.ok(ack.error, `refusal without error: ${JSON.stringify(ack)}`);
  await deliveredExactly(bob, { channelId: "c3" }, [carol], [alice1, alice2], "c3 after refused join");
  assert.ok(alice1.connected);
});

test("room:join of a workspace or dm she is not in is refused", async () => {
  for (const room of ["workspace:w2", "dm:d1", "dm:d2"]) {
    const ack = await emitAck(carol, "room:join", { room });
    assert.equal(ack?.ok, false, `${room}: ${JSON.stringify(ack)}`);
  }
  await deliveredExactly(alice1, { conversationId: "d1" }, [bob], [carol], "d1 after carol's refused join");
});

test("after the app adds her to c3, room:join succeeds and c3 reaches that socket; room:leave stops it", async () => {
  await setMembership(s.app.url, { op: "add", kind: "channel", id: "c3", userId: s.users.alice.id });
  try {
    const ack = await emitAck(alice1, "room:join", { room: "channel:c3" });
    assert.deepEqual(ack, { ok: true });
    // Only the socket that joined; her other tab did not ask.
    await deliveredExactly(bob, { channelId: "c3" }, [alice1, carol], [alice2, dave], "c3 after join");
    const left = await emitAck(alice1, "room:leave", { room: "channel:c3" });
    assert.deepEqual(left, { ok: true });
    await deliveredExactly(bob, { channelId: "c3" }, [carol], [alice1, alice2], "c3 after leave");
  } finally {
    await setMembership(s.app.url, { op: "remove", kind: "channel", id: "c3", userId: s.users.alice.id });
  }
});

test("room:leave of a membership room stops deliveries to that socket only; room:join brings them back", async () => {
  const left = await emitAck(alice2, "room:leave", { room: "channel:c1" });
  assert.deepEqual(left, { ok: true });
  await deliveredExactly(bob, { channelId: "c1" }, [alice1], [alice2, carol], "c1 after alice2 left");
  const joined = await emitAck(alice2, "room:join", { room: "channel:c1" });
  assert.deepEqual(joined, { ok: true });
  await deliveredExactly(bob, { channelId: "c1" }, [alice1, alice2], [carol], "c1 after alice2 rejoined");
});

test("malformed room:join / room:leave payloads → {ok:false,...} ack, socket stays connected", async () => {
  const bad = [
    [{}],
    [{ room: 5 }],
    [{ room: null }],
    [{ room: "" }],
    [{ room: "foo:bar" }],
    [{ room: "channel" }],
    [{ room: "channel:" }],
    [{ room: ["channel:c1"] }],
    [{ room: { name: "channel:c1" } }],
    ["channel:c1"],
    [42],
    [null],
    [[]],
    [],
  ];
  for (const ev of ["room:join", "room:leave"]) {
    for (const args of bad) {
      let ack;
      try {
        ack = await emitAck(alice1, ev, ...args);
      } catch (e) {
        assert.fail(`${ev} ${JSON.stringify(args)}: no ack (${e.message}); connected=${alice1.connected}`);
      }
      assert.equal(ack?.ok, false, `${ev} ${JSON.stringify(args)} → ${JSON.stringify(ack)}`);
      assert.ok(ack.error !== undefined, `${ev} ${JSON.stringify(args)} → no error in ${JSON.stringify(ack)}`);
    }
  }
  assert.ok(alice1.connected);
  // The malformed leaves did not drop her real rooms.
  await deliveredExactly(bob, { channelId: "c1" }, [alice1, alice2], [carol], "c1 after malformed");
});

test("malformed room:join without an ack callback never crashes or disconnects", async () => {
  const gone = expectNothing(alice1, "disconnect", 500);
  alice1.emit("room:join", { room: 5 });
  alice1.emit("room:join");
  alice1.emit("room:join", "channel:c3");
  alice1.emit("room:leave", { nope: true });
  alice1.emit("room:join", { room: "channel:c3" }); // refused, no ack wanted
  await gone;
  const ack = await emitAck(alice1, "room:join", { room: "channel:c1" });
  assert.deepEqual(ack, { ok: true });
  await deliveredExactly(bob, { channelId: "c3" }, [carol], [alice1], "c3 after ackless join");
});

test("room:join while the authorize call fails → error ack, no join, no disconnect", async () => {
  await setMembership(s.app.url, { op: "add", kind: "channel", id: "c3", userId: s.users.alice.id });
  await fault(s.app.url, { mode: "error500", paths: ["authorize"] });
  try {
    const ack = await emitAck(alice1, "room:join", { room: "channel:c3" });
    assert.equal(ack?.ok, false, JSON.stringify(ack));
    assert.ok(alice1.connected);
  } finally {
    await fault(s.app.url, { mode: "ok" });
    await setMembership(s.app.url, { op: "remove", kind: "channel", id: "c3", userId: s.users.alice.id });
  }
  await deliveredExactly(bob, { channelId: "c3" }, [carol], [alice1], "c3 after failed authorize");
});

test("the gateway process is still running at the end of the file", () => {
  assertAlive(s.gw);
});
