// Fixture app for socket-gateway's tests: the app side of the gateway contract on plain node:http,
// better-auth 1.7 (email + password) on SQLite (better-sqlite3). Not Next.js, same HTTP behaviour.
//
// Environment:
//   PORT                 port on 127.0.0.1 (0 or unset = any free port)
//   HOST                 address to listen on instead of 127.0.0.1 (deploy/compose.yaml: 0.0.0.0)
//   DB_FILE              SQLite file (default: a fresh temp file, removed at exit)
//   BETTER_AUTH_SECRET   secret (default: a fixed test secret)
//   BASE_URL             better-auth baseURL (default: the server's own http://<host>:<port>)
//   TRUSTED_ORIGINS      extra trusted origins, comma separated (own origin is always trusted)
//   COOKIE_CACHE=1       enable better-auth's session cookie cache (COOKIE_CACHE_MAX_AGE seconds, default 300)
//   FIXTURE_TEST_ROUTES=1  enable /test/* routes
//   FIXTURE_LOG=1        one line per request on stderr (method, path, status, ms; never headers or bodies)
//
// GET / is a small chat page (public/, plain HTML + JS) that signs in with better-auth and talks to
// the gateway on its own origin through a reverse proxy (scripts/stack.sh, tests/node/e2e/);
// /vendor/socket.io.min.js is socket.io-client's browser bundle from node_modules.
//
// Prints exactly one line `LISTENING http://<host>:<port>` on stdout when ready (127.0.0.1 unless
// HOST names one address).
import crypto from "node:crypto";
import http from "node:http";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { betterAuth } from "better-auth";
import { toNodeHandler } from "better-auth/node";
import { getMigrations } from "better-auth/db/migration";
import { createAppSchema, seedApp, makeStore, SEED_USERS } from "./db.mjs";
import { makeRoutes, sendJson, HttpError } from "./routes.mjs";
import { fileURLToPath } from "node:url";

const env = process.env;
const flag = (v) => v === "1" || v === "true";
const TEST_ROUTES = flag(env.FIXTURE_TEST_ROUTES);
const LOG = flag(env.FIXTURE_LOG);
const DEFAULT_SECRET = "socket-gateway-fixture-secret-0123456789abcdef";

// ---- database file
let tmpDir = null;
let dbFile = env.DB_FILE;
if (!dbFile) {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), "fixture-app-"));
  dbFile = path.join(tmpDir, "app.sqlite");
}
const db = new Database(dbFile);
db.pragma("journal_mode = WAL");
db.pragma("busy_timeout = 5000");

// ---- faults and stats (shared with routes.mjs)
const FAULT_PATHS = ["session", "memberships", "authorize", "events"];
const FAULT_MODES = ["ok", "slow", "error500", "error503", "error429", "hang"];
let fault = { mode: "ok", delayMs: 0, paths: new Set(FAULT_PATHS) };
let counters = Object.fromEntries(FAULT_PATHS.map((p) => [p, 0]));
// The X-Forwarded-For of the last call to each endpoint (null: none sent).
const forwardedFor = {};
// Calls being answered per endpoint now, and the most at once since the last stats reset.
const inFlight = Object.fromEntries(FAULT_PATHS.map((p) => [p, 0]));
let maxInFlight = { ...inFlight };
const hung = new Set();
// Calls in flight per endpoint and caller (a digest of its Cookie: one session, and with one
// session per user, one user), and the most ever seen at once for one caller: the gateway
// promises at most one session and one memberships call in flight per session and user.
const CALLER_IN_FLIGHT_PATHS = ["session", "memberships"];
const callerCalls = new Map(); // key -> [{from, since}]
let maxCallerInFlight = Object.fromEntries(CALLER_IN_FLIGHT_PATHS.map((p) => [p, 0]));
// All callers together: calls of each endpoint in flight now, and the most at once.
const totalInFlight = Object.fromEntries(CALLER_IN_FLIGHT_PATHS.map((p) => [p, 0]));
let maxTotalInFlight = { ...totalInFlight };
// The first overlaps seen: which connections and when (no cookie, only a short digest).
let overlaps = [];
function trackCallerInFlight(ep, req, res) {
  if (!CALLER_IN_FLIGHT_PATHS.includes(ep)) return;
  const digest = crypto.createHash("sha256").update(req.headers.cookie ?? "").digest("base64url");
  const key = `${ep}:${digest}`;
  const call = { from: `${req.socket.remoteAddress}:${req.socket.remotePort}`, since: Date.now() };
  const calls = callerCalls.get(key) ?? [];
  calls.push(call);
  callerCalls.set(key, calls);
  if (calls.length > maxCallerInFlight[ep]) maxCallerInFlight[ep] = calls.length;
  totalInFlight[ep] += 1;
  if (totalInFlight[ep] > maxTotalInFlight[ep]) maxTotalInFlight[ep] = totalInFlight[ep];
  if (calls.length > 1 && overlaps.length < 20) {
    overlaps.push({ ep, caller: digest.slice(0, 8), at: call.since, calls: calls.map((c) => ({ from: c.from, ageMs: call.since - c.since })) });
  }
  res.once("close", () => {
    totalInFlight[ep] -= 1;
    const left = (callerCalls.get(key) ?? []).filter((c) => c !== call);
    if (left.length) callerCalls.set(key, left);
    else callerCalls.delete(key);
  });
}

const ctl = {
  describeFault: () => ({ mode: fault.mode, delayMs: fault.delayMs, paths: [...fault.paths] }),
  setFault(body) {
    const mode = body.mode ?? "ok";
    if (!FAULT_MODES.includes(mode)) return { status: 400, body: { error: "bad_payload", detail: `mode must be one of ${FAULT_MODES}` } };
    const paths = body.paths ?? FAULT_PATHS;
    if (!Array.isArray(paths) || paths.some((p) => !FAULT_PATHS.includes(p))) {
      return { status: 400, body: { error: "bad_payload", detail: `paths must be a subset of ${FAULT_PATHS}` } };
    }
    const delayMs = body.delayMs ?? (mode === "slow" ? 1000 : 0);
    if (typeof delayMs !== "number" || !(delayMs >= 0)) return { status: 400, body: { error: "bad_payload", detail: "delayMs must be a number >= 0" } };
    fault = { mode, delayMs, paths: new Set(paths) };
    return { status: 200, body: { ok: true, fault: ctl.describeFault() } };
  },
  stats: () => ({ ...counters }),
  forwardedFor: () => ({ ...forwardedFor }),
  maxInFlight: () => ({ ...maxInFlight }),
  resetStats: () => {
    counters = Object.fromEntries(FAULT_PATHS.map((p) => [p, 0]));
    maxInFlight = { ...inFlight };
    maxCallerInFlight = Object.fromEntries(CALLER_IN_FLIGHT_PATHS.map((p) => [p, 0]));
    overlaps = [];
    maxTotalInFlight = { ...totalInFlight };
  },
  inFlight: () => ({ max: { ...maxCallerInFlight }, maxTotal: { ...maxTotalInFlight }, now: callerCalls.size, overlaps }),
};

/** Which contract endpoint a path is (for stats and faults), or null. */
function endpointOf(pathname) {
  if (pathname === "/api/auth/get-session") return "session";
  if (pathname === "/api/realtime/memberships") return "memberships";
  if (pathname === "/api/realtime/authorize") return "authorize";
  if (pathname.startsWith("/api/realtime/events/")) return "events";
  return null;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Applies the current fault to a request of endpoint `ep`. Resolves true if the fault answered (or hangs). */
async function applyFault(ep, req, res) {
  const f = fault;
  if (f.mode === "ok" || !f.paths.has(ep)) return false;
  if (f.mode === "hang") {
    // Never answer; the socket stays open until the client gives up (or the server stops).
    hung.add(res);
    res.on("close", () => hung.delete(res));
    req.resume();
    return true;
  }
  if (f.delayMs > 0) await sleep(f.delayMs);
  if (f.mode === "slow") return false;
  req.resume();
  if (f.mode === "error500") {
    sendJson(res, 500, { error: "fault", mode: "error500" });
  } else if (f.mode === "error503") {
    sendJson(res, 503, { error: "fault", mode: "error503" }, { "retry-after": "5" });
  } else if (f.mode === "error429") {
    // Same shape as better-auth's own rate limiter.
    sendJson(res, 429, { message: "Too many requests. Please try again later." }, { "x-retry-after": "10", "retry-after": "10" });
  }
  return true;
}

// ---- listen first, so PORT=0 works and baseURL is known
let handle = (_req, res) => sendJson(res, 503, { error: "starting" });
const server = http.createServer((req, res) => handle(req, res));
await new Promise((resolve, reject) => {
  server.once("error", reject);
  server.listen(Number(env.PORT || 0), env.HOST || "127.0.0.1", resolve);
});
// Its own URL: on the address it listens on, or on loopback when that is every interface.
const ownHost = env.HOST && !["0.0.0.0", "::"].includes(env.HOST) ? env.HOST : "127.0.0.1";
const ownURL = `http://${ownHost}:${server.address().port}`;
const baseURL = env.BASE_URL || ownURL;
const trustedOrigins = [
  ...new Set([
    new URL(ownURL).origin,
    new URL(baseURL).origin,
    ...(env.TRUSTED_ORIGINS || "")
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean),
  ]),
];

// ---- better-auth
const authOptions = {
  baseURL,
  secret: env.BETTER_AUTH_SECRET || DEFAULT_SECRET,
  database: db,
  emailAndPassword: { enabled: true },
  trustedOrigins,
  rateLimit: { enabled: false },
  telemetry: { enabled: false },
  logger: { level: LOG ? "info" : "error" },
  session: flag(env.COOKIE_CACHE)
    ? { cookieCache: { enabled: true, maxAge: Number(env.COOKIE_CACHE_MAX_AGE || 300) } }
    : undefined,
};
const { toBeCreated, toBeAdded, runMigrations } = await getMigrations(authOptions);
if (toBeCreated.length || toBeAdded.length) await runMigrations();
createAppSchema(db);
const auth = betterAuth(authOptions);
const authHandler = toNodeHandler(auth);
const store = makeStore(db);

// ---- seed (idempotent)
const users = {};
for (const u of SEED_USERS) {
  let id = store.userIdByEmail(u.email);
  if (!id) {
    const r = await auth.api.signUpEmail({ body: { email: u.email, password: u.password, name: u.name } });
    id = r.user.id;
  }
  users[u.key] = { id, email: u.email, password: u.password, name: u.name };
}
seedApp(db, Object.fromEntries(Object.entries(users).map(([k, v]) => [k, v.id])));
// Sign-up signs the user in; drop those server-side sessions so every test session comes from a real sign-in.
for (const u of Object.values(users)) store.revokeUserSessions(u.id);

const routes = makeRoutes({ auth, store, ctl, users });

// ---- the chat page and socket.io-client's browser bundle (read on each request: small, and edits show at once)
const here = path.dirname(fileURLToPath(import.meta.url));
const STATIC = {
  "/": [path.join(here, "public/index.html"), "text/html; charset=utf-8"],
  "/chat.js": [path.join(here, "public/chat.js"), "text/javascript; charset=utf-8"],
  "/chat.css": [path.join(here, "public/chat.css"), "text/css; charset=utf-8"],
  "/vendor/socket.io.min.js": [path.join(here, "../node_modules/socket.io-client/dist/socket.io.min.js"), "text/javascript; charset=utf-8"],
};
function serveStatic(req, res, [file, type]) {
  fs.readFile(file, (err, body) => {
    if (err) return sendJson(res, 404, { error: "not_found" });
    res.writeHead(200, { "content-type": type, "content-length": body.length, "cache-control": "no-cache" });
    res.end(req.method === "HEAD" ? undefined : body);
  });
}

// ---- dispatch
async function dispatch(req, res) {
  const url = new URL(req.url, ownURL);
  const { pathname } = url;
  const ep = endpointOf(pathname);
  if (ep) {
    counters[ep] += 1;
    forwardedFor[ep] = req.headers["x-forwarded-for"] ?? null;
    inFlight[ep] += 1;
    maxInFlight[ep] = Math.max(maxInFlight[ep], inFlight[ep]);
    res.once("close", () => (inFlight[ep] -= 1));
    trackCallerInFlight(ep, req, res);
    if (await applyFault(ep, req, res)) return;
  }
  if (pathname.startsWith("/api/auth/") || pathname === "/api/auth") return authHandler(req, res);
  if (ep === "memberships" && req.method === "GET") return routes.memberships(req, res, url);
  if (ep === "authorize" && req.method === "GET") return routes.authorize(req, res, url);
  if (ep === "events" && req.method === "POST") return routes.events(req, res, url);
  if (pathname === "/api/messages" && req.method === "GET") return routes.messages(req, res, url);
  if (pathname === "/healthz") return sendJson(res, 200, { ok: true });
  if ((req.method === "GET" || req.method === "HEAD") && Object.hasOwn(STATIC, pathname)) return serveStatic(req, res, STATIC[pathname]);
  if (TEST_ROUTES && pathname.startsWith("/test/")) {
    const h = routes.testRoutes[`${req.method} ${pathname}`];
    if (h) return h(req, res, url);
  }
  if (ep || pathname === "/api/messages") return sendJson(res, 405, { error: "method_not_allowed" });
  sendJson(res, 404, { error: "not_found" });
}

handle = (req, res) => {
  const started = process.hrtime.bigint();
  if (LOG) {
    res.on("close", () => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const p = req.url.split("?")[0];
      process.stderr.write(`${req.method} ${p} ${res.headersSent ? res.statusCode : "-"} ${ms.toFixed(1)}ms\n`);
    });
  }
  Promise.resolve()
    .then(() => dispatch(req, res))
    .catch((err) => {
      if (err instanceof HttpError) return sendJson(res, err.status, err.body);
      process.stderr.write(`fixture-app: internal error on ${req.method} ${req.url.split("?")[0]}: ${err?.message}\n`);
      sendJson(res, 500, { error: "internal" });
    });
};

// ---- shutdown
let stopping = false;
function shutdown() {
  if (stopping) return;
  stopping = true;
  server.close();
  server.closeAllConnections();
  try {
    db.close();
  } catch {}
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
  process.exit(0);
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

process.stdout.write(`LISTENING ${ownURL}\n`);
