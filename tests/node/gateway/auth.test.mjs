// Connect-time authentication through the gateway: a valid better-auth cookie connects; no session
// (missing, tampered, signed out, revoked) is `Invalid session`; an unreachable app is `Auth unavailable`.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { signOut, revokeUserSessions, stats, resetStats } from "../lib/app.mjs";
import { freePort } from "../lib/procs.mjs";
import { startStack, startGateway, connect, connectError, tamperCookie, assertAlive } from "../lib/gateway.mjs";

let s;
before(async () => {
  // No positive cache: every connect asks the app, so signOut/revoke are seen at once.
  s = await startStack({ gatewayEnv: { GATEWAY_APP__SESSION_CACHE_TTL_MS: "0", GATEWAY_APP__TIMEOUT_MS: "1000" } });
});
after(async () => {
  await s?.stop();
});

function assertInvalidSession(err) {
  assert.equal(err.message, "Invalid session", `message: ${err.message}, data: ${JSON.stringify(err.data)}`);
  assert.equal(err.data?.code, "INVALID_SESSION", `data: ${JSON.stringify(err.data)}`);
}

function assertAuthUnavailable(err) {
  assert.equal(err.message, "Auth unavailable", `message: ${err.message}, data: ${JSON.stringify(err.data)}`);
  assert.deepEqual(err.data, { code: "AUTH_UNAVAILABLE", retryable: true });
}

test("a valid cookie connects (polling then upgrade)", async () => {
  const sock = await connect(s.url, s.cookies.alice);
  assert.ok(sock.connected);
  assert.equal(typeof sock.id, "string");
  sock.close();
});

test("a valid cookie connects over websocket only", async () => {
  const sock = await connect(s.url, s.cookies.bob, { transports: ["websocket"] });
  assert.ok(sock.connected);
  sock.close();
});

test("a valid cookie connects over polling only and can exchange packets", async () => {
  const sock = await connect(s.url, s.cookies.carol, { transports: ["polling"] });
  assert.ok(sock.connected);
  // A round trip on the polling transport: a malformed room:join must be answered.
  const ack = await sock.timeout(3000).emitWithAck("room:join", { room: "nope" });
  assert.equal(ack?.ok, false);
  sock.close();
});

test("no cookie → Invalid session / INVALID_SESSION", async () => {
  assertInvalidSession(await connectError(s.url, null));
});

test("an unrelated cookie → Invalid session", async () => {
  assertInvalidSession(await connectError(s.url, "foo=bar; theme=dark"));
});

test("a tampered session cookie → Invalid session", async () => {
  assertInvalidSession(await connectError(s.url, tamperCookie(s.cookies.alice)));
});

test("a tampered cookie over websocket only → Invalid session", async () => {
  assertInvalidSession(await connectError(s.url, tamperCookie(s.cookies.alice), { transports: ["websocket"] }));
});

test("after signOut the cookie → Invalid session (and the session lookup was really made)", async () => {
  const cookie = await s.login("dave");
  (await connect(s.url, cookie)).close();
  await signOut(s.app.url, cookie);
  await resetStats(s.app.url);
  assertInvalidSession(await connectError(s.url, cookie));
  const st = await stats(s.app.url);
  assert.ok(st.session >= 1, `session calls: ${st.session}`);
  // Another session of the same user is unaffected.
  (await connect(s.url, s.cookies.dave)).close();
});

test("after revokeUserSessions the cookie → Invalid session", async () => {
  const { app, users } = s;
  const cookie = await s.login("carol");
  (await connect(s.url, cookie)).close();
  await revokeUserSessions(app.url, users.carol.id);
  assertInvalidSession(await connectError(s.url, cookie));
  assertInvalidSession(await connectError(s.url, s.cookies.carol)); // every carol session is gone
  s.cookies.carol = await s.login("carol");
  (await connect(s.url, s.cookies.carol)).close();
});

test("a refused connect does not affect connected sockets", async () => {
  const bob = await connect(s.url, s.cookies.bob);
  await connectError(s.url, null);
  await connectError(s.url, tamperCookie(s.cookies.bob));
  assert.ok(bob.connected);
  const ack = await bob.timeout(3000).emitWithAck("message:send", { channelId: "c1", content: "still here" });
  assert.equal(ack?.ok, true, JSON.stringify(ack));
  bob.close();
});

test("the app unreachable (nothing listening) → Auth unavailable, retryable", async () => {
  const deadPort = await freePort();
  const gw = await startGateway({
    appUrl: `http://127.0.0.1:${deadPort}`,
    env: { GATEWAY_APP__SESSION_CACHE_TTL_MS: "0", GATEWAY_APP__TIMEOUT_MS: "500" },
  });
  try {
    const t0 = Date.now();
    assertAuthUnavailable(await connectError(gw.url, s.cookies.alice));
    assert.ok(Date.now() - t0 < 4000, `took ${Date.now() - t0} ms`);
    assertAuthUnavailable(await connectError(gw.url, s.cookies.alice, { transports: ["websocket"] }));
    // Without a cookie the gateway may answer either way, but must answer.
    const err = await connectError(gw.url, null);
    assert.ok(["Invalid session", "Auth unavailable"].includes(err.message), err.message);
  } finally {
    await gw.stop();
  }
});

test("gateway log never contains the session token", async () => {
  const token = /better-auth\.session_token=([^;]+)/.exec(s.cookies.alice)[1];
  const raw = decodeURIComponent(token).split(".")[0];
  const out = s.gw.output();
  assert.ok(!out.includes(raw), "the session token appears in the gateway's output");
});

test("the gateway process is still running at the end of the file", () => {
  assertAlive(s.gw);
});
