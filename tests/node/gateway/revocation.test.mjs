// Periodic re-validation of live sockets: a revoked or signed-out session is noticed within a few
// seconds (`error` {code:"SESSION_EXPIRED"}, then disconnect); other users' and sessions' sockets stay;
// an auth outage during re-validation is not a logout.
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { revokeUserSessions, signOut, fault, setMembership } from "../lib/app.mjs";
import { startStack, startGateway, connect, connectError, waitFor, expectNothing, emitAck, sleep, assertAlive } from "../lib/gateway.mjs";

let s;
before(async () => {
  s = await startStack({
    gatewayEnv: {
      GATEWAY_APP__REVALIDATE_INTERVAL_MS: "500",
      GATEWAY_APP__SESSION_CACHE_TTL_MS: "0",
      GATEWAY_APP__TIMEOUT_MS: "300",
    },
  });
});
afterEach(async () => {
  await fault(s.app.url, { mode: "ok" });
});
after(async () => {
  await s?.stop();
});

/** Resolves to {error, reason, ms}: the SESSION_EXPIRED error event and the disconnect, within `ms`. */
async function expectExpired(sock, ms = 3000) {
  const t0 = Date.now();
  const err = waitFor(sock, "error", ms, (e) => e?.code === "SESSION_EXPIRED");
  const disc = waitFor(sock, "disconnect", ms);
  const [error, reason] = await Promise.all([err, disc]);
  return { error, reason, ms: Date.now() - t0 };
}

test("revokeUserSessions(alice) → alice's sockets get SESSION_EXPIRED and are disconnected; bob stays", async () => {
  const aliceCookie = await s.login("alice");
  const a1 = await connect(s.url, aliceCookie);
  const a2 = await connect(s.url, aliceCookie, { transports: ["websocket"] });
  const bob = await connect(s.url, s.cookies.bob);
  const e1 = expectExpired(a1);
  const e2 = expectExpired(a2);
  const bobStays = expectNothing(bob, "disconnect", 2500);
  await revokeUserSessions(s.app.url, s.users.alice.id);
  const r1 = await e1;
  const r2 = await e2;
  assert.equal(r1.error.code, "SESSION_EXPIRED");
  assert.equal(typeof r1.error.message, "string");
  assert.equal(r1.reason, "io server disconnect", `disconnect reason: ${r1.reason}`);
  assert.ok(!a1.connected && !a2.connected);
  await bobStays;
  assert.ok(bob.connected);
  // bob still works.
  const ack = await emitAck(bob, "message:send", { channelId: "c3", content: "after alice's revocation" });
  assert.equal(ack?.ok, true);
  // And the revoked cookie cannot come back.
  const err = await connectError(s.url, aliceCookie);
  assert.equal(err.message, "Invalid session");
  s.cookies.alice = await s.login("alice");
  bob.close();
});

test("signOut of one session expires only that session's sockets", async () => {
  const c1 = await s.login("carol");
  const c2 = await s.login("carol");
  const sock1 = await connect(s.url, c1);
  const sock2 = await connect(s.url, c2);
  const expired = expectExpired(sock1);
  const stays = expectNothing(sock2, "disconnect", 2500);
  await signOut(s.app.url, c1);
  const r = await expired;
  assert.equal(r.error.code, "SESSION_EXPIRED");
  await stays;
  assert.ok(sock2.connected);
  sock2.close();
});

test("a re-validation that hits an auth outage does not disconnect (not a logout)", async () => {
  const dave = await connect(s.url, s.cookies.dave);
  const stays = expectNothing(dave, "disconnect", 2000);
  const noExpiry = expectNothing(dave, "error", 2000, (e) => e?.code === "SESSION_EXPIRED");
  await fault(s.app.url, { mode: "error500", paths: ["session", "memberships"] });
  await Promise.all([stays, noExpiry]);
  await fault(s.app.url, { mode: "hang", paths: ["session", "memberships"] });
  await sleep(1500);
  assert.ok(dave.connected, "dave disconnected while the app hung");
  await fault(s.app.url, { mode: "error429", paths: ["session"] });
  await sleep(1500);
  assert.ok(dave.connected, "dave disconnected while the app answered 429");
  await fault(s.app.url, { mode: "ok" });
  // After the outage, revocation is noticed again.
  const expired = expectExpired(dave, 3000);
  await revokeUserSessions(s.app.url, s.users.dave.id);
  await expired;
  s.cookies.dave = await s.login("dave");
});

test("re-validation also refreshes memberships: removal from c1 stops c1 deliveries (config: sessions and memberships)", async () => {
  const alice = await connect(s.url, s.cookies.alice);
  const bob = await connect(s.url, s.cookies.bob);
  await setMembership(s.app.url, { op: "remove", kind: "channel", id: "c1", userId: s.users.bob.id });
  try {
    await sleep(1500); // three re-validation rounds
    assert.ok(bob.connected, "bob was disconnected after losing one channel");
    const content = `after removal ${Date.now()}`;
    const none = expectNothing(bob, "message:new", 400, (m) => m?.content === content);
    const ack = await emitAck(alice, "message:send", { channelId: "c1", content });
    assert.equal(ack?.ok, true);
    await none;
    // Other rooms are untouched.
    const dm = `dm still works ${Date.now()}`;
    const got = waitFor(bob, "message:new", 2000, (m) => m?.content === dm);
    await emitAck(alice, "message:send", { conversationId: "d1", content: dm });
    await got;
  } finally {
    await setMembership(s.app.url, { op: "add", kind: "channel", id: "c1", userId: s.users.bob.id });
  }
  // Re-adding restores deliveries after re-validation.
  await sleep(1500);
  const back = `after re-add ${Date.now()}`;
  const got = waitFor(bob, "message:new", 2000, (m) => m?.content === back);
  await emitAck(alice, "message:send", { channelId: "c1", content: back });
  await got;
  alice.close();
  bob.close();
});

test("with the default (60 s) session cache, a revoked session is still noticed (within ~8 s)", async () => {
  const gw = await startGateway({ appUrl: s.app.url, env: { GATEWAY_APP__REVALIDATE_INTERVAL_MS: "500" } });
  try {
    const cookie = await s.login("bob");
    const sock = await connect(gw.url, cookie);
    const expired = expectExpired(sock, 8000);
    await revokeUserSessions(s.app.url, s.users.bob.id);
    const r = await expired;
    console.log(`  (noticed after ${r.ms} ms with the default cache TTL)`);
    s.cookies.bob = await s.login("bob");
  } finally {
    await gw.stop();
  }
});

test("with the app's cookie cache on, a revoked session is refused at connect and expired when live", async () => {
  // better-auth's signed session_data cookie would keep a revoked session valid for minutes unless the
  // gateway asks with disableCookieCache=true.
  const stack = await startStack({
    appEnv: { COOKIE_CACHE: "1" },
    gatewayEnv: { GATEWAY_APP__REVALIDATE_INTERVAL_MS: "500", GATEWAY_APP__SESSION_CACHE_TTL_MS: "0" },
  });
  let live;
  try {
    const cookie = stack.cookies.alice;
    assert.match(cookie, /session_data=/, "the fixture app did not set a cookie-cache cookie");
    live = await connect(stack.url, cookie);
    const expired = expectExpired(live, 3000);
    await revokeUserSessions(stack.app.url, stack.users.alice.id);
    await expired;
    const err = await connectError(stack.url, cookie);
    assert.equal(err.message, "Invalid session");
  } finally {
    live?.close();
    await stack.gw.stop(); // not stack.stop(): that closes every client of this file
    await stack.app.stop();
  }
});

test("the gateway process is still running at the end of the file", () => {
  assertAlive(s.gw);
});
