// Real nginx in front of gateways and the fixture app, configured from deploy/nginx.conf itself:
// the two upstreams' server lines and the `listen` lines are replaced by the real loopback ports,
// and the file is wrapped in a main configuration whose pid, logs and temp files live in a temp
// prefix. nginx runs in the foreground (daemon off) as the current user.
//
// Library:  startNginx({gateways: [port | "host:port"...], appPort, port?, workers?, workerConnections?})
//           → {url, port, prefix, proc, stop()}
// CLI (used by scripts/stack.sh):
//   node tests/node/lib/nginx.mjs render --prefix DIR --listen PORT --app PORT --gateway PORT [--gateway PORT...]
//   prints the whole nginx.conf on stdout.
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, startProcess, stopProcess, repoRoot } from "./procs.mjs";

export const deployConfPath = path.join(repoRoot, "deploy/nginx.conf");

/** The nginx binary: $NGINX, else /usr/sbin/nginx, else `nginx` on PATH; throws a clear error when absent. */
export function nginxBinary() {
  const candidates = [process.env.NGINX, "/usr/sbin/nginx", ...(process.env.PATH || "").split(":").map((d) => path.join(d, "nginx"))];
  for (const c of candidates) {
    if (!c) continue;
    try {
      fs.accessSync(c, fs.constants.X_OK);
      return c;
    } catch {}
  }
  throw new Error("nginx is not installed (no $NGINX, /usr/sbin/nginx or nginx on PATH): run `WITH_NGINX=1 bash scripts/setup.sh` (Debian package nginx-light)");
}

/** Replaces every `server ...;` line inside `upstream NAME { ... }` with `servers` (lines). */
function replaceUpstream(conf, name, servers) {
  const re = new RegExp(`(upstream\\s+${name}\\s*\\{)([^}]*)(\\})`);
  const m = re.exec(conf);
  if (!m) throw new Error(`deploy/nginx.conf has no "upstream ${name} { ... }" block`);
  const body = m[2].split("\n");
  const firstServer = body.findIndex((l) => /^\s*server\s/.test(l));
  if (firstServer < 0) throw new Error(`upstream ${name} has no server line`);
  const indent = /^(\s*)/.exec(body[firstServer])[1];
  const kept = body.filter((l) => !/^\s*server\s/.test(l));
  // Keep the first server line's options (max_fails, ...) for every replacement.
  const opts = /^\s*server\s+\S+?(\s[^;]*)?;/.exec(body[firstServer])[1] ?? "";
  kept.splice(firstServer, 0, ...servers.map((s) => `${indent}server ${s}${opts};`));
  return conf.slice(0, m.index) + m[1] + kept.join("\n") + m[3] + conf.slice(m.index + m[0].length);
}

/** An upstream address: a port on 127.0.0.1, or "host:port" as is. */
const upstreamAddr = (g) => (typeof g === "number" || /^\d+$/.test(String(g)) ? `127.0.0.1:${g}` : String(g));

/**
 * The site part: deploy/nginx.conf with `gateways` (ports on 127.0.0.1, or "host:port") in upstream socket_gateway,
 * `appPort` in upstream next_app, and `listen 127.0.0.1:<listen>` instead of its listen lines.
 */
export function renderSite({ gateways, appPort, listen, source = fs.readFileSync(deployConfPath, "utf8") }) {
  if (!gateways?.length) throw new Error("renderSite: no gateway ports");
  let conf = replaceUpstream(source, "socket_gateway", gateways.map(upstreamAddr));
  conf = replaceUpstream(conf, "next_app", [upstreamAddr(appPort)]);
  const listenRe = /^(\s*)listen\s+[^;]+;[^\n]*\n/gm;
  let first = true;
  conf = conf.replace(listenRe, (_all, indent) => {
    if (!first) return "";
    first = false;
    return `${indent}listen 127.0.0.1:${listen};\n`;
  });
  if (first) throw new Error("deploy/nginx.conf has no listen line");
  return conf;
}

/**
 * A whole nginx.conf around the rendered site, with everything nginx writes under `prefix`.
 * `workers` processes of `workerConnections` each (a proxied WebSocket holds two connections;
 * each worker may have at most the process's open-files limit).
 */
export function renderMain({ prefix, site, workers = 1, workerConnections = 4096 }) {
  const p = (f) => path.join(prefix, f);
  const user = process.getuid?.() === 0 ? "user root;\n" : "";
  return `# Generated from deploy/nginx.conf by tests/node/lib/nginx.mjs; do not edit.
${user}worker_processes ${workers};
daemon off;
pid ${p("nginx.pid")};
error_log stderr warn;

events {
    worker_connections ${workerConnections};
}

http {
    default_type application/octet-stream;
    log_format upstream '$remote_addr "$request" $status $body_bytes_sent upstream=$upstream_addr rt=$request_time';
    access_log ${p("access.log")} upstream;
    client_body_temp_path ${p("tmp/body")};
    proxy_temp_path ${p("tmp/proxy")};
    fastcgi_temp_path ${p("tmp/fastcgi")};
    uwsgi_temp_path ${p("tmp/uwsgi")};
    scgi_temp_path ${p("tmp/scgi")};

${site}
}
`;
}

/** Writes prefix/nginx.conf (and prefix/tmp); returns the config's path. */
export function writeConfig({ prefix, gateways, appPort, listen, workers, workerConnections }) {
  fs.mkdirSync(path.join(prefix, "tmp"), { recursive: true });
  const file = path.join(prefix, "nginx.conf");
  fs.writeFileSync(file, renderMain({ prefix, site: renderSite({ gateways, appPort, listen }), workers, workerConnections }));
  return file;
}

function tcpReady(port, timeoutMs, proc) {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (proc.exited) return reject(new Error(`nginx exited (${JSON.stringify(proc.exited)}):\n${proc.output.join("")}`));
      const s = net.connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve();
      });
      s.once("error", () => {
        s.destroy();
        if (Date.now() > deadline) return reject(new Error(`nginx not listening on ${port} after ${timeoutMs} ms:\n${proc.output.join("")}`));
        setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

/**
 * Starts nginx on 127.0.0.1 (`port`, default a free one) proxying /socket.io/ to `gateways` (ports)
 * and everything else to `appPort`. Resolves to {url, port, prefix, proc, output(), accessLog(), stop()}.
 */
export async function startNginx({ gateways, appPort, port, timeoutMs = 10000, workers, workerConnections }) {
  const bin = nginxBinary();
  const listen = port ?? (await freePort());
  const prefix = fs.mkdtempSync(path.join(os.tmpdir(), "nginx-test-"));
  const conf = writeConfig({ prefix, gateways, appPort, listen, workers, workerConnections });
  let proc;
  try {
    proc = await startProcess(bin, ["-p", prefix, "-e", "stderr", "-c", conf], { name: "nginx" });
    await tcpReady(listen, timeoutMs, proc);
  } catch (err) {
    if (proc) await stopProcess(proc);
    fs.rmSync(prefix, { recursive: true, force: true });
    throw err;
  }
  return {
    url: `http://127.0.0.1:${listen}`,
    port: listen,
    prefix,
    proc,
    output: () => proc.output.join(""),
    /** nginx's own process id (the master). */
    pid: proc.child.pid,
    accessLog: () => {
      try {
        return fs.readFileSync(path.join(prefix, "access.log"), "utf8");
      } catch {
        return "";
      }
    },
    async stop() {
      // SIGQUIT: graceful (waits for open requests); SIGKILL after the grace period.
      await stopProcess(proc, { signal: "SIGQUIT", graceMs: 3000 });
      fs.rmSync(prefix, { recursive: true, force: true });
    },
  };
}

// ---- CLI
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [cmd, ...rest] = process.argv.slice(2);
  const opts = { gateways: [] };
  for (let i = 0; i < rest.length; i += 2) {
    const [k, v] = [rest[i], rest[i + 1]];
    if (v === undefined) throw new Error(`missing value for ${k}`);
    if (k === "--gateway") opts.gateways.push(Number(v));
    else if (k === "--app") opts.appPort = Number(v);
    else if (k === "--listen") opts.listen = Number(v);
    else if (k === "--prefix") opts.prefix = v;
    else throw new Error(`unknown option ${k}`);
  }
  if (cmd !== "render" || !opts.prefix || !opts.appPort || !opts.listen || !opts.gateways.length) {
    process.stderr.write("usage: node nginx.mjs render --prefix DIR --listen PORT --app PORT --gateway PORT [--gateway PORT...]\n");
    process.exit(2);
  }
  fs.mkdirSync(path.join(opts.prefix, "tmp"), { recursive: true });
  process.stdout.write(renderMain({ prefix: opts.prefix, site: renderSite(opts) }));
}
