// message:send / message:delete through the gateway: forwarded to the app, acked with the app's ack,
// the app's emit list delivered to exactly the room's sockets; refusals and bad payloads never disconnect.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { listMessages, stats, resetStats } from "../lib/app.mjs";
import { startStack, connect, waitFor, expectNothing, emitAck, collect, assertAlive } from "../lib/gateway.mjs";

let s;
let alice1, alice2, alice3, bob, carol, dave;
before(async () => {
  s = await startStack({ gatewayEnv: { GATEWAY_LIMITS__EVENTS_PER_S: "1000", GATEWAY_LIMITS__EVENTS_BURST: "1000" } });
  [alice1, alice2, alice3, bob, carol, dave] = await Promise.all([
    connect(s.url, s.cookies.alice),
    connect(s.url, s.cookies.alice, { transports: ["websocket"] }),
    connect(s.url, s.cookies.alice, { transports: ["polling"] }),
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

/** The ack must be a refusal: {ok:false, error} (error present). */
function assertRefused(ack, what) {
  assert.ok(ack && typeof ack === "object", `${what}: ack is ${JSON.stringify(ack)}`);
  assert.equal(ack.ok, false, `${what}: ${JSON.stringify(ack)}`);
  assert.ok(ack.error !== undefined && ack.error !== null, `${what}: refusal without error: ${JSON.stringify(ack)}`);
}

test("message:send to c1: ack is the app's ack, message stored, message:new to every member socket only", async () => {
  const content = unique("hi");
  const f = withContent(content);
  const got = [alice2, alice3, bob].map((sock) => waitFor(sock, "message:new", 2000, f));
  const none = [carol, dave].map((sock) => expectNothing(sock, "message:new", 400, f));
  const ack = await emitAck(alice1, "message:send", { channelId: "c1", content, clientId: "x" });
  assert.equal(ack?.ok, true, JSON.stringify(ack));
  const m = ack.message;
  assert.equal(m.content, content);
  assert.equal(m.channelId, "c1");
  assert.equal(m.clientId, "x");
  assert.equal(m.author?.id, s.users.alice.id);
  assert.equal(typeof m.id, "string");
  const delivered = await Promise.all(got);
  for (const d of delivered) assert.deepEqual(d, m, "message:new must be the app's message object unchanged");
  await Promise.all(none);
  const list = await listMessages(s.app.url, s.cookies.bob, { channelId: "c1" });
  assert.equal(list.status, 200);
  assert.ok(
    list.body.messages.some((x) => x.id === m.id && x.content === content),
    "the message is not stored in the app",
  );
});

test("the sending socket also gets message:new for its own message (room broadcast)", async () => {
  const content = unique("echo");
  const got = waitFor(alice1, "message:new", 2000, withContent(content));
  const ack = await emitAck(alice1, "message:send", { channelId: "c1", content });
  assert.equal(ack?.ok, true);
  await got;
});

test("message:send to a dm: reaches both participants' sockets only", async () => {
  const content = unique("dm");
  const f = withContent(content);
  const got = [alice1, alice2, alice3].map((sock) => waitFor(sock, "message:new", 2000, f));
  const none = [bob, carol].map((sock) => expectNothing(sock, "message:new", 400, f));
  const ack = await emitAck(dave, "message:send", { conversationId: "d2", content, clientId: "dm-1" });
  assert.equal(ack?.ok, true, JSON.stringify(ack));
  assert.equal(ack.message.conversationId, "d2");
  const ds = await Promise.all(got);
  for (const d of ds) assert.deepEqual(d, ack.message);
  await Promise.all(none);
});

test("message:send to a channel she is not in (c3) → error ack, nothing stored or delivered, still connected", async () => {
  const content = unique("intrude");
  const f = withContent(content);
  const none = [bob, carol, alice2].map((sock) => expectNothing(sock, "message:new", 400, f));
  const ack = await emitAck(alice1, "message:send", { channelId: "c3", content });
  assertRefused(ack, "send to c3");
  await Promise.all(none);
  assert.ok(alice1.connected);
  const list = await listMessages(s.app.url, s.cookies.bob, { channelId: "c3" });
  assert.ok(!list.body.messages.some((x) => x.content === content), "the refused message was stored");
});

test("message:send refused by the app without an ack callback → `error` event {code, message}", async () => {
  const err = waitFor(alice1, "error", 2000);
  const gone = expectNothing(alice1, "disconnect", 500);
  alice1.emit("message:send", { channelId: "c3", content: unique("intrude-noack") });
  const e = await err;
  assert.equal(typeof e?.code, "string", JSON.stringify(e));
  assert.ok(e.code.length > 0);
  assert.equal(typeof e.message, "string", JSON.stringify(e));
  await gone;
});

test("bad message:send payloads (object shape) → error ack each, never a disconnect", async () => {
  const bad = [
    { channelId: "c1", content: "" },
    { channelId: "c1", content: "   " },
    { channelId: "c1" },
    { content: "no target" },
    { channelId: "c1", conversationId: "d1", content: "both" },
    { channelId: 5, content: "number target" },
    { channelId: "c1", content: "x".repeat(4001) },
    { channelId: "c1", content: 42 },
    { channelId: "c1", content: "bad clientId", clientId: 7 },
  ];
  const none = expectNothing(bob, "message:new", 300, (m) => m?.channelId === "c1" && m?.author?.id === s.users.alice.id);
  for (const p of bad) {
    const ack = await emitAck(alice1, "message:send", p);
    assertRefused(ack, `message:send ${JSON.stringify(p).slice(0, 80)}`);
  }
  await none;
  assert.ok(alice1.connected);
});

test("message:send with a string payload → error event with a code, error ack if requested, still connected", async () => {
  const err = waitFor(alice1, "error", 2000);
  alice1.emit("message:send", "hello");
  const e = await err;
  assert.equal(typeof e?.code, "string", JSON.stringify(e));
  assert.ok(e.code.length > 0);
  const ack = await emitAck(alice1, "message:send", "hello");
  assertRefused(ack, "string payload with ack");
  assert.ok(alice1.connected);
});

test("message:send with no arguments → error event with a code; with only an ack → error ack", async () => {
  const err = waitFor(alice1, "error", 2000);
  alice1.emit("message:send");
  const e = await err;
  assert.equal(typeof e?.code, "string", JSON.stringify(e));
  assert.ok(e.code.length > 0);
  const ack = await emitAck(alice1, "message:send");
  assertRefused(ack, "no payload with ack");
  const ack2 = await emitAck(alice1, "message:send", null);
  assertRefused(ack2, "null payload with ack");
  assert.ok(alice1.connected);
  // Still fully working.
  const ok = await emitAck(alice1, "message:send", { channelId: "c1", content: unique("after bad") });
  assert.equal(ok?.ok, true);
});

test("an unknown client event never disconnects", async () => {
  const gone = expectNothing(alice1, "disconnect", 500);
  alice1.emit("bogus:event", { a: 1 });
  alice1.emit("message:new", { forged: true });
  try {
    await alice1.timeout(1000).emitWithAck("bogus:event", { a: 1 });
  } catch {
    // no ack is acceptable
  }
  await gone;
  assert.ok(alice1.connected);
});

test("a client cannot forge server events to others", async () => {
  const none = [bob, alice2].map((sock) => expectNothing(sock, "message:new", 400, (m) => m?.forged === true));
  alice1.emit("message:new", { forged: true, channelId: "c1" });
  await Promise.all(none);
});

test("message:delete by the author: ack ok, message:deleted to the channel's sockets only", async () => {
  const sent = await emitAck(alice1, "message:send", { channelId: "c1", content: unique("to delete") });
  assert.equal(sent?.ok, true);
  const id = sent.message.id;
  const byId = (d) => d?.messageId === id;
  const got = [alice2, alice3, bob].map((sock) => waitFor(sock, "message:deleted", 2000, byId));
  const none = [carol, dave].map((sock) => expectNothing(sock, "message:deleted", 400, byId));
  const ack = await emitAck(alice1, "message:delete", { messageId: id });
  assert.equal(ack?.ok, true, JSON.stringify(ack));
  for (const d of await Promise.all(got)) assert.deepEqual(d, { messageId: id, channelId: "c1" });
  await Promise.all(none);
});

test("message:delete by someone else → error ack, nothing deleted", async () => {
  const sent = await emitAck(alice1, "message:send", { channelId: "c1", content: unique("not yours") });
  const id = sent.message.id;
  const none = expectNothing(alice2, "message:deleted", 400, (d) => d?.messageId === id);
  const ack = await emitAck(bob, "message:delete", { messageId: id });
  assertRefused(ack, "bob deletes alice's message");
  await none;
  const missing = await emitAck(bob, "message:delete", { messageId: "no-such-message" });
  assertRefused(missing, "delete unknown id");
  const bad = await emitAck(bob, "message:delete", { nope: 1 });
  assertRefused(bad, "delete without messageId");
  assert.ok(bob.connected);
});

test("message:delete in a dm: message:deleted carries conversationId", async () => {
  const sent = await emitAck(alice1, "message:send", { conversationId: "d1", content: unique("dm delete") });
  assert.equal(sent?.ok, true);
  const id = sent.message.id;
  const got = waitFor(bob, "message:deleted", 2000, (d) => d?.messageId === id);
  const none = expectNothing(carol, "message:deleted", 400, (d) => d?.messageId === id);
  const ack = await emitAck(alice1, "message:delete", { messageId: id });
  assert.equal(ack?.ok, true);
  assert.deepEqual(await got, { messageId: id, conversationId: "d1" });
  await none;
});

test("each send is forwarded once and delivered once per socket", async () => {
  await resetStats(s.app.url);
  const prefix = unique("burst");
  const seen = collect(bob, "message:new", 1500, (m) => typeof m?.content === "string" && m.content.startsWith(prefix));
  const acks = await Promise.all(
    Array.from({ length: 10 }, (_, i) => emitAck(alice1, "message:send", { channelId: "c1", content: `${prefix} ${i}`, clientId: `b${i}` })),
  );
  for (const a of acks) assert.equal(a?.ok, true);
  const got = await seen;
  assert.equal(got.length, 10, `bob got ${got.length} of 10`);
  assert.equal(new Set(got.map((m) => m.id)).size, 10, "duplicate deliveries");
  const st = await stats(s.app.url);
  assert.equal(st.events, 10, `event forwards: ${st.events}`);
});

test("the gateway process is still running at the end of the file", () => {
  assertAlive(s.gw);
});
