// /metrics after real traffic: the text parses (tests/node/lib/ops.mjs has a strict parser), every
// family has HELP and TYPE, and the values match what the test did: connects by result, events in
// and out by name, broadcast recipients, app calls, cache hits and coalescing, sessions by
// transport, rooms, disconnects by reason. Then the admin listener and metrics.enabled = false.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startFixtureApp, signIn, memberships, stats, resetStats } from "../lib/app.mjs";
import { startGateway, connect, connectError, closeAllClients, waitFor, emitAck, tamperCookie, sleep, assertAlive } from "../lib/gateway.mjs";
import { existsSync } from "node:fs";
import path from "node:path";
import { Redis } from "ioredis";
import { Emitter } from "@socket.io/redis-emitter";
import { freePort, startProcess, stopProcess, repoRoot } from "../lib/procs.mjs";
import { openRawWs } from "../lib/rawws.mjs";
import { pollingHandshake, scrape, value, sum, eventually } from "../lib/ops.mjs";

let app;
const cookies = {};
before(async () => {
  app = await startFixtureApp();
  for (const name of Object.keys(app.users)) {
    cookies[name] = await signIn(app.url, app.users[name].email, app.users[name].password);
  }
});
after(async () => {
  closeAllClients();
  await app?.stop();
});

const env = {
  GATEWAY_LIMITS__EVENTS_PER_S: "1000",
  GATEWAY_LIMITS__EVENTS_BURST: "1000",
  GATEWAY_SERVER__DRAIN_WINDOW_MS: "200",
  // Presence updates at once: each then reaches only the sockets connected so far, which the fan-out buckets
  // below count on (with a window, an update can also reach sockets that connected while it waited).
  GATEWAY_PRESENCE__BATCH_MS: "0",
};

/** Families every gateway exposes from the start (the valkey_* ones appear with the relay). */
const ALWAYS = [
  "socket_gateway_build_info",
  "socket_gateway_connections",
  "socket_gateway_connects_total",
  "socket_gateway_rooms",
  "socket_gateway_slow_consumer_disconnects_total",
  "socket_gateway_session_cache_hits_total",
  "socket_gateway_app_calls_coalesced_total",
];

/** Rooms of the contract a user's sockets are put in (the app's memberships answer). */
async function roomsOf(cookie) {
  const m = (await memberships(app.url, cookie)).body;
  return [
    `user:${m.userId}`,
    ...m.workspaces.map((w) => `workspace:${w}`),
    ...m.channels.map((c) => `channel:${c.id}`),
    ...m.conversations.map((d) => `dm:${d.id}`),
  ];
}

test("after traffic, /metrics parses and its values match the traffic", async (t) => {
  const gw = await startGateway({ appUrl: app.url, env });
  try {
    const m0 = await scrape(gw.url);
    for (const name of ALWAYS) {
      const f = m0.get(name);
      assert.ok(f, `family ${name} missing at start`);
      assert.ok(f.help && f.help.length > 10, `${name} has no HELP`);
    }
    for (const result of ["ok", "invalid_session", "auth_unavailable", "origin_refused", "rate_limited", "over_capacity"]) {
      assert.equal(value(m0, "socket_gateway_connects_total", { result }), 0, result);
    }
    const info = m0.get("socket_gateway_build_info").samples;
    assert.equal(info.length, 1);
    assert.equal(info[0].value, 1);
    assert.match(info[0].labels.version, /^\d+\.\d+\.\d+/);

    // Connections: alice twice (the second from the session cache), bob upgraded, carol.
    const aliceWs = await connect(gw.url, cookies.alice, { transports: ["websocket"] });
    const alicePoll = await connect(gw.url, cookies.alice, { transports: ["polling"] });
    const bob = await connect(gw.url, cookies.bob);
    const carol = await connect(gw.url, cookies.carol, { transports: ["websocket"] });
    await eventually(() => bob.io.engine.transport.name === "websocket", 3000, "bob's upgrade");
    // Refusals: no cookie, a tampered cookie, a foreign Origin (polling and websocket).
    await connectError(gw.url, null);
    await connectError(gw.url, tamperCookie(cookies.alice));
    assert.equal((await pollingHandshake(gw.url, { headers: { Origin: "http://evil.test" } })).status, 403);
    const evilWs = await openRawWs(gw.url, "/socket.io/?EIO=4&transport=websocket", { headers: { Origin: "http://evil.test" } });
    assert.equal(evilWs.status, 403);
    // Three concurrent connects with one fresh session: one app session call.
    const dave = await signIn(app.url, app.users.dave.email, app.users.dave.password);
    await resetStats(app.url);
    const daves = await Promise.all([1, 2, 3].map(() => connect(gw.url, dave, { transports: ["websocket"] })));
    assert.equal((await stats(app.url)).session, 1, "concurrent identical lookups were not coalesced");

    // Events: five messages to c1 (alice ×2 and bob are members: 3 recipients each).
    const MESSAGES = 5;
    for (let i = 0; i < MESSAGES; i++) {
      const got = waitFor(bob, "message:new", 3000, (m) => m?.content === `m${i}`);
      const ack = await emitAck(aliceWs, "message:send", { channelId: "c1", content: `m${i}` });
      assert.equal(ack?.ok, true, JSON.stringify(ack));
      await got;
    }
    // Typing by bob: an update to alice's two sockets, twice.
    const typing = waitFor(alicePoll, "typing:update", 3000, (u) => u?.isTyping === false);
    bob.emit("typing:start", { channelId: "c1" });
    await sleep(50);
    bob.emit("typing:stop", { channelId: "c1" });
    await typing;
    // An unknown event (label "other") gets an error event back.
    const refusal = waitFor(carol, "error", 3000, (e) => e?.code === "UNKNOWN_EVENT");
    carol.emit("made-up:event", {});
    await refusal;
    // A refused join: the app's authorize answers {allowed:false}.
    const join = await emitAck(carol, "room:join", { room: "channel:c1" });
    assert.equal(join.ok, false, JSON.stringify(join));

    const m = await eventually(async () => {
      const s = await scrape(gw.url);
      return value(s, "socket_gateway_events_out_total", { event: "typing:update" }) === 4 ? s : null;
    }, 3000, "typing:update counted");
    t.diagnostic(`${m.size} families`);
    for (const f of m.values()) {
      assert.ok(f.help, `${f.name} has no HELP`);
      assert.ok(f.type, `${f.name} has no TYPE`);
      assert.ok(f.name.startsWith("socket_gateway_"), f.name);
      for (const s of f.samples) {
        for (const v of Object.values(s.labels)) {
          assert.ok(!/[A-Za-z0-9_-]{20}/.test(v) || /^\d/.test(v), `${s.name} label value looks like an id: ${v}`);
        }
      }
    }
    const connects = (result) => value(m, "socket_gateway_connects_total", { result });
    assert.equal(connects("ok"), 4 + 3);
    assert.equal(connects("invalid_session"), 2);
    assert.equal(connects("origin_refused"), 2);
    assert.equal(connects("auth_unavailable"), 0);
    assert.equal(connects("rate_limited"), 0);
    assert.equal(connects("over_capacity"), 0);

    const eventsIn = (event) => value(m, "socket_gateway_events_in_total", { event });
    const eventsOut = (event) => value(m, "socket_gateway_events_out_total", { event });
    assert.equal(eventsIn("message:send"), MESSAGES);
    assert.equal(eventsIn("typing:start"), 1);
    assert.equal(eventsIn("typing:stop"), 1);
    assert.equal(eventsIn("room:join"), 1);
    assert.equal(eventsIn("other"), 1);
    assert.equal(eventsOut("message:new"), MESSAGES * 3);
    assert.equal(eventsOut("typing:update"), 4);
    assert.equal(eventsOut("error"), 1);

    // The fan-out histogram also holds the presence updates of the users connecting.
    const presence = eventsOut("presence:update") ?? 0;
    const count = value(m, "socket_gateway_broadcast_recipients_count");
    assert.ok(count >= MESSAGES + 2, `broadcasts ${count}`);
    assert.equal(value(m, "socket_gateway_broadcast_recipients_sum"), MESSAGES * 3 + 4 + presence);
    assert.equal(value(m, "socket_gateway_broadcast_recipients_bucket", { le: "5" }), count);

    const calls = (call, outcome) => value(m, "socket_gateway_app_call_duration_seconds_count", { call, outcome }) ?? 0;
    assert.equal(calls("event", "ok"), MESSAGES);
    assert.equal(calls("authorize", "ok"), 1);
    assert.ok(calls("session", "ok") >= 4, `session calls ${calls("session", "ok")}`);
    assert.equal(sum(m, "socket_gateway_app_calls_in_flight"), 0);
    const buckets = m.get("socket_gateway_app_call_duration_seconds").samples.filter((s) => s.name.endsWith("_bucket"));
    assert.ok(new Set(buckets.map((s) => s.labels.le)).size >= 8, "app call durations need real buckets");

    assert.equal(value(m, "socket_gateway_session_cache_hits_total") >= 1, true, "alice's second connect came from the cache");
    const hitsAndCoalesced = value(m, "socket_gateway_session_cache_hits_total") + value(m, "socket_gateway_app_calls_coalesced_total");
    assert.ok(hitsAndCoalesced >= 1 + 2, `hits + coalesced = ${hitsAndCoalesced}`);

    assert.equal(value(m, "socket_gateway_connections", { transport: "websocket" }), 3 + 3);
    assert.equal(value(m, "socket_gateway_connections", { transport: "polling" }), 1);
    const rooms = new Set([...(await roomsOf(cookies.alice)), ...(await roomsOf(cookies.bob)), ...(await roomsOf(cookies.carol)), ...(await roomsOf(dave))]);
    assert.equal(value(m, "socket_gateway_rooms"), rooms.size);

    // Disconnects by reason, and the gauges follow.
    carol.close();
    for (const d of daves) d.close();
    const after = await eventually(async () => {
      const s = await scrape(gw.url);
      return value(s, "socket_gateway_connections", { transport: "websocket" }) === 2 ? s : null;
    }, 3000, "closed sockets leave the websocket gauge");
    assert.equal(value(after, "socket_gateway_disconnects_total", { reason: "client namespace disconnect" }), 4);
    const left = new Set([...(await roomsOf(cookies.alice)), ...(await roomsOf(cookies.bob))]);
    assert.equal(value(after, "socket_gateway_rooms"), left.size);
    assertAlive(gw);
  } finally {
    closeAllClients();
    await gw.stop();
  }
});

test("metrics.listen = host:port serves /metrics on an admin listener only", async () => {
  const port = await freePort();
  const gw = await startGateway({ appUrl: app.url, env: { ...env, GATEWAY_METRICS__LISTEN: `127.0.0.1:${port}` } });
  try {
    const admin = `http://127.0.0.1:${port}`;
    await connect(gw.url, cookies.alice);
    const m = await scrape(admin);
    assert.equal(value(m, "socket_gateway_connects_total", { result: "ok" }), 1);
    const main = await fetch(`${gw.url}/metrics`);
    assert.equal(main.status, 404, "the main port must not expose /metrics when an admin listener is set");
  } finally {
    closeAllClients();
    await gw.stop();
  }
});

test("metrics.enabled = false serves no /metrics", async () => {
  const gw = await startGateway({ appUrl: app.url, env: { ...env, GATEWAY_METRICS__ENABLED: "false" } });
  try {
    const sock = await connect(gw.url, cookies.alice);
    assert.ok(sock.connected);
    const res = await fetch(`${gw.url}/metrics`);
    assert.equal(res.status, 404);
  } finally {
    closeAllClients();
    await gw.stop();
  }
});

const valkeyBin = process.env.VALKEY_SERVER || path.join(repoRoot, ".cache/bin/valkey-server");

test("with the relay: valkey_* series are recorded, and a broadcast from the app's emitter counts as events out", {
  skip: !existsSync(valkeyBin) && `no valkey-server at ${valkeyBin} (run scripts/setup.sh)`,
}, async () => {
  const port = await freePort();
  const valkey = await startProcess(valkeyBin, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    ready: /Ready to accept connections/,
    name: "valkey",
  });
  const redis = new Redis({ port, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 1 });
  const gw = await startGateway({
    appUrl: app.url,
    env: { ...env, GATEWAY_REDIS__ENABLED: "true", REDIS_URL: `redis://127.0.0.1:${port}` },
  });
  try {
    await eventually(async () => (await (await fetch(`${gw.url}/readyz`)).json()).relay === "up", 5000, "relay up");
    const alice = await connect(gw.url, cookies.alice, { transports: ["websocket"] });
    const bob = await connect(gw.url, cookies.bob, { transports: ["websocket"] });
    await redis.connect();
    // The app's side: @socket.io/redis-emitter, as the product uses it.
    const emitter = new Emitter(redis);
    const marker = `from-emitter ${Date.now()}`;
    // A whole message, as the app saves and broadcasts it (schema/events: ChatMessage).
    const message = { id: `emitted-${Date.now()}`, channelId: "c1", author: { id: "app-bot", name: "Bot" }, content: marker, createdAt: new Date().toISOString() };
    const got = [alice, bob].map((s) => waitFor(s, "message:new", 3000, (m) => m?.content === marker));
    await eventually(async () => {
      emitter.to("channel:c1").emit("message:new", message);
      return Promise.race([got[0].then(() => true), sleep(300).then(() => false)]);
    }, 4000, "the emitter's broadcast reaching alice");
    await Promise.all(got);
    // One message from a socket: published to Valkey for the other instances.
    const ack = await emitAck(alice, "message:send", { channelId: "c1", content: "to the fleet" });
    assert.equal(ack?.ok, true, JSON.stringify(ack));

    const m = await eventually(async () => {
      const s = await scrape(gw.url);
      return value(s, "socket_gateway_valkey_publishes_total") >= 1 ? s : null;
    }, 3000, "a publish counted");
    for (const name of [
      "socket_gateway_valkey_connected",
      "socket_gateway_valkey_subscriptions",
      "socket_gateway_valkey_messages_received_total",
      "socket_gateway_valkey_publishes_total",
    ]) {
      assert.ok(m.get(name)?.help, `${name}: no HELP`);
    }
    assert.equal(value(m, "socket_gateway_valkey_connected"), 1);
    assert.ok(value(m, "socket_gateway_valkey_subscriptions") >= 1);
    assert.ok(value(m, "socket_gateway_valkey_messages_received_total") >= 1);
    // Relayed and local broadcasts alike: message:new to alice and bob, per broadcast.
    let last;
    const relayed = await eventually(async () => {
      last = await scrape(gw.url);
      return value(last, "socket_gateway_events_out_total", { event: "message:new" }) >= 4 ? last : null;
    }, 3000, "message:new counted").catch((err) => {
      const seen = value(last, "socket_gateway_events_out_total", { event: "message:new" });
      throw new Error(`${err.message}: events_out{message:new} = ${seen}, broadcasts = ${value(last, "socket_gateway_broadcast_recipients_count")}`);
    });
    const out = value(relayed, "socket_gateway_events_out_total", { event: "message:new" });
    const broadcasts = value(relayed, "socket_gateway_broadcast_recipients_count");
    // Retries of the emitter may have delivered the marker more than once; each delivery is 2.
    // The fan-out histogram also counts the presence updates of alice and bob connecting.
    assert.equal(out % 2, 0, `events_out{message:new} ${out} is a multiple of 2`);
    assert.ok(broadcasts >= out / 2, `events_out ${out}, broadcasts ${broadcasts}`);
  } finally {
    closeAllClients();
    await gw.stop();
    redis.disconnect();
    await stopProcess(valkey);
  }
});
