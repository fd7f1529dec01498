// Starts the Socket.IO server under test and offers small helpers for socket.io-client tests.
//   SIO_TARGET=gateway   (default) the Rust `conformance` example (cargo build --example conformance first)
//   SIO_TARGET=reference the Node reference server core/reference-server.mjs (socket.io 4.8.4)
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { before, after, afterEach } from "node:test";
import { io as ioClient } from "socket.io-client";
import { freePort, startProcess, stopProcess, cargoArtifact } from "../lib/procs.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));

export const targetName = process.env.SIO_TARGET || "gateway";

/** Spawns the selected target on a free port; resolves to { url, port, name, proc, stop }. */
export async function startTarget() {
  const port = await freePort();
  const env = { PORT: String(port), RUST_LOG: process.env.RUST_LOG || "warn" };
  let proc;
  if (targetName === "reference") {
    proc = await startProcess(process.execPath, [path.join(here, "reference-server.mjs")], {
      env,
      ready: /listening on/i,
      name: "reference-server",
      timeoutMs: 10000,
    });
  } else if (targetName === "gateway") {
    const bin = cargoArtifact("conformance", { example: true });
    if (!existsSync(bin)) {
      throw new Error(`${bin} not found: run \`cargo build --example conformance\` in the repository root first`);
    }
    proc = await startProcess(bin, [], { env, ready: /listening on/i, name: "conformance", timeoutMs: 20000 });
  } else {
    throw new Error(`unknown SIO_TARGET=${targetName} (expected "gateway" or "reference")`);
  }
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    name: targetName,
    proc,
    stop: () => stopProcess(proc),
  };
}

/** SIO_TRACE=1: print every Engine.IO packet a client sends (>) and receives (<) to stderr. */
export function traceManager(manager, label = "client") {
  if (!process.env.SIO_TRACE || manager.__traced) return;
  manager.__traced = true;
  const show = (d) => {
    if (d === undefined) return "";
    if (typeof d === "string") return JSON.stringify(d.length > 200 ? d.slice(0, 200) + "…" : d);
    return `<binary ${d.byteLength ?? d.length} bytes>`;
  };
  const hook = () => {
    const engine = manager.engine;
    if (!engine || engine.__traced) return;
    engine.__traced = true;
    const t0 = Date.now();
    const log = (...a) => process.stderr.write(`[trace ${label} +${Date.now() - t0}ms ${engine.transport?.name}] ${a.join(" ")}\n`);
    engine.on("packetCreate", (p) => log(">", p.type, show(p.data)));
    engine.on("packet", (p) => log("<", p.type, show(p.data)));
    engine.on("upgrade", (t) => log("upgraded to", t.name));
    engine.on("close", (reason, desc) => log("closed:", reason, desc?.message ?? desc?.description ?? ""));
  };
  const open = manager.open.bind(manager);
  manager.open = manager.connect = (fn) => {
    const r = open(fn);
    hook();
    return r;
  };
  hook();
}

/** Tracks the client sockets of a test file so afterEach can close all of them. */
export function clientPool(getUrl) {
  const sockets = new Set();
  return {
    /** io(url + nsp, opts) with test-friendly defaults: new manager, no reconnection, short timeouts. */
    connect(nsp = "/", opts = {}) {
      const socket = ioClient(getUrl() + nsp, {
        forceNew: true,
        reconnection: false,
        timeout: 3000,
        ...opts,
      });
      sockets.add(socket);
      traceManager(socket.io, nsp);
      return socket;
    },
    track(socket) {
      traceManager(socket.io, socket.nsp);
      sockets.add(socket);
      return socket;
    },
    closeAll() {
      for (const s of sockets) {
        s.io.reconnection(false);
        s.disconnect();
        s.io.engine?.close();
      }
      sockets.clear();
    },
  };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves with the argument array of the next `event` on `emitter`; rejects after `ms`. */
export function waitFor(emitter, event, ms = 3000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, on);
      reject(new Error(`timed out after ${ms} ms waiting for "${event}"`));
    }, ms);
    const on = (...args) => {
      clearTimeout(timer);
      resolve(args);
    };
    emitter.once(event, on);
  });
}

/** Resolves when the socket is connected (at once if it already is); rejects on connect_error or after `ms`. */
export function connected(socket, ms = 3000) {
  if (socket.connected) return Promise.resolve(socket);
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      clearTimeout(timer);
      socket.off("connect", onConnect);
      socket.off("connect_error", onError);
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`socket ${socket.nsp} not connected after ${ms} ms`));
    }, ms);
    const onConnect = () => {
      cleanup();
      resolve(socket);
    };
    const onError = (err) => {
      cleanup();
      reject(new Error(`connect_error on ${socket.nsp}: ${err?.message}`));
    };
    socket.on("connect", onConnect);
    socket.on("connect_error", onError);
  });
}

/** Collects `count` events of `event` (argument arrays, in arrival order); rejects after `ms` with what arrived. */
export function collect(emitter, event, count, ms = 5000) {
  return new Promise((resolve, reject) => {
    const got = [];
    const timer = setTimeout(() => {
      emitter.off(event, on);
      reject(new Error(`timed out after ${ms} ms: ${got.length}/${count} "${event}" events`));
    }, ms);
    const on = (...args) => {
      got.push(args);
      if (got.length === count) {
        clearTimeout(timer);
        emitter.off(event, on);
        resolve(got);
      }
    };
    emitter.on(event, on);
  });
}

/** Records every occurrence of `event` (for absence checks). */
export function record(emitter, event) {
  const seen = [];
  const on = (...args) => seen.push(args);
  emitter.on(event, on);
  return { seen, stop: () => emitter.off(event, on) };
}

/** Deep copy with every ArrayBuffer / typed array turned into a Buffer, for deepStrictEqual across binary types. */
export function normalizeBinary(value) {
  if (Buffer.isBuffer(value)) return Buffer.from(value);
  if (value instanceof ArrayBuffer) return Buffer.from(value);
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (Array.isArray(value)) return value.map(normalizeBinary);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalizeBinary(v)]));
  }
  return value;
}

/** The transport configurations most tests run under. */
export const TRANSPORTS = [
  { name: "websocket", opts: { transports: ["websocket"] } },
  { name: "polling", opts: { transports: ["polling"] } },
];

/**
 * Registers the file's hooks: one target started before its tests and stopped after them, and
 * the client pool closed after each test. Returns { pool, url() }.
 */
export function useTarget() {
  let target;
  const pool = clientPool(() => target.url);
  before(async () => {
    target = await startTarget();
  });
  after(async () => {
    pool.closeAll();
    await target?.stop();
  });
  afterEach(() => pool.closeAll());
  return { pool, url: () => target.url };
}
