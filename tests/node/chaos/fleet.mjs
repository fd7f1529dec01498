// The client side of the fault matrix and the soak: `bench-loadgen worker` processes in chaos
// mode (bench/src/bin/loadgen/chaos.rs), each holding the sockets i with i mod W = k, driven over
// their stdin/stdout (one JSON line per command, one per answer, in order). A process may have
// at most 20,000 open files here, so sockets are spread over several workers.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { cargoArtifact } from "../lib/procs.mjs";

/** Sockets one worker holds at most (open files: one per socket, plus a margin). */
export const PER_WORKER = 15000;

export function loadgenPath() {
  const bin = process.env.CHAOS_LOADGEN || cargoArtifact("bench-loadgen", { profile: process.env.CHAOS_CARGO_PROFILE });
  if (!existsSync(bin)) throw new Error(`${bin} not found: run \`cargo build -p socket-gateway-bench\` first`);
  return bin;
}

class Worker {
  constructor(args, name) {
    this.child = spawn(loadgenPath(), args, { stdio: ["pipe", "pipe", "pipe"] });
    this.name = name;
    this.waiting = [];
    this.stderr = [];
    this.exited = null;
    readline.createInterface({ input: this.child.stdout }).on("line", (line) => {
      const w = this.waiting.shift();
      if (!w) return;
      try {
        const v = JSON.parse(line);
        if (v.error) w.reject(new Error(`${name}: ${v.error}`));
        else w.resolve(v);
      } catch (err) {
        w.reject(err);
      }
    });
    this.child.stderr.on("data", (d) => {
      this.stderr.push(d.toString());
      if (this.stderr.length > 50) this.stderr.shift();
    });
    this.child.on("exit", (code, signal) => {
      this.exited = { code, signal };
      for (const w of this.waiting.splice(0)) w.reject(new Error(`${name} exited (${code ?? signal}): ${this.stderr.join("").slice(-2000)}`));
    });
  }

  call(cmd, timeoutMs = 120000) {
    if (this.exited) return Promise.reject(new Error(`${this.name} has exited`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no answer to ${cmd.cmd} within ${timeoutMs} ms`)), timeoutMs);
      this.waiting.push({
        resolve: (v) => (clearTimeout(timer), resolve(v)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      this.child.stdin.write(`${JSON.stringify(cmd)}\n`);
    });
  }
}

/**
 * Starts the workers for `sockets` sockets of the users in `usersFile` (JSON lines {cookie, userId,
 * rooms}), connecting to `target` (host:port, nginx), recording into `recordDir/records-<k>.txt`.
 * `sendEveryS`: sockets that send (one in `sendersOneIn`) send a checked message about that often.
 */
export async function startFleet({
  sockets,
  usersFile,
  targets,
  recordDir,
  perUser = 1,
  inflight = 200,
  sendEveryS = 0,
  sendersOneIn = 10,
  roomPrefix = "channel:f",
  roomCount = 100,
  connectTimeoutS = 20,
  workers,
}) {
  const n = workers ?? Math.max(1, Math.ceil(sockets / PER_WORKER));
  const list = [];
  const files = [];
  for (let k = 0; k < n; k++) {
    const file = path.join(recordDir, `records-${k}.txt`);
    files.push(file);
    const args = [
      "worker",
      "--worker", `${k}/${n}`,
      "--users", usersFile,
      "--targets", targets.join(","),
      "--per-user", String(perUser),
      "--inflight", String(Math.max(1, Math.ceil(inflight / n))),
      "--record", file,
      "--send-every-s", String(sendEveryS),
      "--senders-one-in", String(sendersOneIn),
      "--room-prefix", roomPrefix,
      "--room-count", String(roomCount),
      "--connect-timeout-s", String(connectTimeoutS),
    ];
    list.push(new Worker(args, `loadgen-worker-${k}`));
  }
  const all = (cmd, timeoutMs) => Promise.all(list.map((w) => w.call(cmd, timeoutMs)));
  await all({ cmd: "stats" });
  return {
    sockets,
    files,
    pids: () => list.map((w) => w.child.pid),
    /** Starts sockets [from, to) (arrivals spread over `spreadS`). */
    connect: (from, to, spreadS = 0) => all({ cmd: "chaos", from, to, spread_s: spreadS }),
    /** Starts the sockets `slots` again (after they left): new tabs of the same users. */
    start: (slots, spreadS = 0) => all({ cmd: "chaos", slots, spread_s: spreadS }),
    /** Resets the TCP connection of every socket (or of `slots`): they reconnect and recover. */
    drop: (slots) => all(slots ? { cmd: "drop", slots } : { cmd: "drop", all: true }),
    /** Closes `slots` like socket.close() (or all): they stop. */
    leave: (slots) => all(slots ? { cmd: "leave", slots } : { cmd: "leave", all: true }),
    sending: (on) => all({ cmd: "sending", on }),
    flush: () => all({ cmd: "flush" }),
    /** Counters summed over the workers. */
    async stats() {
      const answers = await all({ cmd: "stats" });
      const s = { connected: 0, gave_up: 0, retries: 0, failures: {}, chaos: {} };
      for (const a of answers) {
        s.connected += a.connected;
        s.gave_up += a.gave_up;
        s.retries += a.retries;
        for (const [k, v] of Object.entries(a.failures ?? {})) s.failures[k] = (s.failures[k] ?? 0) + v;
        for (const [k, v] of Object.entries(a.chaos ?? {})) {
          s.chaos[k] = k === "max_latency_ms" ? Math.max(s.chaos[k] ?? 0, v) : (s.chaos[k] ?? 0) + v;
        }
      }
      return s;
    },
    /** Closes every socket, flushes the records and ends the workers. */
    async stop() {
      await Promise.allSettled(list.map((w) => w.call({ cmd: "close" }, 30000)));
      for (const w of list) {
        if (!w.exited) w.child.stdin.write(`${JSON.stringify({ cmd: "exit" })}\n`);
      }
      await Promise.all(
        list.map(
          (w) =>
            new Promise((resolve) => {
              if (w.exited) return resolve();
              const t = setTimeout(() => w.child.kill("SIGKILL"), 10000);
              w.child.once("exit", () => (clearTimeout(t), resolve()));
            }),
        ),
      );
    },
  };
}

/** Polls `fleet.stats()` until `pred(stats)` or `ms` elapse; resolves to {ok, stats, ms}. */
export async function waitFleet(fleet, pred, { ms = 60000, everyMs = 100 } = {}) {
  const t0 = Date.now();
  let s;
  for (;;) {
    s = await fleet.stats();
    if (pred(s)) return { ok: true, stats: s, ms: Date.now() - t0 };
    if (Date.now() - t0 > ms) return { ok: false, stats: s, ms: Date.now() - t0 };
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
