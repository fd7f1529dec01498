// The production shape on loopback, for the end-to-end tests: Valkey, the fixture app (standing in
// for `next start`), N socket-gateway instances with the relay on, and real nginx configured from
// deploy/nginx.conf, all on one origin (nginx's). Not a test file itself.
//
// Each gateway instance gets a distinct Engine.IO pingInterval (25000 + 100 × index), which every
// handshake reports: that is how a test tells which instance served a session.
import { io as ioClient } from "socket.io-client";
import { freePort } from "../lib/procs.mjs";
import { startFixtureApp, signIn } from "../lib/app.mjs";
import { startGateway, closeAllClients } from "../lib/gateway.mjs";
import { startNginx } from "../lib/nginx.mjs";
import { startValkey } from "../lib/valkey.mjs";

export const AFFINITY_COOKIE = "sio_affinity";
export const pingIntervalOf = (i) => 25000 + 100 * i;

/** The default app: the fixture app, with nginx's origin as its public one. */
const fixtureApp = ({ origin, appEnv }) => startFixtureApp({ env: { BASE_URL: origin, TRUSTED_ORIGINS: origin, ...appEnv } });

/**
 * Starts valkey, the app (BASE_URL and TRUSTED_ORIGINS = nginx's origin), `gateways` gateway
 * instances (GATEWAY_REDIS__ENABLED=true, REDIS_URL, allowed origin = nginx's) and nginx.
 * `startApp({origin, valkey, appEnv})` starts another app instead of the fixture (it resolves to
 * {url, stop()}; tests/node/nextjs uses the Next.js example).
 * Resolves to {url, origin, app, gws, nginx, valkey, users, login(name), instanceOfAffinity(key),
 * affinityFor(i), stop()}.
 */
export async function startEdgeStack({ gateways = 2, gatewayEnv = {}, appEnv = {}, startApp = fixtureApp } = {}) {
  const started = [];
  const stopAllStarted = async () => {
    closeAllClients();
    for (const s of started.reverse()) await s.stop().catch(() => {});
  };
  try {
    const nginxPort = await freePort();
    const origin = `http://127.0.0.1:${nginxPort}`;
    const valkey = await startValkey();
    started.push(valkey);
    const app = await startApp({ origin, valkey, appEnv });
    started.push(app);
    const gws = [];
    for (let i = 0; i < gateways; i++) {
      const gw = await startGateway({
        appUrl: app.url,
        env: {
          GATEWAY_REDIS__ENABLED: "true",
          REDIS_URL: valkey.url,
          GATEWAY_SECURITY__ALLOWED_ORIGINS: origin,
          GATEWAY_ENGINE__PING_INTERVAL_MS: String(pingIntervalOf(i)),
          ...gatewayEnv,
        },
      });
      started.push(gw);
      gws.push(gw);
    }
    const nginx = await startNginx({ gateways: gws.map((g) => g.port), appPort: Number(new URL(app.url).port), port: nginxPort });
    started.push(nginx);

    const url = nginx.url;
    /** Which instance (index into gws) a raw polling handshake with this affinity key lands on. */
    async function instanceOfAffinity(key) {
      const res = await fetch(`${url}/socket.io/?EIO=4&transport=polling`, {
        headers: { cookie: `${AFFINITY_COOKIE}=${key}` },
        signal: AbortSignal.timeout(5000),
      });
      const text = await res.text();
      if (res.status !== 200 || text[0] !== "0") throw new Error(`handshake through nginx: ${res.status} ${text.slice(0, 200)}`);
      const open = JSON.parse(text.slice(1));
      // Close the probe's session at once (Engine.IO "1" = close).
      await fetch(`${url}/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(open.sid)}`, {
        method: "POST",
        headers: { cookie: `${AFFINITY_COOKIE}=${key}`, "content-type": "text/plain;charset=UTF-8" },
        body: "1",
        signal: AbortSignal.timeout(5000),
      }).then((r) => r.text());
      const i = gws.findIndex((_, j) => pingIntervalOf(j) === open.pingInterval);
      if (i < 0) throw new Error(`handshake with an unknown pingInterval ${open.pingInterval}`);
      return i;
    }
    /** An affinity cookie value that nginx routes to instance `i`. */
    async function affinityFor(i) {
      // nginx takes an instance out for fail_timeout (5 s) after one error or 503 (max_fails=1;
      // the gateway answers 503 only while draining), and then every key goes to the other one:
      // keep trying a little longer than that.
      const until = Date.now() + 8000;
      for (let round = 0; Date.now() < until; round++) {
        for (let n = 0; n < 64; n++) {
          const key = `probe-${i}-${round}-${n}`;
          if ((await instanceOfAffinity(key)) === i) return key;
        }
        await new Promise((r) => setTimeout(r, 500));
      }
      throw new Error(`no affinity key routes to instance ${i} within 8 s`);
    }
    return {
      url,
      origin,
      app,
      gws,
      nginx,
      valkey,
      users: app.users,
      instanceOfAffinity,
      affinityFor,
      /** Signs `name` in through nginx; resolves to the Cookie header. */
      login: (name) => signIn(url, app.users[name].email, app.users[name].password),
      stop: stopAllStarted,
    };
  } catch (err) {
    await stopAllStarted();
    throw err;
  }
}

/**
 * Opens a socket.io-client socket (new Manager, reconnection off, 5 s timeout, `Cookie: cookie`) and
 * resolves, once connected, to {socket, handshake}: handshake is the Engine.IO open packet, whose
 * pingInterval names the instance. closeOpened() closes every socket opened here.
 */
export function openSocket(url, cookie, opts = {}) {
  const socket = ioClient(url, {
    forceNew: true,
    reconnection: false,
    timeout: 5000,
    extraHeaders: cookie ? { Cookie: cookie } : {},
    ...opts,
  });
  opened.add(socket);
  const handshake = new Promise((resolve) => socket.io.engine.once("handshake", resolve));
  return new Promise((resolve, reject) => {
    socket.once("connect", async () => resolve({ socket, handshake: await handshake }));
    socket.once("connect_error", (err) => {
      socket.close();
      reject(err);
    });
  });
}

const opened = new Set();
/** Closes every socket opened with openSocket(). */
export function closeOpened() {
  for (const s of opened) s.close();
  opened.clear();
}

/** Resolves once `socket`'s engine runs on WebSocket (after the upgrade), or rejects after `ms`. */
export function waitUpgraded(socket, ms = 5000) {
  const engine = socket.io.engine;
  if (engine.transport.name === "websocket") return Promise.resolve("websocket");
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no upgrade to websocket within ${ms} ms (transport ${engine.transport.name})`)), ms);
    engine.once("upgrade", (t) => {
      clearTimeout(timer);
      resolve(t.name);
    });
  });
}

