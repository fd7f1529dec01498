"use client";
// The page's one Socket.IO connection to the gateway. In production it is same-origin (nginx sends
// /socket.io/ to the gateways); with `npm run dev` beside `cargo run` it goes to
// NEXT_PUBLIC_SOCKET_URL (e.g. http://localhost:3001), which the gateway allows as an origin.
// Either way the browser sends better-auth's cookie (withCredentials), which is how the gateway
// knows the user.
import { useEffect, useSyncExternalStore } from "react";
import { io, type Socket } from "socket.io-client";
import type { ClientToServerEvents, ServerToClientEvents } from "./socket-events";

export type ChatSocket = Socket<ServerToClientEvents, ClientToServerEvents>;
export type ConnectionState = "connecting" | "connected" | "reconnecting" | "offline";

/** Where to go when the gateway says the session is gone. */
export const SIGN_IN_PATH = "/sign-in";
const AUTH_RETRY_MS = [2000, 5000];

let socket: ChatSocket | null = null;
let users = 0;
let state: ConnectionState = "connecting";
const listeners = new Set<() => void>();

function setState(next: ConnectionState) {
  if (next === state) return;
  state = next;
  for (const l of listeners) l();
}

type ConnectError = Error & { data?: { code?: string; retryable?: boolean } };

/** The singleton socket (created on first use, not connected: useSocket() connects it). */
export function getSocket(): ChatSocket {
  if (socket) return socket;
  const s: ChatSocket = io(process.env.NEXT_PUBLIC_SOCKET_URL || undefined, {
    withCredentials: true,
    autoConnect: false,
  });
  socket = s;
  s.on("connect", () => setState("connected"));
  s.on("disconnect", (reason) => {
    if (users === 0) return setState("connecting");
    setState(typeof navigator !== "undefined" && !navigator.onLine ? "offline" : "reconnecting");
    // socket.io-client does not reconnect after a server-side disconnect: the app closed this
    // user's sockets (a session of theirs ended). Try once; a session that is still valid
    // connects, an ended one gets "Invalid session" below.
    if (reason === "io server disconnect") s.connect();
  });
  s.io.on("reconnect_attempt", () => setState(navigator.onLine ? "reconnecting" : "offline"));
  s.io.on("reconnect_failed", () => setState("offline"));
  s.on("connect_error", (err: ConnectError) => {
    const code = err.data?.code;
    // A refusal by the gateway's middleware is final for socket.io-client: it does not retry.
    if (code === "INVALID_SESSION") {
      window.location.assign(SIGN_IN_PATH);
    } else if (code === "AUTH_UNAVAILABLE") {
      setState("reconnecting");
      const [min, spread] = AUTH_RETRY_MS;
      setTimeout(() => users > 0 && !s.connected && s.connect(), min + Math.random() * spread);
    } else if (!s.active) {
      setState("offline");
    } else {
      setState(navigator.onLine ? "reconnecting" : "offline");
    }
  });
  if (typeof window !== "undefined") {
    window.addEventListener("offline", () => !s.connected && setState("offline"));
    window.addEventListener("online", () => {
      if (s.connected || users === 0) return;
      setState("reconnecting");
      if (!s.active) s.connect();
    });
  }
  return s;
}

function subscribe(listener: () => void) {
  listeners.add(listener);
  return () => void listeners.delete(listener);
}

/** The connection state, re-rendering on change. */
export function useConnectionState(): ConnectionState {
  return useSyncExternalStore(subscribe, () => state, () => "connecting");
}

/** Connects while at least one mounted component uses it; disconnects when the last one unmounts. */
export function useSocket(): { socket: ChatSocket; connected: boolean } {
  const s = getSocket();
  const connection = useConnectionState();
  useEffect(() => {
    if (users++ === 0) {
      setState("connecting");
      s.connect();
    }
    return () => {
      if (--users === 0) s.disconnect();
    };
  }, [s]);
  return { socket: s, connected: connection === "connected" };
}

type Listeners = { [E in keyof ServerToClientEvents]?: ServerToClientEvents[E] } & { connect?: () => void };

/** Adds `listeners` to the socket; returns what removes them (an effect's cleanup). */
export function listen(socket: ChatSocket, listeners: Listeners): () => void {
  // socket.io's typed on/off do not take a union of event names: one untyped view for both.
  const s = socket as unknown as { on(e: string, f: (...a: unknown[]) => void): void; off(e: string, f: (...a: unknown[]) => void): void };
  const entries = Object.entries(listeners) as [string, (...a: unknown[]) => void][];
  for (const [event, fn] of entries) s.on(event, fn);
  return () => {
    for (const [event, fn] of entries) s.off(event, fn);
  };
}
