// The soak (issue 13, RELIABILITY.md): ≥ 20,000 recovering sockets on two gateways for 30
// minutes with traffic (the emitter and the clients' own sends), churn (sockets dropped and
// recovered, sockets closed and started again as new tabs) and membership changes (users added
// to and removed from channels through the app's database and the emitter's socketsJoin /
// socketsLeave). Every 30 s it samples each gateway's RSS, open files, tokio tasks, sessions,
// rooms and Valkey subscriptions, and Valkey's keys by kind, memory and Pub/Sub channels. At the
// end: the seal and the checker, then every socket closes, and after the recovery window the
// same numbers again, against the baseline taken before any socket connected.
//
//   node tests/node/chaos/soak.mjs [--sockets 20000] [--minutes 30] [--out DIR]
//
// Sockets connect to the gateways directly (a socket that fails moves to the other one, as a
// load balancer would do): nginx would need two connections per socket, and this soak is about
// the gateways' and Valkey's resources.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Emitter } from "@socket.io/redis-emitter";
import { Redis } from "ioredis";
import { setMembership } from "../lib/app.mjs";
import { scrape, sum } from "../lib/ops.mjs";
import { repoRoot } from "../lib/procs.mjs";
import { check } from "./check.mjs";
import { startFleet } from "./fleet.mjs";
import { startPublisher } from "./publisher.mjs";
import { seal } from "./run.mjs";
import { ensureUsers, procUsage, startChaosStack } from "./stack.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const FANOUT = Array.from({ length: 100 }, (_, i) => `channel:f${i}`);
const CHURN_ROOMS = Array.from({ length: 10 }, (_, i) => `channel:z${i}`);

/** Valkey's keys by kind, memory and Pub/Sub state. */
async function valkeyState(redis) {
  const kinds = {};
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "COUNT", 2000);
    cursor = next;
    for (const k of keys) {
      // socket.io-csr-session#<pid> → "csr-session"; socket.io-presence:user:<id> → "presence:user"
      const kind = k.replace(/^socket\.io-?/, "").replace(/#.*$/, "").replace(/^(presence:[a-z]+).*$/, "$1").replace(/^P:([a-z]+).*$/, "P:$1");
      kinds[kind] = (kinds[kind] ?? 0) + 1;
    }
  } while (cursor !== "0");
  const info = await redis.info("memory");
  const used = Number(/used_memory:(\d+)/.exec(info)?.[1] ?? NaN);
  const channels = (await redis.pubsub("CHANNELS", "*")).length;
  const numpat = await redis.pubsub("NUMPAT");
  const log = await redis.xlen("socket.io-csr-log#{/}#").catch(() => 0);
  return { keys: await redis.dbsize(), kinds, usedMemoryMiB: +(used / 1048576).toFixed(1), channels, numpat, logEntries: log };
}

/** A process's TCP connections by what they reach: Valkey, the app, or anything else (clients). */
function connectionsOf(pid, valkeyPort, appPort) {
  const out = { valkey: 0, app: 0, other: 0 };
  let lines = [];
  try {
    lines = execFileSync("ss", ["-Htnp", "state", "established"], { encoding: "utf8" }).split("\n");
  } catch {
    return null;
  }
  for (const line of lines) {
    if (!line.includes(`pid=${pid},`)) continue;
    const peer = line.trim().split(/\s+/)[3] ?? "";
    const port = Number(peer.slice(peer.lastIndexOf(":") + 1));
    if (port === valkeyPort) out.valkey += 1;
    else if (port === appPort) out.app += 1;
    else out.other += 1;
  }
  return out;
}

async function gatewayState(g, ports) {
  const u = g.usage() ?? {};
  let m = null;
  try {
    m = await scrape(g.url);
  } catch {}
  const get = (n) => (m ? sum(m, n) : null);
  return {
    rssMiB: u.rssKiB ? +(u.rssKiB / 1024).toFixed(1) : null,
    fds: u.fds ?? null,
    tasks: get("socket_gateway_tokio_tasks"),
    sessions: get("socket_gateway_connections"),
    rooms: get("socket_gateway_rooms"),
    subscriptions: get("socket_gateway_valkey_subscriptions"),
    // Open files beyond the sockets: the Valkey pool grows with load (up to its size) and keeps
    // its connections; the app client keeps idle connections for 30 s.
    connections: g.proc?.pid ? connectionsOf(g.proc.pid, ports.valkey, ports.app) : null,
  };
}

async function sample(stack, redis, fleet, t0) {
  const gws = [];
  const ports = { valkey: Number(new URL(stack.valkey.url).port), app: Number(new URL(stack.app.url).port) };
  for (const g of stack.gws) gws.push(await gatewayState(g, ports));
  const s = fleet ? await fleet.stats() : null;
  return {
    t: Math.round((Date.now() - t0) / 1000),
    connected: s?.connected ?? 0,
    delivered: s?.chaos.checked ?? null,
    gws,
    valkey: { ...(await valkeyState(redis)), rssMiB: +((procUsage(stack.valkey.proc.pid)?.rssKiB ?? 0) / 1024).toFixed(1) },
  };
}

export async function runSoak({ sockets = 20000, minutes = 30, dir, log = console.error }) {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const users = ensureUsers(sockets);
  const userLines = fs.readFileSync(users.usersFile, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  const stack = await startChaosStack({ dir, users, gateways: 2 });
  const redis = new Redis(stack.valkey.url, { maxRetriesPerRequest: 2 });
  redis.on("error", () => {});
  const emitter = new Emitter(redis);
  const samples = [];
  const samplesFile = path.join(dir, "samples.jsonl");
  const t0 = Date.now();
  const record = async (phase, fleet) => {
    const x = { phase, ...(await sample(stack, redis, fleet, t0)) };
    samples.push(x);
    fs.appendFileSync(samplesFile, `${JSON.stringify(x)}\n`);
    log(`[${x.t}s ${phase}] connected ${x.connected}; gw RSS ${x.gws.map((g) => g.rssMiB).join("/")} MiB, fds ${x.gws.map((g) => g.fds).join("/")}, tasks ${x.gws.map((g) => g.tasks).join("/")}; valkey keys ${x.valkey.keys} ${x.valkey.usedMemoryMiB} MiB, channels ${x.valkey.channels}`);
    return x;
  };
  let fleet = null;
  let publisher = null;
  let zPublisher = null;
  const timers = [];
  try {
    await sleep(3000);
    const baseline = await record("before", null);

    fleet = await startFleet({
      sockets,
      usersFile: users.usersFile,
      targets: stack.gws.map((g) => g.addr),
      recordDir: dir,
      inflight: 100000,
      sendEveryS: 20,
      sendersOneIn: 100,
    });
    log(`soak: connecting ${sockets} sockets`);
    await fleet.connect(0, sockets, 60);
    for (;;) {
      const s = await fleet.stats();
      if (s.connected === sockets) break;
      if (Date.now() - t0 > 15 * 60000) throw new Error(`only ${s.connected}/${sockets} connected after 15 min`);
      await sleep(2000);
    }
    const loadStart = Date.now();
    log(`soak: all ${sockets} connected after ${((loadStart - t0) / 1000).toFixed(0)} s; load for ${minutes} min`);
    publisher = await startPublisher({ url: stack.valkey.url, ratePerS: 10, rooms: FANOUT, recordFile: path.join(dir, "published-0.txt") });
    zPublisher = await startPublisher({ url: stack.valkey.url, ratePerS: 2, rooms: CHURN_ROOMS, recordFile: path.join(dir, "published-1.txt"), id: 1 });

    // ---- churn
    const pick = (n, pred = () => true) => {
      const out = new Set();
      for (let tries = 0; out.size < n && tries < n * 10; tries++) {
        const i = Math.floor(Math.random() * sockets);
        if (pred(i)) out.add(i);
      }
      return [...out];
    };
    const away = new Set(); // slots that left and start again shortly
    const counts = { dropped: 0, left: 0, restarted: 0, joined: 0, removed: 0 };
    const every = (ms, fn) => {
      let running = false;
      timers.push(
        setInterval(async () => {
          if (running) return;
          running = true;
          try {
            await fn();
          } catch (err) {
            log(`soak: churn step failed: ${err.message}`);
          } finally {
            running = false;
          }
        }, ms),
      );
    };
    // Network failures: 1 % of the sockets every 10 s, recovered.
    every(10000, async () => {
      const slots = pick(sockets / 100, (i) => !away.has(i));
      counts.dropped += slots.length;
      await fleet.drop(slots);
    });
    // Closed tabs: 0.5 % every 20 s, opened again 5 s later (new sessions).
    every(20000, async () => {
      const slots = pick(sockets / 200, (i) => !away.has(i));
      for (const i of slots) away.add(i);
      counts.left += slots.length;
      await fleet.leave(slots);
      await sleep(5000);
      await fleet.start(slots);
      counts.restarted += slots.length;
      for (const i of slots) away.delete(i);
    });
    // Membership changes: 20 users join a churn channel, those who joined 60 s ago leave it.
    const joined = [];
    every(15000, async () => {
      const now = Date.now();
      for (const i of pick(20)) {
        const u = userLines[i];
        const room = CHURN_ROOMS[i % CHURN_ROOMS.length];
        const id = room.slice("channel:".length);
        await setMembership(stack.app.url, { op: "add", kind: "channel", id, userId: u.userId, workspaceId: "bw0" });
        emitter.in(`user:${u.userId}`).socketsJoin(room);
        joined.push({ u, id, room, at: now });
        counts.joined += 1;
      }
      while (joined.length && now - joined[0].at > 60000) {
        const j = joined.shift();
        await setMembership(stack.app.url, { op: "remove", kind: "channel", id: j.id, userId: j.u.userId });
        emitter.in(`user:${j.u.userId}`).socketsLeave(j.room);
        counts.removed += 1;
      }
    });
    // Samples every 30 s.
    every(30000, async () => {
      await record("load", fleet);
    });
    await sleep(minutes * 60000);
    for (const t of timers.splice(0)) clearInterval(t);
    await sleep(6000); // a churn step in progress finishes
    log(`soak: load over (${JSON.stringify(counts)}); sealing`);
    await record("load-end", fleet);

    // ---- seal and check
    const sealAt = await seal(fleet, [publisher, zPublisher]);
    await fleet.flush();
    const phases = [
      { name: "fill", start: t0, end: loadStart },
      { name: "load", start: loadStart, end: sealAt },
      { name: "seal", start: sealAt, end: Date.now() + 1 },
    ];
    // ---- every socket closes; after the recovery window, what is left
    log("soak: closing every socket");
    await fleet.leave();
    await sleep(5000);
    await fleet.stop();
    fleet = null;
    await publisher.stop();
    await zPublisher.stop();
    publisher = zPublisher = null;
    await record("closed", null);
    log("soak: waiting out the recovery window (130 s)");
    await sleep(130000);
    const after = await record("after", null);

    log("soak: checking the records");
    const result = await check({
      clientFiles: fs.readdirSync(dir).filter((f) => /^records-\d+\.txt$/.test(f)).map((f) => path.join(dir, f)),
      publisherFiles: ["published-0.txt", "published-1.txt"].map((f) => path.join(dir, f)),
      phases,
      sealed: true,
      churnRoomPrefix: "channel:z",
    });
    const panics = stack.gws.reduce((n, g) => n + g.panics().length, 0);
    const summary = { sockets, minutes, counts, baseline, after, panics, check: { ok: result.ok, total: result.total, phases: result.phases } };
    fs.writeFileSync(path.join(dir, "soak.json"), JSON.stringify(summary, null, 2));
    fs.writeFileSync(path.join(dir, "soak.md"), report(summary, samples));
    return { summary, samples };
  } finally {
    for (const t of timers) clearInterval(t);
    await fleet?.stop().catch(() => {});
    await publisher?.stop().catch(() => {});
    await zPublisher?.stop().catch(() => {});
    redis.disconnect();
    await stack.stop();
  }
}

/** The curves as a table (one row every ~3 minutes) and the before/after comparison. */
export function report(summary, samples) {
  const load = samples.filter((s) => s.phase !== "before" && s.phase !== "after" && s.phase !== "closed");
  const step = Math.max(1, Math.round(load.length / 12));
  const rows = [samples[0], ...load.filter((_, i) => i % step === 0 || i === load.length - 1), ...samples.filter((s) => s.phase === "closed" || s.phase === "after")];
  const g = (s, k) => s.gws.map((x) => x[k] ?? "-").join(" / ");
  const lines = rows.map(
    (s) =>
      `| ${s.t} | ${s.phase} | ${s.connected} | ${g(s, "rssMiB")} | ${g(s, "fds")} | ${g(s, "tasks")} | ${g(s, "rooms")} | ${g(s, "subscriptions")} | ${s.valkey.keys} | ${s.valkey.kinds["csr-session"] ?? 0} | ${s.valkey.logEntries} | ${s.valkey.usedMemoryMiB} | ${s.valkey.channels} |`,
  );
  const c = summary.check.total;
  const conns = (s) => s.gws.map((x) => (x.connections ? `${x.connections.valkey}/${x.connections.app}/${x.connections.other}` : "-")).join(" · ");
  const first = samples[0];
  const last = samples[samples.length - 1];
  return `TCP connections (Valkey / app / other) per gateway: before ${conns(first)}; after ${conns(last)}.

| t (s) | phase | sockets | RSS MiB gw0 / gw1 | fds | tokio tasks | rooms | Valkey subscriptions | Valkey keys | kept sessions | log entries | Valkey MiB | Pub/Sub channels |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
${lines.join("\n")}

Churn: ${JSON.stringify(summary.counts)}. Checker: ${c.delivered} deliveries, lost ${c.lost} + ${c.lostEverywhere}, duplicates ${c.duplicates}, reordered ${c.reordered}, leaked ${c.leaked}; panics ${summary.panics}.
`;
}

// ---- CLI
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const argv = process.argv.slice(2);
  const opt = (k, d) => {
    const i = argv.indexOf(k);
    return i >= 0 ? argv[i + 1] : d;
  };
  const { summary, samples } = await runSoak({
    sockets: Number(opt("--sockets", 20000)),
    minutes: Number(opt("--minutes", 30)),
    dir: path.resolve(opt("--out", path.join(repoRoot, "target/soak", new Date().toISOString().replace(/[:.]/g, "-")))),
  });
  process.stdout.write(report(summary, samples));
  process.exit(summary.check.ok && summary.panics === 0 ? 0 : 1);
}
