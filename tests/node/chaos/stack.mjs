// The production shape for the fault matrix and the soak: Valkey (that can be frozen, restarted
// with its data or empty), the fixture app with bench users (that can be slowed, faulted or
// stopped), N gateways (that can be killed, frozen and restarted; one of them optionally in a
// network namespace so its link to Valkey can be cut silently) and real nginx configured from
// deploy/nginx.conf. Every process logs to a file in the run directory; every address is
// loopback or on veth pairs this module creates.
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fixtureServerPath } from "../lib/app.mjs";
import { startNginx } from "../lib/nginx.mjs";
import { cargoArtifact, freePort, repoRoot } from "../lib/procs.mjs";
import { valkeyServerPath, waitPing } from "../lib/valkey.mjs";
import { createNetns } from "./netns.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Creates (once, cached in .cache/chaos/) `n` bench users with sessions; resolves to {dbFile, usersFile}. */
export function ensureUsers(n) {
  const dir = path.join(repoRoot, ".cache/chaos", `users-${n}`);
  const dbFile = path.join(dir, "app.sqlite");
  const usersFile = path.join(dir, "users.jsonl");
  // better-auth sessions last 7 days: rebuild after 5.
  const fresh = fs.existsSync(usersFile) && Date.now() - fs.statSync(usersFile).mtimeMs < 5 * 86400e3;
  if (!fresh) {
    // bench/users.mjs imports better-auth and better-sqlite3 from tests/node's packages, as bench/run.sh links them.
    const link = path.join(repoRoot, "bench/node_modules");
    if (!fs.existsSync(link)) fs.symlinkSync("../tests/node/node_modules", link);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    execFileSync(process.execPath, [path.join(repoRoot, "bench/users.mjs"), "create", "--db", dbFile, "--users", String(n), "--out", usersFile], {
      stdio: ["ignore", "ignore", "inherit"],
    });
  }
  return { dbFile, usersFile };
}

// What this module started and has not seen exit: killed if the process exits first (an
// interrupted run must leave no Valkey, gateway or network namespace behind; lib/procs.mjs
// turns SIGINT/SIGTERM into an exit).
const alive = new Set();
const cleanups = new Set();
process.once("exit", () => {
  for (const child of alive) child.kill("SIGKILL");
  for (const fn of cleanups) fn();
});

/** A child process logging to `logFile`; resolves once a line matches `ready`. */
function spawnLogged(cmd, args, { env = {}, logFile, ready, timeoutMs = 30000, cwd }) {
  const fd = fs.openSync(logFile, "a");
  const child = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, stdio: ["ignore", fd, fd] });
  fs.closeSync(fd);
  alive.add(child);
  const proc = { child, pid: child.pid, exited: null, logFile };
  proc.done = new Promise((resolve) =>
    child.once("exit", (code, signal) => {
      alive.delete(child);
      resolve((proc.exited = { code, signal }));
    }),
  );
  if (!ready) return Promise.resolve(proc);
  return (async () => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const log = fs.readFileSync(logFile, "utf8");
      if (ready.test(log.slice(-20000))) return proc;
      if (proc.exited) throw new Error(`${cmd} exited (${JSON.stringify(proc.exited)}):\n${log.slice(-3000)}`);
      if (Date.now() > until) {
        child.kill("SIGKILL");
        throw new Error(`${cmd} not ready after ${timeoutMs} ms:\n${log.slice(-3000)}`);
      }
      await sleep(50);
    }
  })();
}

async function stopProc(proc, signal = "SIGTERM", graceMs = 10000) {
  if (!proc || proc.exited) return;
  try {
    process.kill(proc.pid, "SIGCONT");
  } catch {}
  proc.child.kill(signal);
  const t = setTimeout(() => proc.child.kill("SIGKILL"), graceMs);
  await proc.done;
  clearTimeout(t);
}

/** RSS (KiB) and open file descriptors of a process, or null when it is gone. */
export function procUsage(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
    const fds = fs.readdirSync(`/proc/${pid}/fd`).length;
    return { rssKiB: rss, fds };
  } catch {
    return null;
  }
}

/**
 * Starts the stack. `gateways` instances; `netnsGateway`: index of the gateway to run in its own
 * network namespace (null: none). `gatewayEnv` applies to every gateway. The binaries are
 * $CHAOS_CARGO_PROFILE's (scripts/test.sh: release), else $CARGO_PROFILE's.
 */
export async function startChaosStack({ dir, users, gateways = 2, gatewayEnv = {}, netnsGateway = null, nginxWorkers = 1, nginxConnections = 12000 }) {
  fs.mkdirSync(dir, { recursive: true });
  const started = [];
  const stack = { dir, gws: [], netns: null };
  const cleanup = async () => {
    for (const s of started.reverse()) await s().catch(() => {});
  };
  try {
    // ---- addresses
    let valkeyHosts = ["127.0.0.1"];
    let appHost = "127.0.0.1";
    if (netnsGateway !== null) {
      stack.netns = createNetns();
      cleanups.add(stack.netns.destroy);
      started.push(async () => {
        stack.netns.destroy();
        cleanups.delete(stack.netns.destroy);
      });
      valkeyHosts.push(stack.netns.valkeyHostIp);
      appHost = stack.netns.mainHostIp;
    }

    // ---- Valkey, persisting to its own directory (RDB on shutdown) so a restart can keep data
    const vdir = path.join(dir, "valkey");
    fs.mkdirSync(vdir, { recursive: true });
    const vport = await freePort();
    const valkey = {
      port: vport,
      url: `redis://127.0.0.1:${vport}`,
      proc: null,
      dir: vdir,
      async start() {
        this.proc = await spawnLogged(
          valkeyServerPath(),
          [
            "--port", String(vport), "--bind", ...valkeyHosts, "--protected-mode", "no",
            "--dir", vdir, "--dbfilename", "dump.rdb", "--save", "3600 1", "--appendonly", "no",
            "--maxclients", "20000", "--client-output-buffer-limit", "pubsub 64mb 16mb 60",
            "--loglevel", "notice", "--databases", "1",
          ],
          { logFile: path.join(dir, "valkey.log"), ready: /Ready to accept connections/ },
        );
        await waitPing(this.url, 10000);
      },
      pause() {
        process.kill(this.proc.pid, "SIGSTOP");
      },
      resume() {
        process.kill(this.proc.pid, "SIGCONT");
      },
      /** Restarts Valkey: `keepData` = a clean shutdown that saves, else a crash and an empty start. */
      async restart({ keepData, downMs = 0 }) {
        if (keepData) await stopProc(this.proc, "SIGTERM", 20000);
        else {
          this.proc.child.kill("SIGKILL");
          await this.proc.done;
          fs.rmSync(path.join(vdir, "dump.rdb"), { force: true });
        }
        if (downMs) await sleep(downMs);
        await this.start();
      },
    };
    await valkey.start();
    started.push(async () => {
      // The run's data is of no use afterwards.
      await stopProc(valkey.proc, "SIGKILL");
    });
    stack.valkey = valkey;

    // ---- the app on the bench users' database (a copy: the run writes messages into it)
    const appDb = path.join(dir, "app.sqlite");
    fs.copyFileSync(users.dbFile, appDb);
    const appPort = await freePort();
    const appEnv = { PORT: String(appPort), HOST: appHost, DB_FILE: appDb, FIXTURE_TEST_ROUTES: "1" };
    const app = {
      port: appPort,
      url: `http://${appHost}:${appPort}`,
      proc: null,
      // Ready once it listens: a restart during a storm is swamped at once, and waiting for an
      // answer of its own would only measure the storm.
      async start() {
        this.proc = await spawnLogged(process.execPath, [fixtureServerPath], {
          env: appEnv,
          logFile: path.join(dir, "app.log"),
          ready: /LISTENING http/,
          timeoutMs: 60000,
        });
      },
      stop() {
        return stopProc(this.proc);
      },
      get pid() {
        return this.proc?.pid;
      },
    };
    await app.start();
    started.push(() => app.stop());
    stack.app = app;

    // ---- gateways
    const bin = process.env.CHAOS_GATEWAY || cargoArtifact("socket-gateway", { profile: process.env.CHAOS_CARGO_PROFILE });
    if (!fs.existsSync(bin)) throw new Error(`${bin} not found: build it first`);
    for (let i = 0; i < gateways; i++) {
      const inNs = i === netnsGateway;
      const host = inNs ? stack.netns.mainNsIp : "127.0.0.1";
      const port = await freePort();
      const env = {
        RUST_LOG: undefined,
        PORT: String(port),
        GATEWAY_SERVER__HOST: host,
        APP_URL: app.url,
        REDIS_URL: inNs ? `redis://${stack.netns.valkeyHostIp}:${vport}` : valkey.url,
        GATEWAY_REDIS__ENABLED: "true",
        GATEWAY_SECURITY__ALLOWED_ORIGINS: "http://127.0.0.1",
        GATEWAY_LOG__LEVEL: process.env.CHAOS_GATEWAY_LOG || "warn,socket_gateway=info",
        ...gatewayEnv,
      };
      const gw = {
        index: i,
        name: `gw${i}`,
        host,
        port,
        addr: `${host}:${port}`,
        url: `http://${host}:${port}`,
        inNs,
        proc: null,
        logFile: path.join(dir, `gateway-${i}.log`),
        async start() {
          const [cmd, args] = inNs ? ["ip", ["netns", "exec", stack.netns.name, bin]] : [bin, []];
          this.proc = await spawnLogged(cmd, args, {
            env,
            cwd: path.join(repoRoot, "tests/node"),
            logFile: this.logFile,
            ready: new RegExp(`listening on[^\\n]*:${port}`),
          });
        },
        get pid() {
          return this.proc?.pid;
        },
        running() {
          return Boolean(this.proc && !this.proc.exited);
        },
        async kill() {
          this.proc.child.kill("SIGKILL");
          await this.proc.done;
        },
        freeze() {
          process.kill(this.proc.pid, "SIGSTOP");
        },
        thaw() {
          process.kill(this.proc.pid, "SIGCONT");
        },
        stop() {
          return stopProc(this.proc, "SIGTERM", 40000);
        },
        usage() {
          return this.proc && !this.proc.exited ? procUsage(this.proc.pid) : null;
        },
        /** Lines of its log that say it panicked. */
        panics() {
          try {
            return fs.readFileSync(this.logFile, "utf8").split("\n").filter((l) => /panicked at|RUST_BACKTRACE/.test(l));
          } catch {
            return [];
          }
        },
      };
      await gw.start();
      started.push(() => gw.stop());
      stack.gws.push(gw);
    }

    // ---- nginx, configured from deploy/nginx.conf
    const nginx = await startNginx({
      gateways: stack.gws.map((g) => g.addr),
      appPort: `${appHost}:${appPort}`,
      workers: nginxWorkers,
      workerConnections: nginxConnections,
    });
    started.push(() => nginx.stop());
    stack.nginx = nginx;
    stack.target = `127.0.0.1:${nginx.port}`;
    stack.stop = cleanup;
    return stack;
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** Counts nginx access-log lines by status since byte `from` (returns {counts, end}). */
export function accessStatuses(nginx, from = 0) {
  const log = nginx.accessLog();
  const counts = {};
  for (const line of log.slice(from).split("\n")) {
    const m = /" (\d{3}) /.exec(line);
    if (m) counts[m[1]] = (counts[m[1]] ?? 0) + 1;
  }
  return { counts, end: log.length };
}
