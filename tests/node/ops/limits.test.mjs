// Limits of one instance, through the real gateway in front of the fixture app: the session cap
// and the handshake rate (a short queue, then 429 with Retry-After for polling and WebSocket
// handshakes: shedding load, never an answer a proxy reads as the instance failing; live sockets
// unaffected; socket.io-client retries and gets in), the
// per-socket event rate (RATE_LIMITED, event dropped, socket kept), and the payload limit (a
// WebSocket message over it is closed with 1009, a polling POST over it gets 413).
import { test, before, after } from "node:test";
import { io as ioClient } from "socket.io-client";
import assert from "node:assert/strict";
import { startFixtureApp, signIn, listMessages, fault, inFlight, resetStats } from "../lib/app.mjs";
import { startGateway, connect, connectError, closeAllClients, waitFor, waitDisconnect, expectNothing, emitAck, sleep, assertAlive } from "../lib/gateway.mjs";
import { openRawWs, rawSocketIo } from "../lib/rawws.mjs";
import { pollingHandshake, pollingPost, scrape, value, eventually } from "../lib/ops.mjs";

let app;
const cookies = {};
before(async () => {
  app = await startFixtureApp();
  for (const name of ["alice", "bob", "carol"]) {
    cookies[name] = await signIn(app.url, app.users[name].email, app.users[name].password);
  }
});
after(async () => {
  closeAllClients();
  await app?.stop();
});

/** Starts a gateway for one test and stops it (and its clients) afterwards. */
async function withGateway(env, t, fn) {
  // A short drain: stopping the gateway must not wait out the default 10 s window.
  const gw = await startGateway({ appUrl: app.url, env: { GATEWAY_SERVER__DRAIN_WINDOW_MS: "200", ...env } });
  try {
    await fn(gw);
    assertAlive(gw);
  } finally {
    closeAllClients();
    await gw.stop();
  }
}

const wsHandshake = (url) => openRawWs(url, "/socket.io/?EIO=4&transport=websocket");

test("server.max_connections: handshakes beyond it get 429 (polling and websocket), live sockets keep working", async (t) => {
  await withGateway({ GATEWAY_SERVER__MAX_CONNECTIONS: "3" }, t, async (gw) => {
    const alice = await connect(gw.url, cookies.alice, { transports: ["websocket"] });
    const bob = await connect(gw.url, cookies.bob, { transports: ["polling"] });
    const carol = await connect(gw.url, cookies.carol); // polling, then upgraded

    const polling = await pollingHandshake(gw.url);
    assert.equal(polling.status, 429, polling.text);
    assert.equal(polling.json?.code, "OVER_CAPACITY", polling.text);
    assert.match(polling.json?.message ?? "", /capacity/);
    assert.equal(polling.headers.get("retry-after"), "5");

    const ws = await wsHandshake(gw.url);
    assert.equal(ws.status, 429, ws.head);
    assert.equal(JSON.parse(ws.body).code, "OVER_CAPACITY", ws.body);

    const err = await connectError(gw.url, cookies.alice, { transports: ["websocket"] });
    assert.ok(err, "a fourth socket.io client must fail to connect");

    // The three live sockets are untouched and still talk.
    const content = `cap ${Date.now()}`;
    const got = waitFor(bob, "message:new", 3000, (m) => m?.content === content);
    const ack = await emitAck(alice, "message:send", { channelId: "c1", content });
    assert.equal(ack?.ok, true, JSON.stringify(ack));
    await got;
    assert.ok(alice.connected && bob.connected && carol.connected);

    const m = await scrape(gw.url);
    assert.equal(value(m, "socket_gateway_connects_total", { result: "over_capacity" }), 3);
    assert.equal(value(m, "socket_gateway_connects_total", { result: "ok" }), 3);

    // A freed slot admits a new session again.
    carol.close();
    const again = await eventually(async () => (await pollingHandshake(gw.url)).status === 200, 3000, "a handshake after a socket left");
    assert.ok(again);
  });
});

test("limits.connect_rate_per_s without a queue: handshakes beyond the rate get 429, the bucket refills", async (t) => {
  // One handshake per second, a bucket of one: the first connect takes the only token.
  await withGateway({ GATEWAY_LIMITS__CONNECT_RATE_PER_S: "1", GATEWAY_LIMITS__CONNECT_QUEUE_MS: "0" }, t, async (gw) => {
    const alice = await connect(gw.url, cookies.alice, { transports: ["websocket"] });
    const t0 = Date.now();
    const polling = await pollingHandshake(gw.url);
    const ws = await wsHandshake(gw.url);
    const elapsed = Date.now() - t0;
    if (elapsed < 900) {
      assert.equal(polling.status, 429, polling.text);
      assert.equal(polling.json?.code, "RATE_LIMITED", polling.text);
      assert.equal(polling.headers.get("retry-after"), "1");
      assert.equal(ws.status, 429, ws.head);
      assert.equal(JSON.parse(ws.body).code, "RATE_LIMITED", ws.body);
    } else {
      t.diagnostic(`the machine was too slow (${elapsed} ms) to check refusals within one token`);
    }
    // The live socket is not affected.
    const ack = await emitAck(alice, "room:leave", { room: "channel:nope" });
    assert.deepEqual(ack, { ok: true });

    await sleep(1100);
    const later = await pollingHandshake(gw.url);
    assert.equal(later.status, 200, "the bucket refills at the configured rate");
    // ...but only one token per second.
    const burst = await Promise.all([1, 2, 3].map(() => pollingHandshake(gw.url)));
    assert.ok(burst.some((r) => r.status === 429), `statuses ${burst.map((r) => r.status)}`);

    const m = await scrape(gw.url);
    assert.ok(value(m, "socket_gateway_connects_total", { result: "rate_limited" }) >= 2);
  });
});

test("limits.connect_queue_ms: handshakes over the rate wait their turn instead of being refused", async (t) => {
  // Two per second (a bucket of two), two seconds of queue: six at once are all admitted, the
  // last ones about two seconds later; a seventh would wait longer and is refused.
  await withGateway({ GATEWAY_LIMITS__CONNECT_RATE_PER_S: "2", GATEWAY_LIMITS__CONNECT_QUEUE_MS: "2000" }, t, async (gw) => {
    const t0 = Date.now();
    const answers = await Promise.all(
      [1, 2, 3, 4, 5, 6, 7].map(async () => {
        const r = await pollingHandshake(gw.url);
        return { status: r.status, ms: Date.now() - t0, code: r.json?.code };
      }),
    );
    const statuses = answers.map((a) => a.status).sort();
    t.diagnostic(`answers: ${JSON.stringify(answers)}`);
    if (answers.some((a) => a.status === 200 && a.ms > 1500)) {
      assert.deepEqual(statuses, [200, 200, 200, 200, 200, 200, 429], JSON.stringify(answers));
      assert.equal(answers.find((a) => a.status === 429).code, "RATE_LIMITED");
      // The queued ones were spread at the rate: the last admitted about 2 s after the first.
      const admitted = answers.filter((a) => a.status === 200).map((a) => a.ms).sort((a, b) => a - b);
      assert.ok(admitted[5] - admitted[0] >= 1500, `admissions spread over ${admitted[5] - admitted[0]} ms`);
    } else {
      t.diagnostic("the machine was too slow to send the seven handshakes within the queue's window");
    }
    const m = await scrape(gw.url);
    assert.equal(value(m, "socket_gateway_handshakes_waiting"), 0, "nobody waits any more");
  });
});

test("socket.io-client retries a 429 with its backoff and gets in", async (t) => {
  // One per second, no queue: of three clients started together, two are refused at first and
  // connect on a later attempt (socket.io-client treats the 429 like any failed attempt).
  await withGateway({ GATEWAY_LIMITS__CONNECT_RATE_PER_S: "1", GATEWAY_LIMITS__CONNECT_QUEUE_MS: "0" }, t, async (gw) => {
    const errors = [];
    const sockets = ["alice", "bob", "carol"].map((name) =>
      ioClient(gw.url, {
        forceNew: true,
        transports: ["websocket"],
        reconnectionDelay: 500,
        reconnectionDelayMax: 1000,
        extraHeaders: { Cookie: cookies[name] },
      }),
    );
    try {
      await Promise.all(
        sockets.map(
          (s) =>
            new Promise((resolve, reject) => {
              const timer = setTimeout(() => reject(new Error("not connected within 15 s")), 15000);
              s.on("connect_error", (e) => errors.push(e.message));
              s.once("connect", () => (clearTimeout(timer), resolve()));
            }),
        ),
      );
      t.diagnostic(`failed attempts before: ${JSON.stringify(errors)}`);
      assert.ok(errors.length >= 1, "at least one attempt was refused first");
      const m = await scrape(gw.url);
      assert.ok(value(m, "socket_gateway_connects_total", { result: "rate_limited" }) >= 1);
      assert.equal(value(m, "socket_gateway_connects_total", { result: "ok" }), 3);
    } finally {
      for (const s of sockets) s.close();
    }
  });
});

test("app.max_auth_calls_in_flight: a connect storm waits in line for the app, none refused", async (t) => {
  // Three users connect at once while the app answers in 300 ms; one call at a time.
  await fault(app.url, { mode: "slow", delayMs: 300, paths: ["session", "memberships"] });
  await resetStats(app.url);
  try {
    await withGateway({ GATEWAY_APP__MAX_AUTH_CALLS_IN_FLIGHT: "1" }, t, async (gw) => {
      const sockets = await Promise.all(["alice", "bob", "carol"].map((n) => connect(gw.url, cookies[n], { transports: ["websocket"], timeout: 10000 })));
      assert.ok(sockets.every((s) => s.connected));
      const f = await inFlight(app.url);
      assert.deepEqual(f.maxTotal, { session: 1, memberships: 1 }, JSON.stringify(f));
      const m = await scrape(gw.url);
      assert.equal(value(m, "socket_gateway_app_calls_waiting", { call: "session" }), 0);
    });
    // Without a queue a call that finds no free slot fails at once: Auth unavailable, retryable.
    await withGateway({ GATEWAY_APP__MAX_AUTH_CALLS_IN_FLIGHT: "1", GATEWAY_APP__AUTH_QUEUE_MS: "0" }, t, async (gw) => {
      const results = await Promise.allSettled(["alice", "bob", "carol"].map((n) => connect(gw.url, cookies[n], { transports: ["websocket"], timeout: 10000 })));
      const refused = results.filter((r) => r.status === "rejected");
      assert.ok(refused.length >= 1, "a connect found no slot");
      assert.ok(refused.every((r) => r.reason.message === "Auth unavailable" && r.reason.data?.retryable === true), JSON.stringify(refused.map((r) => r.reason.message)));
    });
  } finally {
    await fault(app.url, { mode: "ok" });
  }
});

test("limits.events_per_s / events_burst: events over the bucket are dropped with RATE_LIMITED, the socket stays", async (t) => {
  // One event per second sustained, three at once: the refill is slow enough to not blur the burst.
  await withGateway({ GATEWAY_LIMITS__EVENTS_PER_S: "1", GATEWAY_LIMITS__EVENTS_BURST: "3" }, t, async (gw) => {
    const alice = await connect(gw.url, cookies.alice);
    const bob = await connect(gw.url, cookies.bob);
    const errors = [];
    alice.on("error", (e) => errors.push(e));
    const t0 = Date.now();
    // A burst of five: three pass, two are refused with the contract's error ack.
    const acks = await Promise.all([1, 2, 3, 4, 5].map(() => emitAck(alice, "room:leave", { room: "channel:nope" })));
    const ok = acks.filter((a) => a?.ok === true).length;
    const limited = acks.filter((a) => a?.ok === false && a?.code === "RATE_LIMITED");
    assert.equal(ok, 3, JSON.stringify(acks));
    assert.equal(limited.length, 2, JSON.stringify(acks));
    assert.ok(limited.every((a) => typeof a.error === "string" && a.error.length > 0));

    // A chat message over the limit is dropped: refused ack, never stored, never broadcast.
    const content = `limited ${Date.now()}`;
    const none = expectNothing(bob, "message:new", 500, (m) => m?.content === content);
    const refused = await emitAck(alice, "message:send", { channelId: "c1", content });
    // Without an ack, the refusal is an `error` event only.
    alice.emit("typing:start", { channelId: "c1" });
    const elapsed = Date.now() - t0;
    assert.equal(refused?.code, "RATE_LIMITED", `${JSON.stringify(refused)} after ${elapsed} ms`);
    await none;
    const stored = await listMessages(app.url, cookies.bob, { channelId: "c1" });
    assert.ok(!stored.body.messages.some((m) => m.content === content), "a dropped message reached the app");

    // Every refusal also came as an `error` event: two room:leave, the message, the typing.
    await eventually(() => errors.length >= 4, 2000, "four error events");
    await sleep(100);
    assert.equal(errors.length, 4, JSON.stringify(errors));
    assert.ok(errors.every((e) => e?.code === "RATE_LIMITED" && typeof e.message === "string"), JSON.stringify(errors));

    // Still connected, and the sustained rate comes back.
    assert.ok(alice.connected);
    await sleep(1100);
    const after = await emitAck(alice, "room:leave", { room: "channel:nope" });
    assert.deepEqual(after, { ok: true });

    const m = await scrape(gw.url);
    assert.equal(value(m, "socket_gateway_events_in_total", { event: "room:leave" }), 6);
    assert.equal(value(m, "socket_gateway_events_in_total", { event: "message:send" }), 1);
    assert.equal(value(m, "socket_gateway_events_in_total", { event: "typing:start" }), 1);
  });
});

test("engine.max_payload: a websocket message over it closes that connection with 1009, a polling POST gets 413", async (t) => {
  await withGateway({ GATEWAY_ENGINE__MAX_PAYLOAD: "10000" }, t, async (gw) => {
    const bob = await connect(gw.url, cookies.bob, { transports: ["websocket"] });

    // socket.io-client over websocket: the oversized emit ends its connection.
    const alice = await connect(gw.url, cookies.alice, { transports: ["websocket"] });
    const gone = waitDisconnect(alice, 3000);
    alice.emit("message:send", { channelId: "c1", content: "x".repeat(20000) });
    assert.equal(await gone, "transport close");

    // At the frame level: the close frame says why.
    const raw = await rawSocketIo(gw.url, { cookie: cookies.alice });
    raw.send(`42["message:send",{"channelId":"c1","content":"${"y".repeat(12000)}"}]`);
    await raw.ended;
    assert.deepEqual(raw.closeFrame, { code: 1009, reason: "message too big" });

    // Just under the limit is accepted.
    const fits = await connect(gw.url, cookies.alice, { transports: ["websocket"] });
    const ack = await emitAck(fits, "room:leave", { room: `channel:${"z".repeat(200)}` });
    assert.deepEqual(ack, { ok: true });

    // Polling: 413, and the session is closed.
    const hs = await pollingHandshake(gw.url);
    assert.equal(hs.status, 200);
    const big = await pollingPost(gw.url, hs.sid, "4" + "x".repeat(10001));
    assert.equal(big.status, 413);
    const small = await pollingPost(gw.url, hs.sid, "40");
    assert.equal(small.status, 400, "the session was closed");
    const hs2 = await pollingHandshake(gw.url);
    const fine = await pollingPost(gw.url, hs2.sid, "4" + "x".repeat(9000));
    assert.equal(fine.status, 200, fine.text);

    // Nobody else noticed.
    const pong = await emitAck(bob, "room:leave", { room: "channel:nope" });
    assert.deepEqual(pong, { ok: true });
  });
});
