// Delivery latency across gateways on a Valkey Cluster, build against build in one run. Two gateways (recovery
// on, as by default) on a Cluster of PRIMARIES primaries; alice has a socket on each. SOURCE "chat": bob, on
// the second, sends MESSAGES chat messages to channel:c1 through the app, RATE a second, from bob's emit to each
// of alice's sockets receiving message:new. SOURCE "emitter": the app's emitter publishes them (classic: the
// stock @socket.io/redis-emitter; sharded: the example's sharded emitter), from the publish to the arrival.
// One process, one clock. Prints p50, p90, p99, max and how many took over 20 ms, per source, build and
// Pub/Sub mode, and each build's p90 and p99 against the first build's.
//
// Why: a Cluster node forwards what is PUBLISHed to the other nodes over the cluster bus, and Valkey's outgoing
// bus links run with Nagle's algorithm; a second message right behind the first waits for the other node's
// delayed ACK (~40 ms). The gateways' recorded broadcast is published with Node servers' plain copy.
//
//   cargo build --release -p socket-gateway && node bench/cluster-latency.mjs
//   BASELINE_TARGET_DIR=<target dir of another build> RATE=5,50 PUBSUB=classic,sharded SOURCE=chat,emitter \
//     node bench/cluster-latency.mjs
//
// Also measures Valkey alone (LUA=1, the default): a script PUBLISHing two messages on one node, a subscriber
// on another node, how late each arrives.
import { existsSync } from "node:fs";
import path from "node:path";
import { requireFromTests, startClusterFleet } from "./cluster-fleet.mjs";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const Redis = requireFromTests("ioredis");
const { Emitter } = requireFromTests("@socket.io/redis-emitter");
const { startValkeyCluster } = await import("../tests/node/lib/valkey-cluster.mjs");
const { startFixtureApp, signIn } = await import("../tests/node/lib/app.mjs");
const { connect, emitAck, sleep } = await import("../tests/node/lib/gateway.mjs");
const { loadShardedEmitter } = await import("../tests/node/lib/sharded-emitter.mjs");
const { ShardedEmitter } = await loadShardedEmitter();

const PRIMARIES = Number(process.env.PRIMARIES ?? 3);
const MESSAGES = Number(process.env.MESSAGES ?? 300);
const RATES = (process.env.RATE ?? "5,50").split(",").map(Number);
const PUBSUB = (process.env.PUBSUB ?? "classic,sharded").split(",");
const SOURCES = (process.env.SOURCE ?? "chat,emitter").split(",");
const LUA = process.env.LUA !== "0";
const builds = [["gateway", process.env.CARGO_TARGET_DIR || path.join(root, "target")]];
if (process.env.BASELINE_TARGET_DIR) builds.push(["baseline", process.env.BASELINE_TARGET_DIR]);
if (!existsSync(process.env.VALKEY_SERVER)) throw new Error(`no valkey-server at ${process.env.VALKEY_SERVER}: run bash scripts/setup.sh`);

/** p50, p90, p99, max (ms) and the count over 20 ms of `samples`. */
function summary(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  return { n: s.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: s.at(-1), over20: s.filter((x) => x > 20).length };
}
const fmt = (x) => x.toFixed(2);

/** Valkey alone: two PUBLISHes from one script on node 1, the subscriber on node 2. */
async function valkeyAlone(rate) {
  const cluster = await startValkeyCluster({ primaries: 2, replicasPerPrimary: 0 });
  const [u1, u2] = cluster.seeds;
  const sub = new Redis(u2);
  const pub = new Redis(u1);
  try {
    const sent = new Map();
    const late = { first: [], second: [] };
    sub.on("message", (channel, m) => late[channel].push(performance.now() - sent.get(m)));
    await sub.subscribe("first", "second");
    for (let i = 0; i < MESSAGES; i++) {
      sent.set(String(i), performance.now());
      await pub.eval("redis.call('PUBLISH', 'first', ARGV[1]); redis.call('PUBLISH', 'second', ARGV[1])", 0, String(i));
      await sleep(1000 / rate);
    }
    await sleep(200);
    return { first: summary(late.first), second: summary(late.second) };
  } finally {
    sub.disconnect();
    pub.disconnect();
    await cluster.stop();
  }
}

async function measure(targetDir, source, pubsub, rate, app, cookies) {
  const env = {
    GATEWAY_REDIS__PUBSUB: pubsub,
    GATEWAY_LIMITS__EVENTS_PER_S: "1000",
    GATEWAY_LIMITS__EVENTS_BURST: "1000",
  };
  process.env.CARGO_TARGET_DIR = targetDir;
  const { cluster, gws, stop } = await startClusterFleet({ primaries: PRIMARIES, appUrl: app.url, env });
  let emitterClient;
  try {
    const sent = new Map();
    const samples = [];
    for (const gw of gws) {
      const alice = await connect(gw.url, cookies.alice, { transports: ["websocket"] });
      alice.on("message:new", (m) => {
        const t0 = sent.get(m?.content);
        if (t0 !== undefined) samples.push(performance.now() - t0);
      });
    }
    let send;
    if (source === "chat") {
      const bob = await connect(gws[1].url, cookies.bob, { transports: ["websocket"] });
      await emitAck(bob, "message:send", { channelId: "c1", content: "warm-up" });
      send = (content) => bob.emit("message:send", { channelId: "c1", content });
    } else {
      const nodes = cluster.seeds.map((u) => ({ host: "127.0.0.1", port: Number(new URL(u).port) }));
      emitterClient = new Redis.Cluster(nodes, { redisOptions: { maxRetriesPerRequest: 1 } });
      const emitter = pubsub === "sharded" ? new ShardedEmitter(emitterClient) : new Emitter(emitterClient);
      send = (content) => emitter.to("channel:c1").emit("message:new", { content });
      send("warm-up");
    }
    await sleep(1000);
    for (let i = 0; i < MESSAGES; i++) {
      const content = `lat-${i}`;
      sent.set(content, performance.now());
      send(content);
      await sleep(1000 / rate);
    }
    await sleep(500);
    return { ...summary(samples), expected: MESSAGES * 2 };
  } finally {
    emitterClient?.disconnect();
    await stop();
  }
}

if (LUA) {
  console.log("\nValkey alone: one script PUBLISHes two messages on node 1; a subscriber on node 2 (ms late)\n");
  console.log("| rate | message | n | p50 | p90 | p99 | max | over 20 ms |");
  console.log("|---|---|---|---|---|---|---|---|");
  for (const rate of RATES) {
    const r = await valkeyAlone(rate);
    for (const which of ["first", "second"]) {
      const s = r[which];
      console.log(`| ${rate}/s | ${which} | ${s.n} | ${fmt(s.p50)} | ${fmt(s.p90)} | ${fmt(s.p99)} | ${fmt(s.max)} | ${s.over20} |`);
    }
  }
}

const app = await startFixtureApp();
try {
  const cookies = {};
  for (const name of ["alice", "bob"]) cookies[name] = await signIn(app.url, app.users[name].email, app.users[name].password);
  const rows = [];
  // Builds alternate within each rate and mode, so drift in the machine weighs on both.
  for (const source of SOURCES) {
    for (const rate of RATES) {
      for (const pubsub of PUBSUB) {
        for (const [build, dir] of builds) {
          const r = await measure(dir, source, pubsub, rate, app, cookies);
          rows.push({ source, build, pubsub, rate, ...r });
          console.error(`# ${source} ${build} ${pubsub} ${rate}/s: ${JSON.stringify(r)}`);
        }
      }
    }
  }
  console.log(`\nTo alice's sockets on both gateways, ${PRIMARIES} primaries, recovery on, ${MESSAGES} messages (ms)\n`);
  console.log("| source | rate | Pub/Sub | build | received / expected | p50 | p90 | p99 | max | over 20 ms | p90 vs first build | p99 vs first build |");
  console.log("|---|---|---|---|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    const first = rows.find((b) => b.source === r.source && b.rate === r.rate && b.pubsub === r.pubsub);
    console.log(
      `| ${r.source} | ${r.rate}/s | ${r.pubsub} | ${r.build} | ${r.n} / ${r.expected} | ${fmt(r.p50)} | ${fmt(r.p90)} | ${fmt(r.p99)} | ${fmt(r.max)} | ` +
        `${r.over20} | ${(r.p90 / first.p90).toFixed(2)} | ${(r.p99 / first.p99).toFixed(2)} |`,
    );
  }
} finally {
  await app.stop();
}
