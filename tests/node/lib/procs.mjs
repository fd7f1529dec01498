// Process helpers for the Node tests: free loopback ports, child servers that announce readiness,
// and a cleanup that stops everything a test started (also on crash or Ctrl-C).
import { spawn } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

/** A free TCP port on 127.0.0.1 (the kernel picks it; closed again before returning). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const running = new Set();

/**
 * Spawns `cmd args` and resolves once a line of its stdout or stderr matches `ready`
 * (a RegExp), or rejects after `timeoutMs`. The child's output is kept for diagnostics.
 */
export function startProcess(cmd, args, { env = {}, ready, timeoutMs = 20000, name = path.basename(cmd), cwd } = {}) {
  const child = spawn(cmd, args, {
    cwd,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const proc = { child, name, output: [], match: null, exited: null };
  running.add(proc);
  child.on("exit", (code, signal) => {
    proc.exited = { code, signal };
    running.delete(proc);
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`${name} not ready after ${timeoutMs} ms:\n${proc.output.join("")}`));
      stopProcess(proc);
    }, timeoutMs);
    const onData = (chunk) => {
      const text = chunk.toString();
      proc.output.push(text);
      if (proc.output.length > 500) proc.output.splice(0, proc.output.length - 500);
      if (!proc.match && ready) {
        const m = proc.output.join("").match(ready);
        if (m) {
          proc.match = m;
          clearTimeout(timer);
          resolve(proc);
        }
      }
      if (process.env.TEST_VERBOSE) process.stderr.write(`[${name}] ${text}`);
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code, signal) => {
      if (!proc.match) {
        clearTimeout(timer);
        reject(new Error(`${name} exited (${code ?? signal}) before ready:\n${proc.output.join("")}`));
      }
    });
    if (!ready) {
      clearTimeout(timer);
      resolve(proc);
    }
  });
}

/** Stops one process: `signal` first, SIGKILL after `graceMs`. Resolves when it has exited. */
export function stopProcess(proc, { signal = "SIGTERM", graceMs = 5000 } = {}) {
  if (!proc || proc.exited) return Promise.resolve(proc?.exited);
  return new Promise((resolve) => {
    const kill = setTimeout(() => proc.child.kill("SIGKILL"), graceMs);
    proc.child.once("exit", (code, sig) => {
      clearTimeout(kill);
      resolve({ code, signal: sig });
    });
    proc.child.kill(signal);
  });
}

/** Stops every process this module started and that is still running. */
export async function stopAll() {
  await Promise.all([...running].map((p) => stopProcess(p)));
}

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.once(sig, () => {
    for (const p of running) p.child.kill("SIGKILL");
    process.exit(130);
  });
}
process.once("exit", () => {
  for (const p of running) p.child.kill("SIGKILL");
});

/**
 * Path of a cargo-built binary or example: `profile`'s, else CARGO_PROFILE's, else debug.
 */
export function cargoArtifact(name, { example = false, profile = null } = {}) {
  profile = profile || process.env.CARGO_PROFILE || "debug";
  const dir = process.env.CARGO_TARGET_DIR || path.join(repoRoot, "target");
  return path.join(dir, profile, example ? "examples" : "", name);
}
