// p50/p90/p99 of GET /api/realtime/memberships (the gateway calls it on every connect) for a user in
// 100 channels and 50 direct conversations, against `next start` of this app's production build,
// beside a baseline run interleaved with it on the same server: better-auth's own
// GET /api/auth/get-session for the same cookie (the session lookup every authenticated route
// pays; the memberships route is that plus three indexed queries).
//
//   npm run build && npm run bench:memberships          (from examples/nextjs)
//   BENCH_REQUESTS=4000 BENCH_CONCURRENCY=4 npm run bench:memberships
//
// It starts its own `next start` on a free port with a fresh SQLite file (no Valkey needed: the
// benchmark's data is written to the database directly), and stops it at the end.
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";

const appDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const REQUESTS = Number(process.env.BENCH_REQUESTS || 2000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY || 1);
const WARMUP = 300;
const CHANNELS = 100;
const CONVERSATIONS = 50;

if (!fs.existsSync(path.join(appDir, ".next/BUILD_ID"))) {
  console.error("no production build: run `npm run build` (or bash scripts/nextjs.sh build) first");
  process.exit(1);
}

const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "memberships-bench-"));
const dbFile = path.join(tmp, "chat.sqlite");
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const server = spawn(process.execPath, [path.join(appDir, "node_modules/next/dist/bin/next"), "start", "-p", String(port), "-H", "127.0.0.1"], {
  cwd: appDir,
  env: { ...process.env, NODE_ENV: "production", NEXT_TELEMETRY_DISABLED: "1", DATABASE_URL: `file:${dbFile}`, REDIS_URL: "redis://127.0.0.1:9", BETTER_AUTH_SECRET: "memberships-bench-secret-0123456789abcdef", BETTER_AUTH_URL: base, AUTH_RATE_LIMIT: "off" },
  stdio: ["ignore", "ignore", "inherit"],
});
const stop = () => {
  server.kill("SIGTERM");
  fs.rmSync(tmp, { recursive: true, force: true });
};
process.on("exit", stop);

async function until(fn, ms = 60000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      if (await fn()) return;
    } catch {}
    if (Date.now() > deadline) throw new Error("next start did not come up");
    await new Promise((r) => setTimeout(r, 200));
  }
}
await until(async () => (await fetch(`${base}/api/realtime/memberships`)).status === 401);

// One user through the real sign-up (a real session cookie), the rest written directly.
const signUp = await fetch(`${base}/api/auth/sign-up/email`, {
  method: "POST",
  headers: { "content-type": "application/json", origin: base },
  body: JSON.stringify({ name: "Bench", email: "bench@example.com", password: "bench-password-123" }),
});
if (signUp.status !== 200) throw new Error(`sign-up: ${signUp.status} ${await signUp.text()}`);
const cookie = signUp.headers.getSetCookie().map((c) => c.split(";")[0]).join("; ");
const me = (await signUp.json()).user.id;

const db = new Database(dbFile);
const now = new Date().toISOString();
db.transaction(() => {
  const addUser = db.prepare('INSERT INTO "user" (id, name, email, "emailVerified", "createdAt", "updatedAt") VALUES (?, ?, ?, 0, ?, ?)');
  const addChannel = db.prepare("INSERT INTO channel (id, workspace_id, name, created_by, created_at) VALUES (?, 'acme', ?, ?, ?)");
  const addMember = db.prepare("INSERT INTO channel_member (channel_id, user_id, added_at) VALUES (?, ?, ?)");
  const addConv = db.prepare("INSERT INTO conversation (id, workspace_id, created_at) VALUES (?, 'acme', ?)");
  const addPart = db.prepare("INSERT INTO conversation_participant (conversation_id, user_id) VALUES (?, ?)");
  // Other members too, so the indexes have something to skip: 200 users, each in 20 channels.
  const others = Array.from({ length: 200 }, (_, i) => {
    const id = randomUUID();
    addUser.run(id, `User ${i}`, `user${i}@example.com`, now, now);
    return id;
  });
  const channels = [];
  for (let i = 0; i < 400; i++) {
    const id = randomUUID();
    addChannel.run(id, `channel-${i}`, me, now);
    channels.push(id);
  }
  for (let i = 0; i < CHANNELS - 2; i++) addMember.run(channels[i], me, now); // + general, random = 100
  others.forEach((u, i) => {
    for (let j = 0; j < 20; j++) addMember.run(channels[(i * 7 + j * 13) % channels.length], u, now);
  });
  for (let i = 0; i < CONVERSATIONS; i++) {
    const id = randomUUID();
    addConv.run(id, now);
    addPart.run(id, me);
    addPart.run(id, others[i]);
  }
})();
db.close();

const check = await (await fetch(`${base}/api/realtime/memberships`, { headers: { cookie } })).json();
if (check.channels.length !== CHANNELS || check.conversations.length !== CONVERSATIONS) {
  throw new Error(`seed: ${check.channels.length} channels, ${check.conversations.length} conversations`);
}

const targets = {
  memberships: `${base}/api/realtime/memberships`,
  "get-session (baseline)": `${base}/api/auth/get-session?disableCookieCache=true&disableRefresh=true`,
};

async function once(url) {
  const t0 = process.hrtime.bigint();
  const r = await fetch(url, { headers: { cookie } });
  await r.arrayBuffer();
  if (r.status !== 200) throw new Error(`${url}: ${r.status}`);
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

// Interleaved rounds: each round runs a batch of each target, so both see the same machine load.
const samples = Object.fromEntries(Object.keys(targets).map((k) => [k, []]));
for (const url of Object.values(targets)) for (let i = 0; i < WARMUP; i++) await once(url);
const ROUNDS = 10;
const t0 = Date.now();
for (let r = 0; r < ROUNDS; r++) {
  for (const [name, url] of Object.entries(targets)) {
    const per = Math.ceil(REQUESTS / ROUNDS / CONCURRENCY);
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        for (let i = 0; i < per; i++) samples[name].push(await once(url));
      }),
    );
  }
}
const wall = (Date.now() - t0) / 1000;

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const rows = Object.entries(samples).map(([name, xs]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { name, n: s.length, p50: pct(s, 50), p90: pct(s, 90), p99: pct(s, 99), mean: s.reduce((a, b) => a + b, 0) / s.length };
});
const [m, b] = rows;
console.log(`memberships route, user in ${CHANNELS} channels and ${CONVERSATIONS} DMs; next start on 127.0.0.1, SQLite, concurrency ${CONCURRENCY}, node ${process.version}, ${os.cpus().length} cores, ${wall.toFixed(1)} s`);
console.log("| route | requests | p50 ms | p90 ms | p99 ms | mean ms |");
console.log("|---|---|---|---|---|---|");
for (const r of rows) console.log(`| ${r.name} | ${r.n} | ${r.p50.toFixed(2)} | ${r.p90.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.mean.toFixed(2)} |`);
console.log(`ratio memberships / get-session: p50 ${(m.p50 / b.p50).toFixed(2)}×, p99 ${(m.p99 / b.p99).toFixed(2)}×`);
console.log(`answer size: ${JSON.stringify(check).length} bytes`);
process.exit(0);
