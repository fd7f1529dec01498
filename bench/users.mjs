// Bench-only bulk users for the fixture app (tests/node/fixture-app): creates N users, one
// better-auth session each, and their memberships, straight into the SQLite file the fixture app
// is then started on (DB_FILE), and writes one JSON line per user: {cookie, userId, rooms}.
//
//   node bench/users.mjs create --db FILE --users N --out FILE [--secret S] [--workspaces W]
//   node bench/users.mjs verify --app URL --out FILE [--sample 3]
//
// Users and sessions are made with better-auth's own internal adapter, configured like the
// fixture app (same tables, same secret), and the cookie is signed the way better-auth signs it
// (HMAC-SHA256 of the token, base64), so the fixture app's get-session accepts it like any
// sign-in's. The HTTP sign-up route would hash a password with scrypt for every user (tens of ms
// of CPU each), which is why it is not used for thousands of users; `verify` checks a sample of
// the cookies through the running app's real get-session and memberships routes.
//
// Rooms of user i (10 each, every kind of the contract):
//   user:<id>, workspace:bw<i%W> (W = --workspaces, 10: workspaces of N/10 users, whose presence
//   updates reach them all; W = N puts each user alone in one, to measure a connect without that), channel:f<i%100> (the fan-out rooms of S2),
//   channel:g<(i+100k)%700> for k=0..5 (background channels), dm:p<floor(i/2)>
// Cookies are bearer secrets even here: never print them.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { betterAuth } from "better-auth";
import { getMigrations } from "better-auth/db/migration";

const here = path.dirname(fileURLToPath(import.meta.url));
const { createAppSchema } = await import(path.join(here, "../tests/node/fixture-app/db.mjs"));

// The fixture app's default secret (tests/node/fixture-app/server.mjs); run.sh passes it explicitly.
const DEFAULT_SECRET = "socket-gateway-fixture-secret-0123456789abcdef";
const DEFAULT_WORKSPACES = 10;
const FANOUT_ROOMS = 100;
const BACKGROUND = 700;
const BACKGROUND_PER_USER = 6;

function parseArgs(argv) {
  const out = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith("--")) out[a.slice(2)] = argv[i + 1]?.startsWith("--") ? "true" : argv[++i];
    else out._.push(a);
  }
  return out;
}

export function roomsOf(i, userId, workspaces = DEFAULT_WORKSPACES) {
  const rooms = [`user:${userId}`, `workspace:bw${i % workspaces}`, `channel:f${i % FANOUT_ROOMS}`];
  for (let k = 0; k < BACKGROUND_PER_USER; k++) rooms.push(`channel:g${(i + 100 * k) % BACKGROUND}`);
  rooms.push(`dm:p${Math.floor(i / 2)}`);
  return rooms;
}

function signedCookie(token, secret) {
  const sig = crypto.createHmac("sha256", secret).update(token).digest("base64");
  return `better-auth.session_token=${encodeURIComponent(`${token}.${sig}`)}`;
}

async function create({ db: dbFile, users, out, secret = DEFAULT_SECRET, workspaces = DEFAULT_WORKSPACES }) {
  const n = Number(users);
  const WORKSPACES = Number(workspaces);
  if (!(WORKSPACES >= 1)) throw new Error(`--workspaces ${workspaces}: expected a number >= 1`);
  if (!dbFile || !out || !(n > 0)) throw new Error("create needs --db FILE --users N --out FILE");
  fs.mkdirSync(path.dirname(dbFile), { recursive: true });
  const db = new Database(dbFile);
  db.pragma("journal_mode = WAL");
  // A bench database: no fsync per insert (the fixture app opens it normally afterwards).
  db.pragma("synchronous = OFF");
  const options = {
    baseURL: "http://127.0.0.1",
    secret,
    database: db,
    emailAndPassword: { enabled: true },
    rateLimit: { enabled: false },
    telemetry: { enabled: false },
    logger: { level: "error" },
  };
  const { toBeCreated, toBeAdded, runMigrations } = await getMigrations(options);
  if (toBeCreated.length || toBeAdded.length) await runMigrations();
  createAppSchema(db);
  // The fixture's membership tables are keyed (room, user): listing one user's memberships scans
  // them whole (about 4 ms per call with 10k users, the fixture app's bottleneck). An app of
  // this size would index them by user; so does the bench database.
  db.exec(`
    CREATE INDEX IF NOT EXISTS bench_workspace_members_user ON workspace_members(user_id);
    CREATE INDEX IF NOT EXISTS bench_channel_members_user ON channel_members(user_id);
    CREATE INDEX IF NOT EXISTS bench_conversation_participants_user ON conversation_participants(user_id);
  `);
  const auth = betterAuth(options);
  const ctx = await auth.$context;

  // Workspaces, channels and conversations.
  db.transaction(() => {
    const ws = db.prepare("INSERT OR IGNORE INTO workspaces (id, name) VALUES (?, ?)");
    for (let w = 0; w < WORKSPACES; w++) ws.run(`bw${w}`, `Bench ${w}`);
    const ch = db.prepare("INSERT OR IGNORE INTO channels (id, workspace_id, name) VALUES (?, ?, ?)");
    for (let c = 0; c < FANOUT_ROOMS; c++) ch.run(`f${c}`, `bw${c % WORKSPACES}`, `fanout-${c}`);
    for (let c = 0; c < BACKGROUND; c++) ch.run(`g${c}`, `bw${c % WORKSPACES}`, `background-${c}`);
    const cv = db.prepare("INSERT OR IGNORE INTO conversations (id, workspace_id) VALUES (?, ?)");
    for (let p = 0; p < Math.ceil(n / 2); p++) cv.run(`p${p}`, `bw${(2 * p) % WORKSPACES}`);
  })();

  const wsm = db.prepare("INSERT OR IGNORE INTO workspace_members (workspace_id, user_id) VALUES (?, ?)");
  const chm = db.prepare("INSERT OR IGNORE INTO channel_members (channel_id, user_id) VALUES (?, ?)");
  const cvp = db.prepare("INSERT OR IGNORE INTO conversation_participants (conversation_id, user_id) VALUES (?, ?)");
  const lines = [];
  const t0 = Date.now();
  for (let i = 0; i < n; i++) {
    const user = await ctx.internalAdapter.createUser({
      email: `bench-user-${i}@bench.test`,
      name: `Bench ${i}`,
      emailVerified: false,
    });
    const session = await ctx.internalAdapter.createSession(user.id);
    const rooms = roomsOf(i, user.id, WORKSPACES);
    db.transaction(() => {
      for (const r of rooms) {
        const [kind, id] = [r.slice(0, r.indexOf(":")), r.slice(r.indexOf(":") + 1)];
        if (kind === "workspace") wsm.run(id, user.id);
        else if (kind === "channel") chm.run(id, user.id);
        else if (kind === "dm") cvp.run(id, user.id);
      }
    })();
    lines.push(JSON.stringify({ cookie: signedCookie(session.token, secret), userId: user.id, rooms }));
    if ((i + 1) % 5000 === 0) process.stderr.write(`users: ${i + 1}/${n} (${((Date.now() - t0) / 1000).toFixed(1)}s)\n`);
  }
  db.close();
  fs.writeFileSync(out, lines.join("\n") + "\n", { mode: 0o600 });
  process.stderr.write(`users: ${n} users and sessions in ${((Date.now() - t0) / 1000).toFixed(1)}s → ${out}\n`);
}

async function verify({ app, out, sample = "3" }) {
  if (!app || !out) throw new Error("verify needs --app URL --out FILE");
  const lines = fs.readFileSync(out, "utf8").trim().split("\n");
  const picks = [0, Math.floor(lines.length / 2), lines.length - 1].slice(0, Number(sample));
  for (const i of picks) {
    const u = JSON.parse(lines[i]);
    const headers = { cookie: u.cookie };
    const s = await fetch(`${app}/api/auth/get-session?disableCookieCache=true&disableRefresh=true`, { headers });
    const body = await s.json();
    if (s.status !== 200 || body?.user?.id !== u.userId) throw new Error(`user ${i}: get-session answered ${s.status} for another or no user`);
    const m = await fetch(`${app}/api/realtime/memberships`, { headers });
    const mb = await m.json();
    const rooms = new Set([`user:${mb.userId}`, ...mb.workspaces.map((w) => `workspace:${w}`), ...mb.channels.map((c) => `channel:${c.id}`), ...mb.conversations.map((c) => `dm:${c.id}`)]);
    if (m.status !== 200 || rooms.size !== u.rooms.length || !u.rooms.every((r) => rooms.has(r))) {
      throw new Error(`user ${i}: memberships differ from the users file (${m.status})`);
    }
  }
  process.stderr.write(`users: ${picks.length} sampled cookies accepted by the app, memberships match\n`);
}

const args = parseArgs(process.argv.slice(2));
const cmd = args._[0];
try {
  if (cmd === "create") await create(args);
  else if (cmd === "verify") await verify(args);
  else throw new Error("usage: users.mjs create|verify ...");
} catch (err) {
  process.stderr.write(`users.mjs: ${err.message}\n`);
  process.exit(1);
}
