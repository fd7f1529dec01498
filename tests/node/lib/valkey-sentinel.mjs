// A real Valkey Sentinel setup for the relay tests: a primary, replicas (--replicaof) and sentinels
// (valkey-server <conf> --sentinel) on free 127.0.0.1 ports, each in its own temp dir; killPrimary() crashes the
// primary and waits for the sentinels' failover, with a down-after of 1 s so that takes seconds, not 30.
import { writeFileSync } from "node:fs";
import path from "node:path";
import { dataNodeArgs, freePorts, startValkeyNode, startAll, fields } from "./valkey-cluster.mjs";
import { redisClient, until } from "./valkey.mjs";

/**
 * Starts a primary with `replicas` replicas and `sentinels` sentinels monitoring it as `masterName` (temp dirs
 * under `dir`, default the OS temp dir), and waits until every sentinel knows the primary, its replicas and the
 * other sentinels. Resolves to {primary, replicas, sentinels, masterName, currentPrimary(), killPrimary(), stop()}:
 * primary/replicas are the data nodes as started ({port, url, proc, ...}), sentinels {port, url, proc, ...}.
 */
export async function startValkeySentinel({ replicas = 1, sentinels = 3, masterName = "mymaster", dir } = {}) {
  const started = [];
  const clients = new Map();
  const client = (node) => {
    if (!clients.has(node)) clients.set(node, redisClient(node.url, { node: true }));
    return clients.get(node);
  };
  const stop = async () => {
    for (const c of clients.values()) c.disconnect();
    clients.clear();
    await Promise.all(started.map((n) => n.stop()));
  };
  // Two sentinels must agree the primary is down; a lone sentinel (quorum 2 could never be met) decides alone.
  const quorum = Math.min(2, sentinels);
  const sentinelGet = async (s) => {
    const [, port] = await client(s).call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", masterName);
    return Number(port);
  };

  let primary, replicaNodes, sentinelNodes;
  try {
    const [primaryPort, ...replicaPorts] = await freePorts(1 + replicas);
    primary = await startValkeyNode({ port: primaryPort, dir, args: dataNodeArgs(primaryPort), name: `valkey-primary:${primaryPort}` });
    started.push(primary);
    replicaNodes = await startAll(
      replicaPorts.map((port) => () =>
        startValkeyNode({
          port,
          dir,
          args: dataNodeArgs(port, () => ["--replicaof", "127.0.0.1", String(primaryPort)]),
          name: `valkey-replica:${port}`,
        }),
      ),
    );
    started.push(...replicaNodes);
    // Synced first: a sentinel learns the replicas from the primary's INFO, which it asks at once and then
    // only every 10 s.
    await until(
      async () => {
        for (const r of replicaNodes) {
          if (!String(await client(r).info("replication")).includes("master_link_status:up")) throw new Error(`replica :${r.port} not synced`);
        }
        return true;
      },
      { ms: 10000, everyMs: 100, what: "replicas synced with the primary" },
    );

    sentinelNodes = await startAll(
      (await freePorts(sentinels)).map((port) => () =>
        startValkeyNode({
          port,
          dir,
          name: `valkey-sentinel:${port}`,
          // A sentinel logs no "Ready to accept connections"; it listens before it logs this.
          ready: /\+monitor master/,
          // Sentinel rewrites its config file (it records what it learns), so it lives in the node's own dir.
          args: (nodeDir) => {
            const conf = path.join(nodeDir, "sentinel.conf");
            writeFileSync(
              conf,
              [
                `port ${port}`,
                "bind 127.0.0.1",
                `dir ${nodeDir}`,
                `sentinel monitor ${masterName} 127.0.0.1 ${primaryPort} ${quorum}`,
                `sentinel down-after-milliseconds ${masterName} 1000`,
                `sentinel failover-timeout ${masterName} 5000`,
                "",
              ].join("\n"),
            );
            return [conf, "--sentinel"];
          },
        }),
      ),
    );
    started.push(...sentinelNodes);
    // Sentinels find each other through hello messages on the primary, sent every 2 s.
    await until(
      async () => {
        for (const s of sentinelNodes) {
          const known = (await client(s).call("SENTINEL", "REPLICAS", masterName)).map(fields);
          const synced = known.filter((r) => !/s_down|disconnected/.test(r.flags) && r["master-link-status"] === "ok");
          const others = await client(s).call("SENTINEL", "SENTINELS", masterName);
          if ((await sentinelGet(s)) !== primaryPort || synced.length < replicas || others.length < sentinels - 1) {
            throw new Error(`sentinel :${s.port} knows ${synced.length}/${replicas} replicas, ${others.length}/${sentinels - 1} other sentinels`);
          }
        }
        return true;
      },
      { ms: 15000, everyMs: 200, what: "every sentinel knows the primary, its replicas and the other sentinels" },
    );
  } catch (err) {
    await stop();
    throw err;
  }

  const dataNodes = [primary, ...replicaNodes];
  const currentPrimary = async () => {
    const port = await sentinelGet(sentinelNodes.find((s) => s.alive()));
    const node = dataNodes.find((n) => n.port === port);
    if (!node) throw new Error(`sentinels name :${port} as primary, not one of the data nodes`);
    return node;
  };

  return {
    primary,
    replicas: replicaNodes,
    sentinels: sentinelNodes,
    masterName,
    currentPrimary,
    stop,
    /**
     * SIGKILLs the current primary and resolves to the node every sentinel names instead, once it reports the
     * master role (writable).
     */
    async killPrimary({ ms = 30000 } = {}) {
      const old = await currentPrimary();
      clients.get(old)?.disconnect();
      clients.delete(old);
      await old.kill();
      return until(
        async () => {
          const ports = await Promise.all(sentinelNodes.map(sentinelGet));
          const next = dataNodes.find((n) => n.port === ports[0]);
          if (new Set(ports).size > 1 || next === old || !next) throw new Error(`sentinels name ${ports.map((p) => `:${p}`)}`);
          const [role] = await client(next).role();
          if (role !== "master") throw new Error(`:${next.port} is named primary but its role is ${role}`);
          return next;
        },
        { ms, everyMs: 200, what: `sentinels promote a replica after :${old.port} was killed` },
      );
    },
  };
}
