// Valkey for the relay tests: a real `valkey-server` (from $VALKEY_SERVER, which scripts/test.sh sets to
// .cache/bin/valkey-server) on a free 127.0.0.1 port, without persistence, that can be stopped, killed
// and restarted on the same port; plus small ioredis helpers (clients, PUBSUB queries).
import { existsSync } from "node:fs";
import { Redis } from "ioredis";
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
 * Starts valkey-server on 127.0.0.1:`port` (a free port unless given), with no RDB/AOF, and waits until it
 * answers PING. Resolves to {url, port, proc, running(), stop(), kill(), pause(), resume(), restart(), output()}:
 * stop() = SIGTERM, kill() = SIGKILL (a crash), pause()/resume() = SIGSTOP/SIGCONT (a frozen server: connections
 * stay open but nothing answers), restart() starts it again on the same port.
 */
export async function startValkey({ port, timeoutMs = 10000 } = {}) {
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
    const c = redisClient(url, { retryStrategy: () => null, connectTimeout: 500 });
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
 * An ioredis client for `url`. Connection errors are kept in `client.errors` (never thrown as unhandled
 * `error` events); commands fail after one retry instead of queueing forever while the server is down.
 * closeAllRedis() disconnects every client made here.
 */
export function redisClient(url, opts = {}) {
  const c = new Redis(url, {
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    retryStrategy: (times) => Math.min(50 * times, 500),
    ...opts,
  });
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
  const list = await client.pubsub("CHANNELS", pattern);
  return list.map(String).sort();
}

/** PUBSUB NUMSUB for each channel → {channel: count}. */
export async function pubsubNumsub(client, channels) {
  if (channels.length === 0) return {};
  const flat = await client.pubsub("NUMSUB", ...channels);
  const out = {};
  for (let i = 0; i < flat.length; i += 2) out[String(flat[i])] = Number(flat[i + 1]);
  return out;
}

/** PUBSUB NUMPAT → number of pattern subscriptions on the server (all clients). */
export async function pubsubNumpat(client) {
  return Number(await client.pubsub("NUMPAT"));
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
 * CLIENT LIST, parsed: one {id, addr, name, cmd, sub, psub, ssub, ...} per connection (numbers as numbers).
 * `sub`/`psub` tell which connections SUBSCRIBE or PSUBSCRIBE (e.g. a gateway's vs a Node adapter's).
 */
export async function clientList(client) {
  const text = String(await client.client("LIST"));
  return text
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
}
