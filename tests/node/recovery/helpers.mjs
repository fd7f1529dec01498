// Shared setup for the connection state recovery tests: gateways with the relay and recovery on, clients that
// reconnect (possibly to another instance) and record what they receive with its offset.
import { io as ioClient } from "socket.io-client";
import { ALLOWED_ORIGIN } from "../lib/gateway.mjs";
import { relayEnv } from "../relay/helpers.mjs";
import { parseOffset } from "../lib/recovery-log.mjs";

/** Gateway environment: relay and recovery on (the defaults), generous event limits. */
export function recoveryEnv(valkeyUrl, extra = {}) {
  return relayEnv(valkeyUrl, { GATEWAY_RECOVERY__ENABLED: "true", ...extra });
}

const clients = new Set();

/**
 * A socket.io-client socket that reconnects by itself after `reconnectMs`, over WebSocket only (the cookie
 * goes in extraHeaders). Resolves on the first connect. `sock.moveTo(url)` makes its next reconnection go to
 * another instance; `sock.got` lists every event received as {event, args, offset}.
 */
export function recoverable(url, cookie, { reconnectMs = 1500, ...opts } = {}) {
  const sock = ioClient(url, {
    forceNew: true,
    transports: ["websocket"],
    reconnection: true,
    reconnectionDelay: reconnectMs,
    reconnectionDelayMax: reconnectMs,
    randomizationFactor: 0,
    timeout: 5000,
    extraHeaders: { Cookie: cookie, Origin: ALLOWED_ORIGIN },
    ...opts,
  });
  clients.add(sock);
  sock.got = [];
  sock.onAny((event, ...args) => {
    const last = args[args.length - 1];
    sock.got.push({ event, args, offset: parseOffset(last) ? last : null });
  });
  sock.moveTo = (other) => {
    sock.io.uri = other;
  };
  return new Promise((resolve, reject) => {
    sock.once("connect", () => resolve(sock));
    sock.once("connect_error", (err) => {
      sock.close();
      reject(err);
    });
  });
}

/** Resolves on the next successful (re)connect, with `sock.recovered`; rejects on connect_error or timeout. */
export function nextConnect(sock, ms = 8000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`no reconnect within ${ms} ms`)), ms);
    const onConnect = () => done(null, sock.recovered);
    const onError = (err) => done(err);
    function done(err, value) {
      clearTimeout(timer);
      sock.off("connect", onConnect);
      sock.io.off("reconnect_error", onError);
      sock.off("connect_error", onError);
      err ? reject(err) : resolve(value);
    }
    sock.on("connect", onConnect);
    sock.on("connect_error", onError);
  });
}

export function closeRecoverable() {
  for (const s of clients) s.close();
  clients.clear();
}
