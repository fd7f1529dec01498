// Graceful drain on SIGTERM: /readyz turns 503 at once, new handshakes are refused with 503, live
// sockets are closed by the server (clients see "transport close" and would reconnect elsewhere)
// spread over server.drain_window_ms rather than all at once, and the process exits 0 within
// server.shutdown_timeout_ms.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startFixtureApp, signIn } from "../lib/app.mjs";
import { startGateway, connect, connectError, closeAllClients, emitAck, sleep } from "../lib/gateway.mjs";
import { pollingHandshake, scrape, value } from "../lib/ops.mjs";

const WINDOW_MS = 1500;
const TIMEOUT_MS = 4000;
const SOCKETS = 12;

let app;
before(async () => {
  app = await startFixtureApp();
});
after(async () => {
  closeAllClients();
  await app?.stop();
});

async function readyz(url) {
  const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) });
  return { status: res.status, body: await res.json() };
}

test("SIGTERM: readyz 503 at once, handshakes refused, sockets closed spread over the drain window, exit 0 in time", async (t) => {
  const gw = await startGateway({
    appUrl: app.url,
    env: {
      GATEWAY_SERVER__DRAIN_WINDOW_MS: String(WINDOW_MS),
      GATEWAY_SERVER__SHUTDOWN_TIMEOUT_MS: String(TIMEOUT_MS),
    },
  });
  try {
    const cookie = await signIn(app.url, app.users.alice.email, app.users.alice.password);
    const sockets = await Promise.all(
      Array.from({ length: SOCKETS }, (_, i) => connect(gw.url, cookie, { transports: i % 3 === 0 ? ["polling"] : ["websocket"] })),
    );
    assert.equal((await readyz(gw.url)).status, 200);

    const closes = sockets.map(
      (s) => new Promise((resolve) => s.once("disconnect", (reason) => resolve({ at: Date.now(), reason }))),
    );
    const exited = new Promise((resolve) => gw.proc.child.once("exit", (code, signal) => resolve({ at: Date.now(), code, signal })));
    const t0 = Date.now();
    gw.proc.child.kill("SIGTERM");

    // Not ready at once (the listener keeps answering, with 503).
    let ready;
    for (let i = 0; i < 20; i++) {
      ready = await readyz(gw.url);
      if (ready.status === 503) break;
      await sleep(10);
    }
    const readyAfter = Date.now() - t0;
    assert.equal(ready.status, 503, JSON.stringify(ready));
    assert.equal(ready.body.ready, false);
    assert.ok(readyAfter < 300, `readyz turned 503 after ${readyAfter} ms`);

    // New handshakes are refused, over both transports.
    const hs = await pollingHandshake(gw.url);
    assert.equal(hs.status, 503, hs.text);
    assert.equal(hs.json?.code, "SHUTTING_DOWN");
    const err = await connectError(gw.url, cookie, { transports: ["websocket"] });
    assert.ok(err);

    // Mid-drain, a socket whose turn has not come still works, and the drain is visible in /metrics.
    await sleep(WINDOW_MS / 3);
    const live = sockets.filter((s) => s.connected);
    assert.ok(live.length > 0 && live.length < SOCKETS, `${live.length} of ${SOCKETS} connected a third into the window`);
    const ack = await emitAck(live.at(-1), "room:leave", { room: "channel:nope" });
    assert.deepEqual(ack, { ok: true });
    const m = await scrape(gw.url);
    const drained = value(m, "socket_gateway_disconnects_total", { reason: "server shutting down" });
    assert.ok(drained > 0 && drained < SOCKETS, `disconnects_total{reason="server shutting down"} = ${drained} mid-drain`);

    const results = await Promise.all(closes);
    const times = results.map((r) => r.at - t0).sort((a, b) => a - b);
    t.diagnostic(`disconnects at ${times.join(", ")} ms after SIGTERM`);
    for (const r of results) assert.equal(r.reason, "transport close", "the server closed the session (the client would reconnect)");
    const first = times[0];
    const last = times.at(-1);
    assert.ok(first < 400, `first disconnect after ${first} ms`);
    assert.ok(last >= WINDOW_MS * 0.6, `last disconnect after ${last} ms: not spread over the ${WINDOW_MS} ms window`);
    assert.ok(last <= WINDOW_MS + 700, `last disconnect after ${last} ms: later than the window`);
    // Evenly: each third of the window sees some of them.
    for (let k = 0; k < 3; k++) {
      const lo = (k * WINDOW_MS) / 3;
      const hi = ((k + 1) * WINDOW_MS) / 3 + (k === 2 ? 700 : 0);
      const n = times.filter((x) => x >= lo && x < hi).length;
      assert.ok(n >= 2, `${n} disconnects in [${lo}, ${hi}) ms: ${times}`);
    }

    const exit = await exited;
    t.diagnostic(`exited ${exit.at - t0} ms after SIGTERM`);
    assert.deepEqual({ code: exit.code, signal: exit.signal }, { code: 0, signal: null });
    assert.ok(exit.at - t0 < TIMEOUT_MS, `exited after ${exit.at - t0} ms (shutdown timeout ${TIMEOUT_MS} ms)`);
  } finally {
    closeAllClients();
    await gw.stop();
  }
});

test("the shutdown timeout bounds the drain: sessions that never come back do not keep the process alive", async (t) => {
  // Window = timeout. Polling sessions that never poll again are each kept up to a second after
  // their close for a GET that never comes: the last one would hold the process past the window.
  const gw = await startGateway({
    appUrl: app.url,
    env: { GATEWAY_SERVER__DRAIN_WINDOW_MS: "1500", GATEWAY_SERVER__SHUTDOWN_TIMEOUT_MS: "1500" },
  });
  try {
    for (let i = 0; i < 4; i++) assert.equal((await pollingHandshake(gw.url)).status, 200);
    const exited = new Promise((resolve) => gw.proc.child.once("exit", (code, signal) => resolve({ at: Date.now(), code, signal })));
    const t0 = Date.now();
    gw.proc.child.kill("SIGTERM");
    const exit = await exited;
    t.diagnostic(`exited ${exit.at - t0} ms after SIGTERM`);
    assert.deepEqual({ code: exit.code, signal: exit.signal }, { code: 0, signal: null });
    assert.ok(exit.at - t0 >= 1000, `exited after ${exit.at - t0} ms: the drain window was not used`);
    assert.ok(exit.at - t0 < 1500 + 400, `exited after ${exit.at - t0} ms (shutdown timeout 1500 ms)`);
  } finally {
    await gw.stop();
  }
});
