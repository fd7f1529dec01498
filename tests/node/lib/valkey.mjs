// Valkey for the relay tests: a real `valkey-server` (from $VALKEY_SERVER, which scripts/test.sh sets to
// .cache/bin/valkey-server) on a free 127.0.0.1 port, without persistence, that can be stopped, killed
// and restarted on the same port; plus small ioredis helpers (clients, PUBSUB queries).
import { existsSync } from "node:fs";
import { Redis, Cluster } from "ioredis";
import { freePort, startProcess, stopProcess } from "./procs.mjs";

/** The valkey-server binary, or a clear error telling how to get one. */
export function valkeyServerPath() {
  const bin = process.env.VALKEY_SERVER;
  if (!bin) {
    throw new Error(
      "VALKEY_SERVER is not set: run the tests with `bash scripts/test.sh node`, or run `bash scripts/setup.sh` " +
        "and export VALKEY_SERVER=<repo>/.cache/bin/valkey-server",
    );
  }
  if (!existsSync(bin)) {
    throw new Error(`VALKEY_SERVER=${bin} does not exist: run \`bash scripts/setup.sh\` first`);
  }
  return bin;
}

/**
 * A suite's `skip` option when it starts its own servers: why it cannot run without a valkey-server, or
 * false. On CI a missing server is a failure, not a skip.
 */
export const skipWithoutValkey = (() => {
  try {
    valkeyServerPath();
    return false;
  } catch (err) {
    return process.env.CI ? false : err.message;
  }
})();

/**
 * The Valkey topology the relay, recovery and presence tests run on: VALKEY_TOPOLOGY = "single" (default),
 * "cluster" (3 primaries) or "sentinel" (a primary found through a sentinel). `bash scripts/test.sh node` runs
 * those suites once per topology.
 */
export function valkeyTopology() {
  const t = process.env.VALKEY_TOPOLOGY || "single";
  if (!["single", "cluster", "sentinel"].includes(t)) throw new Error(`VALKEY_TOPOLOGY=${t}: expected single, cluster or sentinel`);
  return t;
}

/**
 * A test's `skip` option for faults of the one Valkey node (kill, pause, restart, a server that starts late):
 * false on a single node, else why it does not run (Cluster and Sentinel faults have their own tests in
 * relay/valkey-topologies.test.mjs and relay/topology-failover.test.mjs).
 */
export const singleNodeFault =
  valkeyTopology() === "single" ? false : `a fault of the one Valkey node; ${valkeyTopology()} faults are tested in relay/topology-failover.test.mjs`;

/** What a gateway needs besides REDIS_URL for each started topology, by its url. */
const topologies = new Map();

/** The gateway's settings for the topology behind `url` (none for a single node). */
export function topologyEnv(url) {
  return topologies.get(url)?.env ?? {};
}

/** Whether `url` is a Cluster's seed (its clients are then ioredis Cluster clients). */
function isClusterSeed(url) {
  return topologies.get(url)?.topology === "cluster";
}

/**
 * Starts the topology VALKEY_TOPOLOGY names (see valkeyTopology()). A single node is startValkeyServer(); the
 * others resolve to {url, topology, env, stop(), output()} and throw from the single-node faults (kill, pause,
 * restart), which tests of those faults skip on them (the Cluster and Sentinel faults have their own tests).
 */
export async function startValkey(opts = {}) {
  const topology = valkeyTopology();
  if (topology === "single") return startValkeyServer(opts);
  const unsupported = (what) => () => {
    throw new Error(`${what}: a single-node fault, not defined on ${topology}`);
  };
  let t;
  if (topology === "cluster") {
    const { startValkeyCluster, gatewayClusterEnv } = await import("./valkey-cluster.mjs");
    const cluster = await startValkeyCluster({ primaries: 3, replicasPerPrimary: 0 });
    const { REDIS_URL: url, ...env } = gatewayClusterEnv(cluster);
    t = { url, cluster, env, stop: () => cluster.stop() };
  } else {
    const { startValkeySentinel } = await import("./valkey-sentinel.mjs");
    const sentinel = await startValkeySentinel({ replicas: 0, sentinels: 1 });
    t = {
      url: sentinel.primary.url,
      sentinel,
      env: {
        GATEWAY_REDIS__TOPOLOGY: "sentinel",
        GATEWAY_REDIS__NODES: sentinel.sentinels.map((s) => s.url).join(","),
        GATEWAY_REDIS__SENTINEL_SERVICE: sentinel.masterName,
      },
      stop: () => sentinel.stop(),
    };
  }
  topologies.set(t.url, { topology, env: t.env });
  return {
    ...t,
    topology,
    running: () => true,
    output: () => "",
    async stop() {
      topologies.delete(t.url);
      await t.stop();
    },
    kill: unsupported("kill"),
    pause: unsupported("pause"),
    // What after() hooks call to clean up after a pause: nothing was paused.
    resume: () => {},
    restart: unsupported("restart"),
  };
}

/**
 * Starts valkey-server on 127.0.0.1:`port` (a free port unless given), with no RDB/AOF, and waits until it
 * answers PING. Resolves to {url, port, proc, running(), stop(), kill(), pause(), resume(), restart(), output()}:
 * stop() = SIGTERM, kill() = SIGKILL (a crash), pause()/resume() = SIGSTOP/SIGCONT (a frozen server: connections
 * stay open but nothing answers), restart() starts it again on the same port.
 */
export async function startValkeyServer({ port, timeoutMs = 10000 } = {}) {
  const bin = valkeyServerPath();
  port = port ?? (await freePort());
  const url = `redis://127.0.0.1:${port}`;
  let proc = null;
  const launch = async () => {
    const args = [
      "--port", String(port),
      "--bind", "127.0.0.1",
      "--save", "",
      "--appendonly", "no",
      "--protected-mode", "no",
      "--daemonize", "no",
      "--loglevel", "notice",
      "--databases", "1",
      // A killed server's port can linger in TIME_WAIT for clients; the server itself binds with SO_REUSEADDR.
    ];
    proc = await startProcess(bin, args, {
      ready: /Ready to accept connections/,
      timeoutMs,
      name: `valkey:${port}`,
    });
    await waitPing(url, timeoutMs);
  };
  await launch();
  return {
    url,
    port,
    topology: "single",
    get proc() {
      return proc;
    },
    running: () => Boolean(proc && !proc.exited),
    output: () => (proc ? proc.output.join("") : ""),
    stop: () => stopProcess(proc),
    kill: () => stopProcess(proc, { signal: "SIGKILL" }),
    pause: () => proc.child.kill("SIGSTOP"),
    resume: () => proc.child.kill("SIGCONT"),
    async restart() {
      if (proc && !proc.exited) {
        proc.child.kill("SIGCONT");
        await stopProcess(proc);
      }
      await launch();
    },
  };
}

/** Resolves once `url` answers PING (retrying), or rejects after `timeoutMs`. */
export async function waitPing(url, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    const c = redisClient(url, { node: true, retryStrategy: () => null, connectTimeout: 500 });
    try {
      if ((await c.ping()) === "PONG") return;
    } catch (err) {
      last = err;
    } finally {
      c.disconnect();
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url} did not answer PING within ${timeoutMs} ms: ${last?.message ?? "?"}`);
}

const clients = new Set();

/**
 * An ioredis client for `url`: a Cluster client when `url` is a started Cluster's seed, unless `node: true`
 * asks for that one node. Connection errors are kept in `client.errors` (never thrown as unhandled
 * `error` events); commands fail after one retry instead of queueing forever while the server is down.
 * closeAllRedis() disconnects every client made here.
 */
export function redisClient(url, { node = false, ...opts } = {}) {
  const options = {
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    retryStrategy: (times) => Math.min(50 * times, 500),
    ...opts,
  };
  const c =
    !node && isClusterSeed(url)
      ? new Cluster([url], { redisOptions: options, clusterRetryStrategy: options.retryStrategy })
      : new Redis(url, options);
  c.errors = [];
  c.on("error", (err) => {
    c.errors.push(err.message);
    if (c.errors.length > 50) c.errors.shift();
  });
  c.on("end", () => clients.delete(c));
  clients.add(c);
  return c;
}

/** Disconnects every client made by redisClient(). */
export function closeAllRedis() {
  for (const c of clients) c.disconnect();
  clients.clear();
}

/** Channel name of a room (or of the whole namespace when `room` is undefined) as the adapter spells it. */
export function broadcastChannel(room, { prefix = "socket.io", nsp = "/" } = {}) {
  return room === undefined ? `${prefix}#${nsp}#` : `${prefix}#${nsp}#${room}#`;
}

/** PUBSUB CHANNELS `pattern` → sorted list of channel names with at least one (non-pattern) subscriber. */
export async function pubsubChannels(client, pattern = "socket.io#/#*") {
  const lists = await Promise.all(nodesOf(client).map((n) => n.pubsub("CHANNELS", pattern)));
  return [...new Set(lists.flat().map(String))].filter((c) => !isSentinels(c)).sort();
}

/** The channel sentinels talk on through the primary they watch (not the gateways' business). */
const isSentinels = (channel) => channel === "__sentinel__:hello";

/** The nodes a Pub/Sub or connection question must be asked of: every primary of a Cluster, else the node. */
export function nodesOf(client) {
  return client instanceof Cluster ? client.nodes("master") : [client];
}

/** KEYS `pattern` over every node (a Cluster's primaries each hold their slots' keys), sorted. */
export async function allKeys(client, pattern) {
  const lists = await Promise.all(nodesOf(client).map((n) => n.keys(pattern)));
  return lists.flat().map(String).sort();
}

/** FLUSHALL on every node. */
export async function flushAll(client) {
  await Promise.all(nodesOf(client).map((n) => n.flushall()));
}

/** PUBSUB NUMSUB for each channel → {channel: count}. */
export async function pubsubNumsub(client, channels) {
  if (channels.length === 0) return {};
  const out = Object.fromEntries(channels.map((c) => [c, 0]));
  for (const flat of await Promise.all(nodesOf(client).map((n) => n.pubsub("NUMSUB", ...channels)))) {
    for (let i = 0; i < flat.length; i += 2) out[String(flat[i])] += Number(flat[i + 1]);
  }
  return out;
}

/** PUBSUB NUMPAT → number of pattern subscriptions on the server (all clients). */
export async function pubsubNumpat(client) {
  const counts = await Promise.all(nodesOf(client).map((n) => n.pubsub("NUMPAT")));
  return counts.reduce((sum, n) => sum + Number(n), 0);
}

/**
 * Polls `fn` every `everyMs` until it returns a truthy value (resolved with it) or `ms` pass; then rejects
 * with `what` and the last value/error seen.
 */
export async function until(fn, { ms = 5000, everyMs = 50, what = "condition" } = {}) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) {
      const shown = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`${what}: not met within ${ms} ms (last: ${shown?.slice?.(0, 500)})`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * CLIENT LIST, parsed: one {id, addr, name, cmd, sub, psub, ssub, ...} per connection (numbers as numbers), on
 * every primary, without the sentinels' connections.
 * `sub`/`psub` tell which connections SUBSCRIBE or PSUBSCRIBE (e.g. a gateway's vs a Node adapter's).
 */
export async function clientList(client) {
  const texts = await Promise.all(nodesOf(client).map((n) => n.client("LIST")));
  const all = texts
    .map(String)
    .join("\n")
    .split("\n")
    .filter((l) => l.trim())
    .map((line) => {
      const o = {};
      for (const kv of line.trim().split(" ")) {
        const i = kv.indexOf("=");
        if (i <= 0) continue;
        const k = kv.slice(0, i);
        const v = kv.slice(i + 1);
        o[k] = /^-?\d+$/.test(v) ? Number(v) : v;
      }
      return o;
    });
  // Sentinels' own connections to the primary they watch are not what a test counts.
  return all.filter((c) => !String(c.name ?? "").startsWith("sentinel-"));
}
