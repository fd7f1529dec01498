// Shared setup for the Valkey relay tests (tests/node/relay/*.test.mjs): gateways with the relay on,
// Node socket.io 4.8 peer servers on @socket.io/redis-adapter 8.x (the reference implementation of the
// wire format, not the code under test), /readyz polling, and exactly-once counting.
// Never print cookie values: they are bearer secrets even in tests.
import http from "node:http";
import { Server } from "socket.io";
import { createAdapter, createShardedAdapter } from "@socket.io/redis-adapter";
import { createCluster } from "redis";
import { io as ioClient } from "socket.io-client";
import { freePort } from "../lib/procs.mjs";
import { startFixtureApp, signIn } from "../lib/app.mjs";
import { startGateway, closeAllClients, sleep } from "../lib/gateway.mjs";
import { redisClient, until, topologyEnv, pubsubNumsub } from "../lib/valkey.mjs";

/**
 * Environment that turns the gateway's relay on against `valkeyUrl` (plus generous event limits).
 * Connection state recovery is off here: these files check the adapter's own wire format and channels
 * (with recovery on, gateways listen on the recovery channels; tests/node/recovery/ covers that mode).
 */
export function relayEnv(valkeyUrl, extra = {}) {
  return {
    GATEWAY_REDIS__ENABLED: "true",
    REDIS_URL: valkeyUrl,
    ...topologyEnv(valkeyUrl),
    GATEWAY_RECOVERY__ENABLED: "false",
    GATEWAY_LIMITS__EVENTS_PER_S: "1000",
    GATEWAY_LIMITS__EVENTS_BURST: "1000",
    ...extra,
  };
}

/** GET /readyz → {status, body} (body parsed JSON, or {text} when it is not JSON). */
export async function readyz(gw, timeoutMs = 2000) {
  const res = await fetch(`${gw.url}/readyz`, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = { text };
  }
  return { status: res.status, body };
}

/** Polls /readyz until `relay` is `state` ("up" | "down" | "disabled"); resolves to the ms it took. */
export async function waitRelay(gw, state, ms = 8000) {
  const t0 = Date.now();
  await until(
    async () => {
      const r = await readyz(gw);
      return r.status === 200 && r.body?.relay === state ? r : false;
    },
    { ms, everyMs: 50, what: `${gw.url}/readyz relay "${state}"` },
  ).catch(async (err) => {
    let now = "?";
    try {
      now = JSON.stringify(await readyz(gw));
    } catch (e) {
      now = e.message;
    }
    throw new Error(`${err.message}; /readyz now ${now}; gateway log tail:\n${gw.output().slice(-1500)}`);
  });
  return Date.now() - t0;
}

/**
 * startRelayStack() on a Valkey Cluster (lib/valkey-cluster.mjs): two gateways told of `seeds` (all the cluster's
 * by default; the first is REDIS_URL), on classic or sharded Pub/Sub, with recovery on unless said otherwise.
 */
export function startClusterRelayStack(cluster, { seeds = cluster.seeds, pubsub = "classic", recovery = true } = {}) {
  const [first, ...more] = seeds;
  return startRelayStack({
    valkeyUrl: first,
    gateways: 2,
    gatewayEnv: {
      GATEWAY_REDIS__TOPOLOGY: "cluster",
      ...(more.length > 0 ? { GATEWAY_REDIS__NODES: more.join(",") } : {}),
      GATEWAY_REDIS__PUBSUB: pubsub,
      GATEWAY_RECOVERY__ENABLED: String(recovery),
    },
  });
}

/**
 * Starts a fixture app, signs every seed user in once, and starts `gateways` gateway instances with the relay
 * pointed at `valkeyUrl` (waiting for relay "up" unless `waitUp` is false). Resolves to
 * {app, gws, users, cookies, login(name), stop()}.
 */
export async function startRelayStack({ valkeyUrl, gateways = 2, gatewayEnv = {}, appEnv = {}, waitUp = true } = {}) {
  const app = await startFixtureApp({ env: appEnv });
  const gws = [];
  try {
    const login = (name) => signIn(app.url, app.users[name].email, app.users[name].password);
    const cookies = {};
    for (const name of Object.keys(app.users)) cookies[name] = await login(name);
    for (let i = 0; i < gateways; i++) {
      gws.push(await startGateway({ appUrl: app.url, env: relayEnv(valkeyUrl, gatewayEnv) }));
    }
    if (waitUp) for (const gw of gws) await waitRelay(gw, "up");
    return {
      app,
      gws,
      users: app.users,
      cookies,
      login,
      async stop() {
        closeAllClients();
        await Promise.all(gws.map((g) => g.stop()));
        await app.stop();
      },
    };
  } catch (err) {
    await Promise.all(gws.map((g) => g.stop()));
    await app.stop();
    throw err;
  }
}

/**
 * A Node socket.io 4.8.4 server with the classic @socket.io/redis-adapter (`createAdapter(pub, sub)`) on
 * Valkey, on a free loopback port. Its sockets join rooms with `socket.emit("join", rooms, ack)` and leave with
 * "leave"; `received` collects server-side events. Resolves to {io, url, pub, sub, received, close()}.
 */
export async function startNodePeer(valkeyUrl, { key = "socket.io", requestsTimeout = 3000 } = {}) {
  // Queue commands while Valkey is away (the adapter publishes without catching errors).
  const pub = redisClient(valkeyUrl, { maxRetriesPerRequest: null });
  // One node is enough to subscribe on (a Cluster copies every PUBLISH to each node); an ioredis Cluster
  // subscriber, closed, rejects the adapter's uncaught (un)subscriptions still in its queue.
  const sub = redisClient(valkeyUrl, { node: true, maxRetriesPerRequest: null });
  const httpServer = http.createServer();
  const io = new Server(httpServer, {
    adapter: createAdapter(pub, sub, { key, requestsTimeout }),
    pingInterval: 5000,
    pingTimeout: 5000,
  });
  const received = [];
  joinAndLeaveOnRequest(io);
  const port = await freePort();
  await new Promise((resolve) => httpServer.listen(port, "127.0.0.1", resolve));
  // Wait until the adapter's subscriptions are in place: its own response channel, subscribed last (after the
  // PSUBSCRIBE, with the request channel). Not the request channel: the gateways subscribe to it too, and a peer
  // closed with its subscriptions still queued rejects them, unhandled.
  const own = `${key}-response#/#${io.of("/").adapter.uid}#`;
  await until(async () => (await pubsubNumsub(pub, [own]))[own] >= 1, {
    ms: 5000,
    what: "node peer subscribed",
  });
  return {
    io,
    url: `http://127.0.0.1:${port}`,
    port,
    pub,
    sub,
    received,
    async close() {
      // Local only: a request to the other servers would be published while the clients close.
      io.local.disconnectSockets(true);
      await new Promise((resolve) => io.close(() => resolve()));
      // QUIT after the adapter's last (un)subscriptions, which it does not await: disconnect() would
      // reject them, unhandled. A client whose server is gone already just disconnects.
      await Promise.all(
        [pub, sub].map((c) =>
          // The QUIT's own promise is caught too: it rejects after the disconnect when it loses the race.
          Promise.race([c.quit().catch(() => {}), sleep(1000)]).finally(() => c.disconnect()),
        ),
      );
    },
  };
}

/**
 * A Node socket.io 4.8.4 server on @socket.io/redis-adapter's `createShardedAdapter` (SPUBLISH/SSUBSCRIBE) over
 * node-redis 5's Cluster client, as the Socket.IO docs set it up, on a free loopback port. Same shape and
 * "join"/"leave" handlers as startNodePeer(). Resolves once its namespace channel is subscribed.
 */
export async function startShardedNodePeer(seeds, { subscriptionMode = "dynamic" } = {}) {
  const pub = createCluster({ rootNodes: seeds.map((url) => ({ url })) });
  const sub = pub.duplicate();
  // A node lost in a test's fault: the clients reconnect by themselves; nothing to report here.
  for (const c of [pub, sub]) c.on("error", () => {});
  await Promise.all([pub.connect(), sub.connect()]);
  // The adapter does not await its SUNSUBSCRIBEs. node-redis 5 destroys a shard's Pub/Sub client after each one
  // that leaves it with no subscription, so of two at once on a shard (a closing adapter sends them together)
  // the second rejects with "The client is closed", unhandled. That rejection only is caught here.
  const sUnsubscribe = sub.sUnsubscribe.bind(sub);
  sub.sUnsubscribe = sub.SUNSUBSCRIBE = (...args) =>
    sUnsubscribe(...args).catch((err) => {
      if (err?.message !== "The client is closed") throw err;
    });
  const httpServer = http.createServer();
  const io = new Server(httpServer, {
    adapter: createShardedAdapter(pub, sub, { subscriptionMode }),
    pingInterval: 5000,
    pingTimeout: 5000,
  });
  joinAndLeaveOnRequest(io);
  const port = await freePort();
  await new Promise((resolve) => httpServer.listen(port, "127.0.0.1", resolve));
  const peer = {
    io,
    url: `http://127.0.0.1:${port}`,
    port,
    pub,
    sub,
    /** How many servers are subscribed to the namespace channel (what the adapter counts as servers). */
    serverCount: () => io.of("/").adapter.serverCount(),
    async close() {
      io.local.disconnectSockets(true);
      await new Promise((resolve) => io.close(() => resolve()));
      await sleep(200);
      await Promise.all([pub, sub].map((c) => Promise.race([c.close().catch(() => {}), sleep(1000)])));
    },
  };
  await until(async () => (await peer.serverCount()) >= 1, { ms: 5000, what: "sharded node peer subscribed" });
  return peer;
}

/** A peer's sockets join rooms with `socket.emit("join", rooms, ack)` and leave with "leave". */
function joinAndLeaveOnRequest(io) {
  io.on("connection", (socket) => {
    socket.on("join", (rooms, ack) => {
      socket.join(rooms);
      ack?.();
    });
    socket.on("leave", (room, ack) => {
      socket.leave(room);
      ack?.();
    });
  });
}

/** A socket.io-client socket on a Node peer that has joined `rooms`. */
export async function peerClient(peer, rooms = []) {
  const s = ioClient(peer.url, { forceNew: true, reconnection: false, timeout: 5000, transports: ["websocket"] });
  await new Promise((resolve, reject) => {
    s.once("connect", resolve);
    s.once("connect_error", reject);
  });
  if (rooms.length) await s.timeout(3000).emitWithAck("join", rooms);
  return s;
}

/**
 * Records every `event` on each socket of `sockets` ({name: socket}) whose args pass `filter`.
 * `.counts()` → {name: n}; `.args(name)` → list of arg arrays; `.stop()` removes the listeners.
 */
export function recorder(sockets, event, filter = () => true) {
  const got = {};
  const handlers = [];
  for (const [name, sock] of Object.entries(sockets)) {
    got[name] = [];
    const h = (...args) => {
      if (typeof args[args.length - 1] === "function") args = args.slice(0, -1);
      if (filter(...args)) got[name].push(args);
    };
    sock.on(event, h);
    handlers.push([sock, h]);
  }
  return {
    counts: () => Object.fromEntries(Object.entries(got).map(([k, v]) => [k, v.length])),
    args: (name) => got[name],
    stop: () => handlers.forEach(([s, h]) => s.off(event, h)),
    /** Resolves once every name in `names` has at least one; rejects after `ms` with the counts. */
    async waitAll(names, ms = 3000) {
      await until(() => names.every((n) => got[n].length > 0), { ms, everyMs: 10, what: `"${event}" on ${names.join(", ")}` }).catch(
        (err) => {
          throw new Error(`${err.message}; counts: ${JSON.stringify(this.counts())}`);
        },
      );
    },
  };
}

/**
 * Waits `settleMs` after the expected deliveries and checks that every name in `yes` got `event` exactly once
 * and every name in `no` never. Throws with the full counts otherwise.
 */
export async function assertExactlyOnce(rec, yes, no, { ms = 3000, settleMs = 300, label = "" } = {}) {
  await rec.waitAll(yes, ms);
  await sleep(settleMs);
  const counts = rec.counts();
  rec.stop();
  const bad = [...yes.filter((n) => counts[n] !== 1), ...no.filter((n) => counts[n] !== 0)];
  if (bad.length) {
    throw new Error(`${label} expected exactly once on [${yes}] and never on [${no}]; counts ${JSON.stringify(counts)}`);
  }
  return counts;
}

export { sleep };
