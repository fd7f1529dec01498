// Helpers for tests that need the fixture app (tests/node/fixture-app/server.mjs): start/stop it,
// sign users in over real HTTP, and drive its /test/* control routes (faults, stats, memberships).
// Never print cookie values: they are bearer secrets even in tests.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startProcess, stopProcess, repoRoot } from "./procs.mjs";

export const fixtureServerPath = path.join(repoRoot, "tests/node/fixture-app/server.mjs");

/**
 * Starts the fixture app on 127.0.0.1 (any free port unless env.PORT), with FIXTURE_TEST_ROUTES=1 and a fresh
 * SQLite file unless env.DB_FILE. Resolves to {url, proc, users, dbFile, stop()}; `users` is
 * {alice:{id,email,password,name}, bob, carol, dave}.
 */
export async function startFixtureApp({ env = {}, timeoutMs = 20000 } = {}) {
  let tmpDir = null;
  let dbFile = env.DB_FILE;
  if (!dbFile) {
    tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), "fixture-app-test-"));
    dbFile = path.join(tmpDir, "app.sqlite");
  }
  const proc = await startProcess(process.execPath, [fixtureServerPath], {
    env: { PORT: "0", FIXTURE_TEST_ROUTES: "1", ...env, DB_FILE: dbFile },
    ready: /LISTENING (http:\/\/[0-9.]+:\d+)/,
    timeoutMs,
    name: "fixture-app",
  });
  const url = proc.match[1];
  const stop = async () => {
    await stopProcess(proc);
    if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
  };
  try {
    const users = await getJson(url, "/test/users");
    return { url, proc, users, dbFile, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * One HTTP call to the app. Returns {status, body, headers, text}; body is parsed JSON (or undefined).
 * `cookie` becomes the Cookie header; POSTs get `Origin: appUrl` unless `origin` is given (null = none).
 */
export async function appRequest(appUrl, pathAndQuery, { method = "GET", cookie, body, headers = {}, origin, timeoutMs = 10000 } = {}) {
  const h = { ...headers };
  if (cookie) h.cookie = cookie;
  const o = origin === undefined ? (method === "GET" ? null : new URL(appUrl).origin) : origin;
  if (o) h.origin = o;
  if (body !== undefined) h["content-type"] = "application/json";
  const res = await fetch(new URL(pathAndQuery, appUrl), {
    method,
    headers: h,
    body: body === undefined ? undefined : JSON.stringify(body),
    redirect: "manual",
    signal: timeoutMs ? AbortSignal.timeout(timeoutMs) : undefined,
  });
  const text = await res.text();
  let parsed;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  return { status: res.status, body: parsed, headers: res.headers, text };
}

async function getJson(appUrl, p, opts) {
  const r = await appRequest(appUrl, p, opts);
  if (r.status !== 200) throw new Error(`GET ${p} → ${r.status} ${r.text.slice(0, 200)}`);
  return r.body;
}

async function postJson(appUrl, p, body, opts = {}) {
  const r = await appRequest(appUrl, p, { ...opts, method: "POST", body });
  if (r.status !== 200) throw new Error(`POST ${p} → ${r.status} ${r.text.slice(0, 200)}`);
  return r.body;
}

/** Turns Set-Cookie headers into a Cookie header value (cookies being cleared are left out). */
export function cookieHeaderFrom(headers) {
  const list = typeof headers.getSetCookie === "function" ? headers.getSetCookie() : [];
  const pairs = [];
  for (const sc of list) {
    const first = sc.split(";")[0];
    const eq = first.indexOf("=");
    if (eq <= 0) continue;
    const value = first.slice(eq + 1);
    if (!value || /;\s*max-age=0\b/i.test(sc)) continue;
    pairs.push(first.trim());
  }
  return pairs.join("; ");
}

/** Signs in over HTTP; resolves to {cookie, user, status}. Throws (with .status) unless 200 with a cookie. */
export async function signInFull(appUrl, email, password, { rememberMe } = {}) {
  const body = { email, password };
  if (rememberMe !== undefined) body.rememberMe = rememberMe;
  const r = await appRequest(appUrl, "/api/auth/sign-in/email", { method: "POST", body });
  const cookie = cookieHeaderFrom(r.headers);
  if (r.status !== 200 || !cookie) {
    const err = new Error(`sign-in for ${email} failed: ${r.status} ${r.body?.code ?? ""}`);
    err.status = r.status;
    err.body = r.body;
    throw err;
  }
  return { cookie, user: r.body.user, status: r.status };
}

/** Signs in; resolves to the Cookie header string (`better-auth.session_token=…`, plus cache cookies if enabled). */
export async function signIn(appUrl, email, password) {
  return (await signInFull(appUrl, email, password)).cookie;
}

/** Signs out the session of `cookie` (POST /api/auth/sign-out with Origin). */
export async function signOut(appUrl, cookie) {
  return postJson(appUrl, "/api/auth/sign-out", {}, { cookie });
}

/**
 * GET /api/auth/get-session with the cookie. By default with the gateway's two flags
 * (disableCookieCache=true&disableRefresh=true); `{flags:false}` omits them. Resolves to {status, body}.
 */
export async function getSession(appUrl, cookie, { flags = true, timeoutMs } = {}) {
  const q = flags ? "?disableCookieCache=true&disableRefresh=true" : "";
  return appRequest(appUrl, `/api/auth/get-session${q}`, { cookie, timeoutMs });
}

/** GET /api/realtime/memberships → {status, body}. */
export function memberships(appUrl, cookie, opts = {}) {
  return appRequest(appUrl, "/api/realtime/memberships", { ...opts, cookie });
}

/** GET /api/realtime/authorize?room= → {status, body}. */
export function authorize(appUrl, cookie, room, opts = {}) {
  const q = room === undefined ? "" : `?room=${encodeURIComponent(room)}`;
  return appRequest(appUrl, `/api/realtime/authorize${q}`, { ...opts, cookie });
}

/** POST /api/realtime/events/<event> as the gateway would → {status, body}. */
export function forwardEvent(appUrl, cookie, { event, args = [], userId, socketId = "test-socket" }, opts = {}) {
  return appRequest(appUrl, `/api/realtime/events/${encodeURIComponent(event)}`, {
    ...opts,
    method: "POST",
    origin: null,
    cookie,
    body: { event, args, socketId, userId },
  });
}

/** GET /api/messages?channelId=…|conversationId=… → {status, body:{messages}}. */
export function listMessages(appUrl, cookie, { channelId, conversationId }) {
  const q = channelId ? `channelId=${encodeURIComponent(channelId)}` : `conversationId=${encodeURIComponent(conversationId)}`;
  return appRequest(appUrl, `/api/messages?${q}`, { cookie });
}

/** POST /test/fault {mode:"ok"|"slow"|"error500"|"error503"|"error429"|"hang", delayMs?, paths?}. */
export function fault(appUrl, body) {
  return postJson(appUrl, "/test/fault", body);
}

/** GET /test/stats → {session, memberships, authorize, events}. */
export function stats(appUrl) {
  return getJson(appUrl, "/test/stats");
}

/** GET /test/forwarded-for → the X-Forwarded-For of the last call to each endpoint {session, memberships, ...}. */
export function forwardedFor(appUrl) {
  return getJson(appUrl, "/test/forwarded-for");
}

/** GET /test/max-in-flight → the most calls answered at once per endpoint since the last stats reset. */
export function maxInFlight(appUrl) {
  return getJson(appUrl, "/test/max-in-flight");
}

/**
 * GET /test/inflight → {max: {session, memberships}, maxTotal, now, overlaps}: the most calls one
 * caller (cookie) had in flight at once since the last reset, the most of all callers together,
 * and the first overlaps (connections, ages).
 */
export function inFlight(appUrl) {
  return getJson(appUrl, "/test/inflight");
}

/** POST /test/stats/reset (also the in-flight maxima). */
export function resetStats(appUrl) {
  return postJson(appUrl, "/test/stats/reset", {});
}

/** POST /test/memberships {op:"add"|"remove", kind:"workspace"|"channel"|"conversation", id, userId, workspaceId?}. */
export function setMembership(appUrl, body) {
  return postJson(appUrl, "/test/memberships", body);
}

/** POST /test/revoke-user-sessions {userId} → {ok, revoked}. */
export function revokeUserSessions(appUrl, userId) {
  return postJson(appUrl, "/test/revoke-user-sessions", { userId });
}
