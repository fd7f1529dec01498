// Reconnect storm: many sockets with the same cookie at once must not become one session lookup each
// (better-auth rate-limits get-session): identical lookups are coalesced and positive answers cached.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { stats, resetStats } from "../lib/app.mjs";
import { startStack, startGateway, connect, waitFor, emitAck, tamperCookie, assertAlive } from "../lib/gateway.mjs";

const N = 200;
let s;
before(async () => {
  // Default session cache TTL. The instance-wide connect rate limit (default 200/s) is raised so this
  // test measures coalescing, not the connect limiter.
  s = await startStack({ gatewayEnv: { GATEWAY_LIMITS__CONNECT_RATE_PER_S: "5000" } });
});
after(async () => {
  await s?.stop();
});

let sockets = [];

test(`${N} sockets with the same cookie at once: all connect, session and memberships called ≤ 3 times`, async () => {
  await resetStats(s.app.url);
  const t0 = Date.now();
  const results = await Promise.allSettled(
    Array.from({ length: N }, () => connect(s.url, s.cookies.alice, { timeout: 20000 })),
  );
  const took = Date.now() - t0;
  sockets = results.filter((r) => r.status === "fulfilled").map((r) => r.value);
  const failed = results.filter((r) => r.status === "rejected").map((r) => `${r.reason.message} ${JSON.stringify(r.reason.data)}`);
  const st = await stats(s.app.url);
  console.log(`  (${sockets.length}/${N} connected in ${took} ms; app calls: ${JSON.stringify(st)})`);
  assert.equal(failed.length, 0, `${failed.length} failed, e.g. ${failed.slice(0, 3).join(" | ")}`);
  assert.ok(st.session <= 3, `get-session called ${st.session} times for ${N} identical connects`);
  assert.ok(st.session >= 1, "get-session never called");
  assert.ok(st.memberships <= 3, `memberships called ${st.memberships} times for ${N} identical connects`);
});

test(`a message to c1 reaches all ${N} storm sockets exactly once`, async () => {
  assert.ok(sockets.length > 0);
  const bob = await connect(s.url, s.cookies.bob);
  const content = `storm broadcast ${Date.now()}`;
  const got = sockets.map((sock) => waitFor(sock, "message:new", 5000, (m) => m?.content === content));
  const ack = await emitAck(bob, "message:send", { channelId: "c1", content });
  assert.equal(ack?.ok, true);
  const r = await Promise.allSettled(got);
  const missing = r.filter((x) => x.status === "rejected").length;
  assert.equal(missing, 0, `${missing} of ${sockets.length} sockets did not get message:new`);
  bob.close();
});

test("the storm sockets disconnect cleanly", async () => {
  for (const sock of sockets) sock.close();
  sockets = [];
  // The gateway is still healthy afterwards.
  const again = await connect(s.url, s.cookies.carol);
  assert.ok(again.connected);
  again.close();
});

test("a storm of 50 invalid cookies: all get Invalid session, the gateway stays up", async () => {
  const bad = tamperCookie(s.cookies.dave);
  const results = await Promise.allSettled(Array.from({ length: 50 }, () => connect(s.url, bad, { timeout: 20000 })));
  const connected = results.filter((r) => r.status === "fulfilled");
  for (const r of connected) r.value.close();
  assert.equal(connected.length, 0, "a tampered cookie connected");
  const msgs = new Set(results.map((r) => r.reason?.message));
  assert.deepEqual([...msgs], ["Invalid session"]);
  const ok = await connect(s.url, s.cookies.dave);
  assert.ok(ok.connected);
  ok.close();
});

test("within the cache TTL (60 s) a connect 6 s later asks the app nothing", async () => {
  await resetStats(s.app.url);
  await new Promise((r) => setTimeout(r, 6000));
  const sock = await connect(s.url, s.cookies.alice);
  sock.close();
  const st = await stats(s.app.url);
  assert.deepEqual([st.session, st.memberships], [0, 0], `app calls: ${JSON.stringify(st)}`);
});

test("after the cache TTL a new connect asks the app again", async () => {
  const gw = await startGateway({ appUrl: s.app.url, env: { GATEWAY_APP__SESSION_CACHE_TTL_MS: "1000" } });
  try {
    (await connect(gw.url, s.cookies.bob)).close();
    await resetStats(s.app.url);
    await new Promise((r) => setTimeout(r, 1500));
    (await connect(gw.url, s.cookies.bob)).close();
    const st = await stats(s.app.url);
    assert.deepEqual([st.session, st.memberships], [1, 1], `no app calls after the TTL: ${JSON.stringify(st)}`);
  } finally {
    await gw.stop();
  }
});

test("the gateway process is still running at the end of the file", () => {
  assertAlive(s.gw);
});
