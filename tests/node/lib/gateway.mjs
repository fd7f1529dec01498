// Helpers for the gateway's end-to-end tests (tests/node/gateway/*.test.mjs): start the real
// `socket-gateway` binary in front of the fixture app, connect real socket.io-client 4.8.4 sockets
// with a session cookie, and wait for (or for the absence of) events with bounded timeouts.
// Never print cookie values: they are bearer secrets even in tests.
import { existsSync } from "node:fs";
import path from "node:path";
import { io as ioClient } from "socket.io-client";
import { freePort, startProcess, stopProcess, cargoArtifact, repoRoot } from "./procs.mjs";
import { checkAck, checkServerEvent } from "./schemas.mjs";

/** The gateway's own allowed origin in tests (GATEWAY_SECURITY__ALLOWED_ORIGINS). */
export const ALLOWED_ORIGIN = "http://allowed.test";

/**
 * Spawns the `socket-gateway` binary (`cargo build` in the repository root first) on a free port of
 * 127.0.0.1 in front of `appUrl`, with Redis off and RUST_LOG unset; `env` overrides any variable.
 * Resolves, once a log line matches /listening on/, to {url, port, proc, stop()}.
 * TEST_VERBOSE=1 echoes the gateway's output to stderr.
 */
export async function startGateway({ appUrl, env = {}, timeoutMs = 20000 } = {}) {
  const bin = cargoArtifact("socket-gateway");
  if (!existsSync(bin)) {
    throw new Error(`${bin} not found: run \`cargo build\` in the repository root first`);
  }
  const port = await freePort();
  const proc = await startProcess(bin, [], {
    // A directory without gateway.toml: the tests see built-in defaults plus the variables below.
    cwd: path.join(repoRoot, "tests/node"),
    env: {
      RUST_LOG: undefined, // undefined values are left out of the child's environment
      PORT: String(port),
      APP_URL: appUrl,
      GATEWAY_SERVER__HOST: "127.0.0.1",
      GATEWAY_REDIS__ENABLED: "false",
      GATEWAY_SECURITY__ALLOWED_ORIGINS: ALLOWED_ORIGIN,
      ...env,
    },
    ready: /listening on/,
    timeoutMs,
    name: "socket-gateway",
  });
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    proc,
    /** The gateway's recent output (for assertion messages). */
    output: () => proc.output.join(""),
    stop: () => stopProcess(proc),
  };
}

const clients = new Set();

/**
 * Opens a socket.io-client socket to `url` with `Cookie: cookie` (none when falsy). Defaults: a new
 * Manager, `reconnection: false`, 5 s connect timeout; `opts` overrides them (its `extraHeaders`
 * are merged with the cookie). Resolves to the socket on `connect`; rejects with the `connect_error`
 * (err.message, err.data kept; err.socket is the closed socket).
 */
export function connect(url, cookie, opts = {}) {
  const { extraHeaders = {}, ...rest } = opts;
  const headers = { ...(cookie ? { Cookie: cookie } : {}), ...extraHeaders };
  const socket = ioClient(url, {
    forceNew: true,
    reconnection: false,
    timeout: 5000,
    extraHeaders: headers,
    ...rest,
  });
  clients.add(socket);
  return new Promise((resolve, reject) => {
    const onConnect = () => {
      socket.off("connect_error", onError);
      resolve(socket);
    };
    const onError = (err) => {
      socket.off("connect", onConnect);
      socket.close();
      err.socket = socket;
      reject(err);
    };
    socket.once("connect", onConnect);
    socket.once("connect_error", onError);
  });
}

/** Expects connect() to fail; resolves to the connect_error (throws if it connected). */
export async function connectError(url, cookie, opts) {
  let socket;
  try {
    socket = await connect(url, cookie, opts);
  } catch (err) {
    return err;
  }
  socket.close();
  throw new Error(`expected a connect_error, but the socket connected (id ${socket.id})`);
}

/** Closes every client socket opened with connect() (call in `after`). */
export function closeAllClients() {
  for (const s of clients) s.close();
  clients.clear();
}

/**
 * Resolves with the first argument of the next `event` on `socket` that satisfies `filter`
 * (default: any), or rejects after `ms`. Register it before triggering the event.
 */
export function waitFor(socket, event, ms = 2000, filter = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off(event, handler);
      reject(new Error(`no "${event}" within ${ms} ms`));
    }, ms);
    const handler = (...args) => {
      if (!filter(...args)) return;
      clearTimeout(timer);
      socket.off(event, handler);
      // What the gateway sends must match schema/events.
      const problem = checkServerEvent(event, args[0]);
      if (problem) reject(new Error(problem));
      else resolve(args[0]);
    };
    socket.on(event, handler);
  });
}

/** Resolves when `socket` disconnects (with the reason), or rejects after `ms`. */
export function waitDisconnect(socket, ms = 3000) {
  if (!socket.connected) return Promise.resolve("already disconnected");
  return waitFor(socket, "disconnect", ms);
}

/**
 * Resolves after `ms` if `socket` got no `event` matching `filter` in that time; rejects at the
 * first one (with its payload in the message). Register it before triggering the action.
 */
export function expectNothing(socket, event, ms = 300, filter = () => true) {
  return new Promise((resolve, reject) => {
    const handler = (...args) => {
      if (!filter(...args)) return;
      clearTimeout(timer);
      socket.off(event, handler);
      reject(new Error(`unexpected "${event}": ${safeJson(args)}`));
    };
    const timer = setTimeout(() => {
      socket.off(event, handler);
      resolve();
    }, ms);
    socket.on(event, handler);
  });
}

/**
 * Collects every `event` on `socket` for `ms`; resolves to the list of first arguments (rejects if
 * one does not match its schema in schema/events).
 */
export function collect(socket, event, ms, filter = () => true) {
  return new Promise((resolve, reject) => {
    const seen = [];
    const problems = [];
    const handler = (...args) => {
      if (!filter(...args)) return;
      seen.push(args[0]);
      const problem = checkServerEvent(event, args[0]);
      if (problem) problems.push(problem);
    };
    socket.on(event, handler);
    setTimeout(() => {
      socket.off(event, handler);
      if (problems.length) reject(new Error(problems.join("\n")));
      else resolve(seen);
    }, ms);
  });
}

/**
 * Emits with an acknowledgement; resolves to the ack's first argument (rejected if it does not
 * match the event's ack schema in schema/events), rejects after 3 s.
 */
export async function emitAck(socket, event, ...args) {
  const ack = await socket.timeout(3000).emitWithAck(event, ...args);
  const problem = checkAck(event, ack);
  if (problem) throw new Error(problem);
  return ack;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function safeJson(v) {
  try {
    const s = JSON.stringify(v);
    return s.length > 500 ? s.slice(0, 500) + "…" : s;
  } catch {
    return String(v);
  }
}

/** Changes a character inside the cookie's value (the signature part), keeping its shape. */
export function tamperCookie(cookie) {
  const m = /(better-auth\.session_token=)([^;]+)/.exec(cookie);
  if (!m) throw new Error("no better-auth.session_token in the cookie");
  const value = decodeURIComponent(m[2]);
  const i = value.length - 3;
  const c = value[i] === "A" ? "B" : "A";
  const tampered = value.slice(0, i) + c + value.slice(i + 1);
  return cookie.replace(m[0], m[1] + encodeURIComponent(tampered));
}

/**
 * Starts a fresh fixture app and a gateway in front of it, and signs every seed user in once.
 * Resolves to {app, gw, url, users, cookies:{alice,bob,carol,dave}, login(name), stop()};
 * `login(name)` makes a new, separate session for that user.
 */
export async function startStack({ gatewayEnv = {}, appEnv = {} } = {}) {
  const { startFixtureApp, signIn } = await import("./app.mjs");
  const app = await startFixtureApp({ env: appEnv });
  let gw;
  try {
    gw = await startGateway({ appUrl: app.url, env: gatewayEnv });
    const login = (name) => signIn(app.url, app.users[name].email, app.users[name].password);
    const cookies = {};
    for (const name of Object.keys(app.users)) cookies[name] = await login(name);
    return {
      app,
      gw,
      url: gw.url,
      users: app.users,
      cookies,
      login,
      async stop() {
        closeAllClients();
        await gw.stop();
        await app.stop();
      },
    };
  } catch (err) {
    await gw?.stop();
    await app.stop();
    throw err;
  }
}

/** Throws if the gateway process has exited (a crash shows up here rather than as timeouts only). */
export function assertAlive(gw) {
  if (gw.proc.exited) {
    throw new Error(`the gateway exited (${JSON.stringify(gw.proc.exited)}); last output:\n${gw.output().slice(-3000)}`);
  }
}
