// The Next.js example's route handlers (examples/nextjs/src/app/api/**) against `next start` of its
// production build: the gateway contract (memberships, authorize, events) answers exactly the
// contract, bad input gets a 4xx with {error} (never a 500), non-members and signed-out callers are
// refused; the app's own routes (messages, presence, channel members) and its emitter path through
// Valkey to a real gateway: a removed member's sockets leave the channel at once, a sign-out
// closes the user's sockets and the old cookie is refused.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startValkey } from "../lib/valkey.mjs";
import { startGateway, connect, connectError, waitFor, expectNothing, emitAck, closeAllClients, tamperCookie } from "../lib/gateway.mjs";
import { startNextApp, signUp, call } from "../lib/nextapp.mjs";
import { checkServerEvent, checkAck } from "../lib/schemas.mjs";

let valkey, app, gw;
const u = {};
before(async () => {
  valkey = await startValkey();
  app = await startNextApp({ redisUrl: valkey.url });
  // alice signs up first: she owns the default workspace.
  for (const name of ["alice", "bob", "carol"]) {
    u[name] = await signUp(app.url, { name: name[0].toUpperCase() + name.slice(1), email: `${name}@routes.test` });
  }
  gw = await startGateway({ appUrl: app.url, env: { GATEWAY_REDIS__ENABLED: "true", REDIS_URL: valkey.url, GATEWAY_PRESENCE__BATCH_MS: "0" } });
});
after(async () => {
  closeAllClients();
  await gw?.stop();
  await app?.stop();
  await valkey?.stop();
});

const get = (path, cookie) => call(app.url, "GET", path, { cookie });
const post = (path, cookie, body) => call(app.url, "POST", path, { cookie, body });
const forward = (cookie, event, body) => call(app.url, "POST", `/api/realtime/events/${encodeURIComponent(event)}`, { cookie, body });

/** A 4xx answer with a JSON {error} (and nothing that looks like a stack). */
function assertRefused(r, status, error) {
  assert.equal(r.status, status, `${r.status} ${r.text}`);
  assert.equal(typeof r.body?.error, "string", r.text);
  if (error) assert.equal(r.body.error, error, r.text);
  assert.doesNotMatch(r.text, /at \S+ \(|node_modules/);
}

test("memberships: 401 signed out or with a tampered cookie; the contract's shape for a member", async () => {
  assertRefused(await get("/api/realtime/memberships"), 401, "unauthenticated");
  assertRefused(await get("/api/realtime/memberships", tamperCookie(u.alice.cookie)), 401, "unauthenticated");
  const r = await get("/api/realtime/memberships", u.alice.cookie);
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.body, {
    userId: u.alice.user.id,
    workspaces: ["acme"],
    channels: [
      { id: "acme-general", workspaceId: "acme" },
      { id: "acme-random", workspaceId: "acme" },
    ],
    conversations: [],
  });
});

test("authorize: 400 for a malformed room, 401 signed out, allowed or not_member / not_self", async () => {
  for (const q of ["", "?room=", "?room=lobby", "?room=channel:", "?room=team:x", `?room=${encodeURIComponent("channel:a b")}`]) {
    assertRefused(await get(`/api/realtime/authorize${q}`, u.alice.cookie), 400, "bad_room");
  }
  assertRefused(await get("/api/realtime/authorize?room=channel:acme-general"), 401, "unauthenticated");
  const ask = async (cookie, room) => (await get(`/api/realtime/authorize?room=${encodeURIComponent(room)}`, cookie)).body;
  assert.deepEqual(await ask(u.alice.cookie, "channel:acme-general"), { userId: u.alice.user.id, room: "channel:acme-general", allowed: true });
  assert.deepEqual(await ask(u.alice.cookie, "workspace:acme"), { userId: u.alice.user.id, room: "workspace:acme", allowed: true });
  assert.deepEqual(await ask(u.alice.cookie, `user:${u.alice.user.id}`), { userId: u.alice.user.id, room: `user:${u.alice.user.id}`, allowed: true });
  assert.equal((await ask(u.alice.cookie, `user:${u.bob.user.id}`)).reason, "not_self");
  // A channel bob creates without alice, and a DM between bob and carol.
  const ch = await post("/api/channels", u.bob.cookie, { workspaceId: "acme", name: "bobs-corner" });
  assert.equal(ch.status, 201, ch.text);
  const dm = await post("/api/conversations", u.bob.cookie, { workspaceId: "acme", userId: u.carol.user.id });
  assert.equal(dm.status, 201, dm.text);
  assert.deepEqual(await ask(u.alice.cookie, `channel:${ch.body.channel.id}`), { userId: u.alice.user.id, room: `channel:${ch.body.channel.id}`, allowed: false, reason: "not_member" });
  assert.equal((await ask(u.alice.cookie, `dm:${dm.body.conversation.id}`)).allowed, false);
  assert.equal((await ask(u.carol.cookie, `dm:${dm.body.conversation.id}`)).allowed, true);
  assert.equal((await ask(u.alice.cookie, "workspace:elsewhere")).allowed, false);
});

test("events: refusals are 4xx {error}; message:send and message:delete answer {ack, emit} in the schemas' shapes", async () => {
  const me = u.alice.user.id;
  const envelope = (event, args) => ({ event, args, socketId: "sock-1", userId: me });
  assertRefused(await forward(null, "message:send", envelope("message:send", [{ channelId: "acme-general", content: "x" }])), 401, "unauthenticated");
  assertRefused(await forward(u.alice.cookie, "message:explode", envelope("message:explode", [])), 404, "unknown_event");
  const notJson = await call(app.url, "POST", "/api/realtime/events/message:send", { cookie: u.alice.cookie });
  assertRefused(notJson, 400, "bad_payload");
  assertRefused(await forward(u.alice.cookie, "message:send", "just a string"), 400, "bad_payload");
  assertRefused(await forward(u.alice.cookie, "message:send", { ...envelope("message:send", []), args: "nope" }), 400, "bad_payload");
  assertRefused(await forward(u.alice.cookie, "message:send", { ...envelope("message:delete", []) }), 400, "bad_payload");
  assertRefused(await forward(u.alice.cookie, "message:send", { ...envelope("message:send", [{ channelId: "acme-general", content: "x" }]), userId: u.bob.user.id }), 403, "user_mismatch");
  for (const payload of [
    undefined,
    { content: "no target" },
    { channelId: "acme-general", conversationId: "d", content: "both" },
    { channelId: "acme-general" },
    { channelId: "acme-general", content: "" },
    { channelId: "acme-general", content: "   " },
    { channelId: "acme-general", content: "x".repeat(4001) },
    { channelId: 7, content: "x" },
    { channelId: "acme-general", content: "x", clientId: 5 },
  ]) {
    assertRefused(await forward(u.alice.cookie, "message:send", envelope("message:send", [payload])), 400, "bad_payload");
  }
  const big = await forward(u.alice.cookie, "message:send", envelope("message:send", [{ channelId: "acme-general", content: "y".repeat(70_000) }]));
  assertRefused(big, 413, "too_large");
  const foreign = (await post("/api/channels", u.bob.cookie, { workspaceId: "acme", name: "private-bob" })).body.channel;
  assertRefused(await forward(u.alice.cookie, "message:send", envelope("message:send", [{ channelId: foreign.id, content: "let me in" }])), 403, "not_member");
  assertRefused(await forward(u.alice.cookie, "message:send", envelope("message:send", [{ channelId: "no-such-channel", content: "x" }])), 403, "not_member");

  const sent = await forward(u.alice.cookie, "message:send", envelope("message:send", [{ channelId: "acme-general", content: "hello from the route test", clientId: "c-1" }]));
  assert.equal(sent.status, 200, sent.text);
  assert.equal(checkAck("message:send", sent.body.ack), null);
  const { message } = sent.body.ack;
  assert.equal(checkServerEvent("message:new", message), null);
  assert.deepEqual({ ...message, id: "ID", createdAt: "T" }, { id: "ID", channelId: "acme-general", author: { id: me, name: "Alice" }, content: "hello from the route test", clientId: "c-1", createdAt: "T" });
  assert.deepEqual(sent.body.emit, [{ room: "channel:acme-general", event: "message:new", data: message }]);

  const del = (cookie, messageId) => forward(cookie, "message:delete", { event: "message:delete", args: [{ messageId }], socketId: "s", userId: cookie === u.bob.cookie ? u.bob.user.id : me });
  assertRefused(await del(u.alice.cookie, ""), 400, "bad_payload");
  assertRefused(await del(u.alice.cookie, "missing"), 404, "not_found");
  assertRefused(await del(u.bob.cookie, message.id), 403, "not_author");
  const deleted = await del(u.alice.cookie, message.id);
  assert.equal(deleted.status, 200, deleted.text);
  assert.deepEqual(deleted.body, { ack: { ok: true }, emit: [{ room: "channel:acme-general", event: "message:deleted", data: { messageId: message.id, channelId: "acme-general" } }] });
  assert.equal(checkServerEvent("message:deleted", deleted.body.emit[0].data), null);
  assertRefused(await del(u.alice.cookie, message.id), 404, "not_found");
});

test("messages: history of a member's room, 403 for others, 400 without exactly one target", async () => {
  assertRefused(await get("/api/messages?channelId=acme-general"), 401, "unauthenticated");
  assertRefused(await get("/api/messages", u.alice.cookie), 400, "bad_payload");
  assertRefused(await get("/api/messages?channelId=acme-general&conversationId=x", u.alice.cookie), 400, "bad_payload");
  const foreign = (await post("/api/channels", u.bob.cookie, { workspaceId: "acme", name: "bob-only" })).body.channel;
  assertRefused(await get(`/api/messages?channelId=${foreign.id}`, u.alice.cookie), 403, "not_member");
  const r = await get("/api/messages?channelId=acme-general", u.bob.cookie);
  assert.equal(r.status, 200, r.text);
  assert.ok(Array.isArray(r.body.messages));
  for (const m of r.body.messages) assert.equal(checkServerEvent("message:new", m), null);
});

test("channels and conversations: bad input is a 400, a stranger's workspace a 403", async () => {
  assertRefused(await post("/api/channels", null, { workspaceId: "acme", name: "x" }), 401, "unauthenticated");
  for (const body of [{}, { workspaceId: "acme" }, { workspaceId: "acme", name: "Has Spaces" }, { workspaceId: "acme", name: "x".repeat(41) }, { workspaceId: 3, name: "ok" }]) {
    assertRefused(await post("/api/channels", u.alice.cookie, body), 400, "bad_payload");
  }
  assertRefused(await post("/api/channels", u.alice.cookie, { workspaceId: "elsewhere", name: "ok" }), 403, "not_member");
  assert.equal((await post("/api/channels", u.alice.cookie, { workspaceId: "acme", name: "dupe" })).status, 201);
  assertRefused(await post("/api/channels", u.alice.cookie, { workspaceId: "acme", name: "dupe" }), 409, "name_taken");
  assertRefused(await post("/api/conversations", u.alice.cookie, { workspaceId: "acme", userId: u.alice.user.id }), 400, "bad_payload");
  assertRefused(await post("/api/conversations", u.alice.cookie, { workspaceId: "acme", userId: "nobody" }), 404, "unknown_member");
  const first = await post("/api/conversations", u.alice.cookie, { workspaceId: "acme", userId: u.bob.user.id });
  const again = await post("/api/conversations", u.bob.cookie, { workspaceId: "acme", userId: u.alice.user.id });
  assert.equal(first.status, 201, first.text);
  assert.equal(again.status, 200, again.text);
  assert.equal(again.body.conversation.id, first.body.conversation.id, "one conversation per pair");
});

test("presence: 403 outside the workspace; a member connected to the gateway is online, with lastSeen", async () => {
  assertRefused(await get("/api/presence?workspaceId=elsewhere", u.alice.cookie), 403, "not_member");
  assertRefused(await get("/api/presence", u.alice.cookie), 400, "bad_payload");
  const bob = await connect(gw.url, u.bob.cookie);
  let entry;
  for (let i = 0; i < 50; i++) {
    const r = await get("/api/presence?workspaceId=acme", u.alice.cookie);
    assert.equal(r.status, 200, r.text);
    entry = r.body.members.find((m) => m.userId === u.bob.user.id);
    if (entry.status === "online") break;
    await new Promise((res) => setTimeout(res, 50));
  }
  assert.equal(entry.status, "online");
  assert.ok(Number.isInteger(entry.lastSeen) && Math.abs(entry.lastSeen - Date.now()) < 60_000, JSON.stringify(entry));
  const carol = (await get("/api/presence?workspaceId=acme", u.alice.cookie)).body.members.find((m) => m.userId === u.carol.user.id);
  assert.deepEqual(carol, { userId: u.carol.user.id, status: "offline", lastSeen: null });
  bob.close();
});

test("removing a member through the app's route: their sockets leave the channel at once and get channel:left", async () => {
  const ch = (await post("/api/channels", u.alice.cookie, { workspaceId: "acme", name: "launch" })).body.channel;
  assertRefused(await call(app.url, "DELETE", `/api/channels/${ch.id}/members?userId=${u.bob.user.id}`, { cookie: u.bob.cookie }), 403, "not_member");
  const bob = await connect(gw.url, u.bob.cookie);
  const joined = waitFor(bob, "channel:joined", 3000);
  const add = await post(`/api/channels/${ch.id}/members`, u.alice.cookie, { userId: u.bob.user.id });
  assert.deepEqual(add.body, { ok: true, added: true });
  assert.deepEqual(await joined, { channel: ch });
  // Joined live through the emitter: bob's open socket gets the channel's messages.
  const alice = await connect(gw.url, u.alice.cookie);
  let got = waitFor(bob, "message:new", 3000, (m) => m.channelId === ch.id);
  assert.equal((await emitAck(alice, "message:send", { channelId: ch.id, content: "welcome bob" })).ok, true);
  assert.equal((await got).content, "welcome bob");

  assertRefused(await call(app.url, "DELETE", `/api/channels/${ch.id}/members?userId=${u.alice.user.id}`, { cookie: u.bob.cookie }), 403, "not_allowed");
  assertRefused(await call(app.url, "DELETE", `/api/channels/${ch.id}/members`, { cookie: u.alice.cookie }), 400, "bad_payload");
  const left = waitFor(bob, "channel:left", 3000);
  const del = await call(app.url, "DELETE", `/api/channels/${ch.id}/members?userId=${u.bob.user.id}`, { cookie: u.alice.cookie });
  assert.deepEqual(del.body, { ok: true, removed: true });
  assert.deepEqual(await left, { channelId: ch.id, workspaceId: "acme", reason: "removed" });
  const nothing = expectNothing(bob, "message:new", 800, (m) => m.channelId === ch.id);
  assert.equal((await emitAck(alice, "message:send", { channelId: ch.id, content: "bob is gone" })).ok, true);
  await nothing;
  // And the app refuses the room to him from now on.
  assert.equal((await emitAck(bob, "room:join", { room: `channel:${ch.id}` })).ok, false);
  assertRefused(await get(`/api/messages?channelId=${ch.id}`, u.bob.cookie), 403, "not_member");
});

test("sign-out closes the user's sockets, and the old cookie is refused on reconnect", async () => {
  const carol = await signUp(app.url, { name: "Dana", email: "dana@routes.test" });
  const sock = await connect(gw.url, carol.cookie);
  const closed = waitFor(sock, "disconnect", 3000);
  const out = await call(app.url, "POST", "/api/auth/sign-out", { cookie: carol.cookie, body: {} });
  assert.equal(out.status, 200, out.text);
  assert.equal(await closed, "io server disconnect");
  const err = await connectError(gw.url, carol.cookie);
  assert.equal(err.message, "Invalid session");
  assert.deepEqual(err.data, { code: "INVALID_SESSION" });
  assertRefused(await get("/api/realtime/memberships", carol.cookie), 401, "unauthenticated");
});
