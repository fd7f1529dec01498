// Re-validation asks the app about many sessions without a burst: at most app.revalidate_concurrency at once,
// spread over the first half of the interval, so a pass fits inside the interval even when the app is slow
// (one after another, 40 sessions at 200 ms per call would take 16 s of a 4 s interval).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { fault, resetStats, stats, maxInFlight } from "../lib/app.mjs";
import { startStack, connect, sleep } from "../lib/gateway.mjs";
import { until } from "../lib/valkey.mjs";

const INTERVAL_MS = 4000;
const CONCURRENCY = 4;
const SESSIONS = 40;
let s;

before(async () => {
  s = await startStack({
    gatewayEnv: {
      GATEWAY_APP__REVALIDATE_INTERVAL_MS: String(INTERVAL_MS),
      GATEWAY_APP__REVALIDATE_CONCURRENCY: String(CONCURRENCY),
      GATEWAY_APP__SESSION_CACHE_TTL_MS: "0",
    },
  });
});
after(async () => {
  await fault(s.app.url, { mode: "ok" });
  await s?.stop();
});

/** SESSIONS sockets, each with its own session, then the app's session calls made slow and its counts reset. */
async function sessionsWithASlowApp() {
  const sockets = [];
  for (let i = 0; i < SESSIONS; i++) {
    const cookie = await s.login(["alice", "bob", "carol", "dave"][i % 4]);
    sockets.push(await connect(s.url, cookie, { transports: ["websocket"] }));
  }
  await fault(s.app.url, { mode: "slow", delayMs: 200, paths: ["session"] });
  await resetStats(s.app.url);
  return sockets;
}

test("a pass over 40 sessions of a slow app: bounded concurrency, paced, done within the interval", async () => {
  const sockets = await sessionsWithASlowApp();
  const t0 = Date.now();
  // Every session asked once: the pass is over.
  await until(async () => (await stats(s.app.url)).session >= SESSIONS, {
    ms: INTERVAL_MS * 2 + 2000,
    everyMs: 100,
    what: "a whole pass",
  });
  const passMs = Date.now() - t0;
  const most = (await maxInFlight(s.app.url)).session;
  assert.ok(most <= CONCURRENCY, `at most ${CONCURRENCY} session calls at once, saw ${most}`);
  assert.ok(most >= 2, `calls overlap (saw at most ${most} at once)`);
  // The pass started within one interval of t0 and, once started, takes about half an interval.
  assert.ok(passMs < INTERVAL_MS * 2, `the pass ended ${passMs} ms after the stats reset`);
  await sleep(100);
  for (const sock of sockets) assert.ok(sock.connected, "nobody was logged out");
  sockets.forEach((x) => x.close());
});

test("sockets that close during a pass are not asked about (nor kept until it ends)", async () => {
  const sockets = await sessionsWithASlowApp();
  // The next pass has started: everybody leaves.
  await until(async () => (await stats(s.app.url)).session >= 1, { ms: INTERVAL_MS * 2, everyMs: 20, what: "a pass" });
  sockets.forEach((x) => x.close());
  await sleep(INTERVAL_MS);
  const asked = (await stats(s.app.url)).session;
  // Those already in flight or about to start finish; the rest of the 40 are skipped.
  assert.ok(asked <= 3 * CONCURRENCY, `${asked} of ${SESSIONS} sessions were asked about after their sockets closed`);
});
