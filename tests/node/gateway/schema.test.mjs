// What the gateway sends matches schema/events (the JSON Schemas the Next.js example's TypeScript
// types are generated from). Every waitFor / collect / emitAck in these tests checks the payload it
// returns (lib/gateway.mjs); this file makes sure each event and ack of the schemas is seen at
// least once from the real gateway, and that the check itself rejects what does not match.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startStack, connect, waitFor, emitAck, sleep } from "../lib/gateway.mjs";
import { checkAck, checkServerEvent, checkClientPayload, serverEvents, clientEvents } from "../lib/schemas.mjs";

test("the check rejects payloads that do not match, and accepts ones that do", () => {
  const ok = { userId: "u1", status: "online", lastSeen: 1733390000000 };
  assert.equal(checkServerEvent("presence:update", ok), null);
  assert.match(checkServerEvent("presence:update", { ...ok, lastSeen: "2024-12-05T10:00:00Z" }), /lastSeen must be integer/);
  assert.match(checkServerEvent("presence:update", { ...ok, status: "busy" }), /status must be equal to one of the allowed values/);
  assert.match(checkServerEvent("typing:update", { room: "channel:c1", userId: "u1", isTyping: true }), /must have required property 'user'/);
  assert.match(checkServerEvent("typing:update", { room: "lobby", userId: "u1", user: { id: "u1", name: "A" }, isTyping: true }), /room must match pattern/);
  const message = { id: "m1", channelId: "c1", author: { id: "u1", name: "A" }, content: "hi", createdAt: "2024-12-05T10:00:00.000Z" };
  assert.equal(checkServerEvent("message:new", message), null);
  assert.match(checkServerEvent("message:new", { ...message, conversationId: "d1" }), /must NOT be valid/);
  assert.match(checkServerEvent("message:new", { ...message, extra: 1 }), /must NOT have additional properties/);
  assert.equal(checkAck("message:send", { ok: true, message }), null);
  assert.match(checkAck("message:send", { ok: true }), /does not match/);
  assert.equal(checkAck("room:join", { ok: false, code: "NOT_ALLOWED", error: "no" }), null);
  assert.match(checkClientPayload("message:send", { channelId: "c1", conversationId: "d1", content: "x" }), /must match exactly one schema in oneOf/);
  assert.equal(checkServerEvent("some-test-event", { anything: true }), null, "events outside the schemas are not checked");
});

let s;
let alice, bob;
before(async () => {
  s = await startStack({ gatewayEnv: { GATEWAY_PRESENCE__BATCH_MS: "0", GATEWAY_PRESENCE__GRACE_MS: "300" } });
  [alice, bob] = await Promise.all([connect(s.url, s.cookies.alice), connect(s.url, s.cookies.bob)]);
});
after(async () => {
  await s?.stop();
});

test("every server-to-client event and client ack the gateway produces, seen live, matches the schemas", async () => {
  const seen = new Set();
  const see = (name, p) => p.then((v) => (seen.add(name), v));

  // message:send → ack + message:new; message:delete → ack + message:deleted.
  let got = see("message:new", waitFor(bob, "message:new", 3000));
  const sent = await see("ack message:send", emitAck(alice, "message:send", { channelId: "c1", content: "schema check", clientId: "cid-1" }));
  assert.equal(sent.ok, true);
  await got;
  got = see("message:deleted", waitFor(bob, "message:deleted", 3000));
  await see("ack message:delete", emitAck(alice, "message:delete", { messageId: sent.message.id }));
  await got;

  // Refusals: an error ack and an error event.
  got = see("error", waitFor(alice, "error", 3000));
  const refused = await see("ack refused", emitAck(alice, "message:send", { channelId: "c3", content: "not a member" }));
  assert.equal(refused.ok, false);
  await got;

  // typing:update both ways.
  got = see("typing:update", waitFor(bob, "typing:update", 3000, (u) => u.isTyping));
  alice.emit("typing:start", { channelId: "c1" });
  await got;

  // room:join / room:leave acks, allowed and refused.
  await see("ack room:join", emitAck(alice, "room:join", { room: "channel:c2" }));
  await see("ack room:join refused", emitAck(alice, "room:join", { room: "channel:c3" }));
  await see("ack room:leave", emitAck(alice, "room:leave", { room: "channel:c2" }));

  // presence:setAway / setActive acks, and presence:update to the workspace.
  got = see("presence:update", waitFor(bob, "presence:update", 3000, (u) => u.userId === s.users.alice.id && u.status === "away"));
  await see("ack presence:setAway", emitAck(alice, "presence:setAway"));
  await got;
  await see("ack presence:setActive", emitAck(alice, "presence:setActive"));
  await sleep(50);

  // channel:joined, channel:left and conversation:joined come from the Next.js example through the
  // emitter, never from the gateway itself (tests/node/nextjs/ checks them).
  const fromGateway = serverEvents.filter((e) => !["channel:joined", "channel:left", "conversation:joined"].includes(e));
  assert.deepEqual(fromGateway.filter((e) => !seen.has(e)), [], `server events not seen: ${[...seen]}`);
  const acked = clientEvents.filter((e) => !["typing:start", "typing:stop"].includes(e));
  assert.deepEqual(acked.filter((e) => !seen.has(`ack ${e}`)), [], `acks not seen: ${[...seen]}`);
});
