// The gateway's session and memberships caches (default app.session_cache_ttl_ms, 60 s): a throttled
// reconnect storm costs one get-session per session and one memberships call per user, and every
// revocation or membership-change signal the gateway sees forgets the cached answer at once (the
// emitter's disconnectSockets / socketsLeave through Valkey, a 401 from the app, a server disconnect).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Emitter } from "@socket.io/redis-emitter";
import { stats, resetStats, signOut } from "../lib/app.mjs";
import { connect, connectError, emitAck, waitDisconnect, sleep, assertAlive } from "../lib/gateway.mjs";
import { startValkey, redisClient, closeAllRedis } from "../lib/valkey.mjs";
import { startRelayStack } from "../relay/helpers.mjs";

let valkey, s, gw, emitter;
before(async () => {
  valkey = await startValkey();
  // Re-validation off, so only the signals under test can forget a cached answer.
  s = await startRelayStack({ valkeyUrl: valkey.url, gateways: 1, gatewayEnv: { GATEWAY_APP__REVALIDATE_INTERVAL_MS: "0" } });
  [gw] = s.gws;
  emitter = new Emitter(redisClient(valkey.url));
});
after(async () => {
  await s?.stop();
  closeAllRedis();
  await valkey?.stop();
});

/** The app calls made while `fn` runs. */
async function callsDuring(fn) {
  await resetStats(s.app.url);
  await fn();
  return stats(s.app.url);
}

test("two tabs with one cookie, 6 s apart: one get-session and one memberships call", async () => {
  const cookie = await s.login("alice");
  const st = await callsDuring(async () => {
    const tab1 = await connect(gw.url, cookie);
    await sleep(6000);
    const tab2 = await connect(gw.url, cookie);
    tab1.close();
    tab2.close();
  });
  assert.equal(st.session, 1, `get-session calls: ${JSON.stringify(st)}`);
  assert.equal(st.memberships, 1, `memberships calls: ${JSON.stringify(st)}`);
  // Another session of the same user: its own get-session, the user's memberships answer reused.
  const other = await s.login("alice");
  const st2 = await callsDuring(async () => (await connect(gw.url, other)).close());
  assert.deepEqual([st2.session, st2.memberships], [1, 0], JSON.stringify(st2));
});

test("emitter disconnectSockets(user:X) forgets X's cached sessions, even with no socket of X here", async () => {
  const cookie = await s.login("bob");
  (await connect(gw.url, cookie)).close();
  const cached = await callsDuring(async () => (await connect(gw.url, cookie)).close());
  assert.equal(cached.session, 0, "the second connect came from the cache");
  await sleep(200);
  emitter.in(`user:${s.users.bob.id}`).disconnectSockets();
  await sleep(300);
  const st = await callsDuring(async () => (await connect(gw.url, cookie)).close());
  assert.equal(st.session, 1, `after disconnectSockets the app is asked again: ${JSON.stringify(st)}`);
});

test("emitter disconnectSockets of a live socket: a revoked session cannot reconnect from the cache", async () => {
  const cookie = await s.login("carol");
  const sock = await connect(gw.url, cookie);
  const gone = waitDisconnect(sock);
  await signOut(s.app.url, cookie);
  emitter.in(`user:${s.users.carol.id}`).disconnectSockets(true);
  await gone;
  const err = await connectError(gw.url, cookie);
  assert.equal(err.message, "Invalid session");
});

test("emitter socketsLeave(user:X) forgets X's memberships: the next connect asks for them again", async () => {
  const cookie = s.cookies.dave;
  (await connect(gw.url, cookie)).close();
  emitter.in(`user:${s.users.dave.id}`).socketsLeave("channel:c4");
  await sleep(300);
  const st = await callsDuring(async () => (await connect(gw.url, cookie)).close());
  assert.deepEqual([st.session, st.memberships], [0, 1], JSON.stringify(st));
});

test("a 401 from the app (room:join after sign-out) forgets the session: the next connect is refused", async () => {
  const cookie = await s.login("alice");
  const sock = await connect(gw.url, cookie);
  await signOut(s.app.url, cookie);
  const ack = await emitAck(sock, "room:join", { room: "channel:c1" });
  assert.equal(ack?.ok, false);
  assert.equal(ack?.code, "UNAUTHENTICATED");
  const st = await callsDuring(async () => {
    const err = await connectError(gw.url, cookie);
    assert.equal(err.message, "Invalid session");
  });
  assert.equal(st.session, 1, JSON.stringify(st));
  sock.close();
});

test("the gateway process is still running at the end of the file", () => {
  assertAlive(gw);
});
