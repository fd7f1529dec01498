// The relay on a Valkey Cluster of 1, 2 and 3 primaries, side by side in one run (issue 16): two gateways
// (release build; recovery on, as by default, and off), SOCKETS sockets in one channel room over both, and the app's
// @socket.io/redis-emitter on an ioredis Cluster client publishing RATE messages/s to that room for SECONDS.
// Prints, per cluster size: what was delivered, Valkey's CPU (all nodes) per publish and per delivery, the
// gateways' CPU per delivery, and the ratio of each to the 1-primary cluster's. Each on classic Pub/Sub (a PUBLISH
// is copied to every node of a Cluster) and on sharded Pub/Sub (redis.pubsub = "sharded", the app publishing
// with the example's sharded emitter: an SPUBLISH goes to its channel's slot's primary only).
//
// With ROOMS (a list), the publishes go round-robin to those rooms (every socket is alice's, who is in all of
// them), and PARTITIONS (recovery.log_partitions, a list; 0 = the gateway's choice, 8 on a Cluster) adds the
// recovery log's partitions as a dimension: the table then says how the busiest primary's share of Valkey's CPU
// moves when the log is split.
//
//   cargo build --release -p socket-gateway && node bench/valkey-topologies.mjs
//   SOCKETS=400 RATE=500 SECONDS=10 PRIMARIES=1,2,3 RECOVERY=on,off PUBSUB=classic,sharded node bench/valkey-topologies.mjs
//   PRIMARIES=3 RECOVERY=on PARTITIONS=1,8 ROOMS=channel:c1,channel:c2,channel:c4,dm:d1,dm:d2,workspace:w1,workspace:w2 \
//     node bench/valkey-topologies.mjs
//
// Needs VALKEY_SERVER (scripts/setup.sh puts valkey-server in .cache/bin; this script finds it there).
import { readFileSync, existsSync } from "node:fs";
import { requireFromTests, startClusterFleet } from "./cluster-fleet.mjs";

const { Cluster } = requireFromTests("ioredis");
const { Emitter } = requireFromTests("@socket.io/redis-emitter");
const { startFixtureApp, signIn } = await import("../tests/node/lib/app.mjs");
const { connect, sleep } = await import("../tests/node/lib/gateway.mjs");
const { loadShardedEmitter } = await import("../tests/node/lib/sharded-emitter.mjs");
const { ShardedEmitter } = await loadShardedEmitter();

const SOCKETS = Number(process.env.SOCKETS ?? 400);
const RATE = Number(process.env.RATE ?? 500);
const SECONDS = Number(process.env.SECONDS ?? 10);
const PRIMARIES = (process.env.PRIMARIES ?? "1,2,3").split(",").map(Number);
const RECOVERY = (process.env.RECOVERY ?? "on,off").split(",");
const PUBSUB = (process.env.PUBSUB ?? "classic,sharded").split(",");
const ROOMS = (process.env.ROOMS ?? "channel:c1").split(",");
const PARTITIONS = (process.env.PARTITIONS ?? "0").split(",").map(Number);
if (!existsSync(process.env.VALKEY_SERVER)) throw new Error(`no valkey-server at ${process.env.VALKEY_SERVER}: run bash scripts/setup.sh`);

const TICK_S = 1 / 100; // USER_HZ
/** CPU seconds (user + system) a process has used. */
function cpu(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) * TICK_S;
}
const cpuOf = (pids) => pids.reduce((sum, pid) => sum + cpu(pid), 0);

async function measure(primaries, recovery, pubsub, partitions, app, cookies) {
  const env = {
    GATEWAY_RECOVERY__ENABLED: String(recovery === "on"),
    GATEWAY_REDIS__PUBSUB: pubsub,
    GATEWAY_RECOVERY__LOG_PARTITIONS: String(partitions),
  };
  const { cluster, gws, stop } = await startClusterFleet({ primaries, appUrl: app.url, env });
  let emitterClient;
  try {
    let delivered = 0;
    const sockets = [];
    for (let i = 0; i < SOCKETS; i++) {
      const s = await connect(gws[i % 2].url, cookies[i % cookies.length]);
      s.on("bench", () => delivered++);
      sockets.push(s);
    }
    emitterClient = new Cluster(cluster.seeds.map((u) => ({ host: "127.0.0.1", port: Number(new URL(u).port) })), {
      redisOptions: { maxRetriesPerRequest: 1 },
    });
    const emitter = pubsub === "sharded" ? new ShardedEmitter(emitterClient) : new Emitter(emitterClient);
    const publish = async (seconds) => {
      const every = 1000 / RATE;
      const t0 = performance.now();
      let sent = 0;
      while (performance.now() - t0 < seconds * 1000) {
        const due = Math.floor((performance.now() - t0) / every);
        for (; sent <= due; sent++) emitter.to(ROOMS[sent % ROOMS.length]).emit("bench", sent);
        await sleep(5);
      }
      return sent;
    };
    await publish(2); // warm-up: connections, subscriptions, the recorder's lease
    await sleep(1000);
    const valkeyPids = cluster.nodes.map((n) => n.proc.child.pid);
    const gwPids = gws.map((g) => g.proc.child.pid);
    const [v0, g0, d0] = [cpuOf(valkeyPids), cpuOf(gwPids), delivered];
    const each0 = valkeyPids.map(cpu);
    const sent = await publish(SECONDS);
    await sleep(1000);
    const [v1, g1, d1] = [cpuOf(valkeyPids), cpuOf(gwPids), delivered];
    const busiest = Math.max(...valkeyPids.map((pid, i) => cpu(pid) - each0[i]));
    const got = d1 - d0;
    return {
      primaries,
      recovery,
      pubsub,
      partitions,
      busiestShare: v1 > v0 ? busiest / (v1 - v0) : 0,
      busiestUsPerPublish: (busiest / sent) * 1e6,
      sent,
      expected: sent * SOCKETS,
      delivered: got,
      valkeyUsPerPublish: ((v1 - v0) / sent) * 1e6,
      valkeyNsPerDelivery: ((v1 - v0) / got) * 1e9,
      gatewayUsPerDelivery: ((g1 - g0) / got) * 1e6,
    };
  } finally {
    emitterClient?.disconnect();
    await stop();
  }
}

const app = await startFixtureApp();
try {
  // Alice and Bob are both in channel c1; alice alone is in every room of the list when there are more.
  const cookies = [];
  for (const name of ROOMS.length > 1 ? ["alice"] : ["alice", "bob"]) {
    cookies.push(await signIn(app.url, app.users[name].email, app.users[name].password));
  }
  const rows = [];
  for (const recovery of RECOVERY) {
    for (const p of PRIMARIES) {
      for (const pubsub of PUBSUB) {
        for (const partitions of PARTITIONS) {
          const r = await measure(p, recovery, pubsub, partitions, app, cookies);
          rows.push(r);
          console.error(`# ${p} primaries, recovery ${recovery}, ${pubsub}, ${partitions} partitions: ${JSON.stringify(r)}`);
        }
      }
    }
  }
  const ratio = (a, b) => (b ? (a / b).toFixed(2) : "-");
  const where = ROOMS.length > 1 ? `${ROOMS.length} rooms in turn` : "one room";
  console.log(`\n${SOCKETS} sockets in ${where} over 2 gateways, ${RATE} publishes/s for ${SECONDS} s\n`);
  console.log(
    "| recovery | primaries | Pub/Sub | log partitions | delivered / expected | Valkey CPU per publish | busiest node's share | its CPU per publish | per delivery | vs 1 primary | vs classic | gateways' CPU per delivery | vs 1 primary | vs classic |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    const same = (b) => b.recovery === r.recovery && b.pubsub === r.pubsub && b.partitions === r.partitions;
    const base = rows.find((b) => same(b) && b.primaries === PRIMARIES[0]);
    const classic = rows.find(
      (b) => b.recovery === r.recovery && b.primaries === r.primaries && b.partitions === r.partitions && b.pubsub === "classic",
    );
    const partitions = r.partitions || (r.recovery === "on" ? "8 (auto)" : "-");
    console.log(
      `| ${r.recovery} | ${r.primaries} | ${r.pubsub} | ${partitions} | ${r.delivered} / ${r.expected} | ${r.valkeyUsPerPublish.toFixed(1)} µs | ` +
        `${(r.busiestShare * 100).toFixed(0)} % | ${r.busiestUsPerPublish.toFixed(1)} µs | ` +
        `${r.valkeyNsPerDelivery.toFixed(0)} ns | ` +
        `${ratio(r.valkeyUsPerPublish, base.valkeyUsPerPublish)} | ${ratio(r.valkeyUsPerPublish, classic?.valkeyUsPerPublish)} | ` +
        `${r.gatewayUsPerDelivery.toFixed(2)} µs | ${ratio(r.gatewayUsPerDelivery, base.gatewayUsPerDelivery)} | ` +
        `${ratio(r.gatewayUsPerDelivery, classic?.gatewayUsPerDelivery)} |`,
    );
  }
} finally {
  await app.stop();
}
