// A real Prometheus for the operations tests (Debian's `prometheus` package, installed by
// `WITH_PROMETHEUS=1 scripts/setup.sh`), configured from the deploy kit itself: the test config is
// derived from deploy/prometheus/ by changing only the targets and the time scale, so the files
// an operator installs are the files under test. Also: the Grafana dashboard's queries, extracted
// with its template variables substituted, and a watcher of the alerts' states.
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import YAML from "yaml";
import { freePort, repoRoot, startProcess, stopProcess } from "./procs.mjs";

export const deployDir = path.join(repoRoot, "deploy");
export const prometheusDir = path.join(deployDir, "prometheus");

const bin = (name) => process.env[`${name.toUpperCase()}_BIN`] || `/usr/bin/${name}`;
export const prometheusBin = bin("prometheus");
export const promtoolBin = bin("promtool");

/** Why the Prometheus tests cannot run here (undefined when they can). */
export function missingPrometheus() {
  const missing = [prometheusBin, promtoolBin].filter((b) => !existsSync(b));
  if (missing.length === 0) return undefined;
  return `${missing.join(", ")} not found: run WITH_PROMETHEUS=1 bash scripts/setup.sh`;
}

/** Runs promtool with `args` in `cwd`; resolves to its output, rejects with it on failure. */
export async function promtool(args, { cwd = prometheusDir } = {}) {
  try {
    const { stdout, stderr } = await promisify(execFile)(promtoolBin, args, { cwd, timeout: 60000 });
    return stdout + stderr;
  } catch (err) {
    throw new Error(`promtool ${args.join(" ")} failed:\n${err.stdout ?? ""}${err.stderr ?? ""}${err.message}`);
  }
}

// ---- durations -------------------------------------------------------------------------------

const UNIT_MS = { ms: 1, s: 1000, m: 60000, h: 3600000, d: 86400000, w: 604800000, y: 31536000000 };

/** A Prometheus duration ("1m", "1h30m", "0m") in milliseconds; throws on anything else. */
export function parseDuration(text) {
  const s = String(text);
  const re = /(\d+)(ms|s|m|h|d|w|y)/gy;
  let ms = 0;
  let m;
  let end = 0;
  while ((m = re.exec(s))) {
    ms += Number(m[1]) * UNIT_MS[m[2]];
    end = re.lastIndex;
  }
  if (end === 0 || end !== s.length) throw new Error(`not a Prometheus duration: ${JSON.stringify(s)}`);
  return ms;
}

/** Milliseconds as a Prometheus duration: whole seconds when possible, else milliseconds. */
export function formatDuration(ms) {
  const whole = Math.round(ms);
  return whole % 1000 === 0 ? `${whole / 1000}s` : `${whole}ms`;
}

/**
 * `expr` with every range and subquery duration (`[5m]`, `[1h:1m]`) divided by `factor`. An
 * `offset` or `@` modifier is refused: its meaning would change with the time scale.
 */
export function scaleRanges(expr, factor) {
  if (/\boffset\b|@\s*\d/.test(expr)) throw new Error(`cannot rescale an expression with offset/@: ${expr}`);
  return expr.replace(/\[([0-9a-z]+)(?::([0-9a-z]*))?\]/g, (_, range, step) => {
    const r = formatDuration(parseDuration(range) / factor);
    if (step === undefined) return `[${r}]`;
    return step === "" ? `[${r}:]` : `[${r}:${formatDuration(parseDuration(step) / factor)}]`;
  });
}

// ---- the derived configuration ---------------------------------------------------------------

/**
 * The shipped configuration, for a test: `interval` (e.g. "1s") as the scrape and evaluation
 * interval, the static job's targets replaced by `targets`, and in the rules every `for:` and
 * every range divided by `timeScale` (a 5m window becomes 10s at 30). Nothing else changes:
 * jobs, paths, expressions, thresholds, labels and annotations are the shipped ones.
 * Returns {config, rules} as objects (the YAML files' content).
 */
export function deriveConfig({ targets, interval, timeScale }) {
  const config = YAML.parse(readFileSync(path.join(prometheusDir, "prometheus.yml"), "utf8"));
  config.global = { ...config.global, scrape_interval: interval, evaluation_interval: interval };
  const statics = config.scrape_configs.filter((job) => job.static_configs);
  if (statics.length !== 1 || statics[0].static_configs.length !== 1) {
    throw new Error(`expected one static job with one target group in prometheus.yml, found ${statics.length}`);
  }
  statics[0].static_configs[0].targets = targets;
  if (config.rule_files?.length !== 1) throw new Error("expected one rule file in prometheus.yml");
  const rules = YAML.parse(readFileSync(path.join(prometheusDir, config.rule_files[0]), "utf8"));
  config.rule_files = ["alerts.yml"];
  for (const group of rules.groups) {
    if (group.interval) group.interval = formatDuration(parseDuration(group.interval) / timeScale);
    for (const rule of group.rules) {
      rule.expr = scaleRanges(String(rule.expr), timeScale);
      if (rule.for !== undefined) rule.for = formatDuration(parseDuration(rule.for) / timeScale);
    }
  }
  return { config, rules };
}

/**
 * Starts Prometheus on a free port of 127.0.0.1 with `config` and `rules` (objects, written as
 * YAML into a fresh directory that also holds its storage), after `promtool check config` on them.
 * Resolves to {url, dir, proc, query(), queryRange(), alerts(), targets(), stop()}.
 */
export async function startPrometheus({ config, rules }) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "prometheus-test-"));
  const port = await freePort();
  let proc;
  try {
    writeFileSync(path.join(dir, "prometheus.yml"), YAML.stringify(config));
    if (rules) writeFileSync(path.join(dir, "alerts.yml"), YAML.stringify(rules));
    await promtool(["check", "config", "prometheus.yml"], { cwd: dir });
    proc = await startProcess(
      prometheusBin,
      [
        `--config.file=${path.join(dir, "prometheus.yml")}`,
        `--storage.tsdb.path=${path.join(dir, "data")}`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      { cwd: dir, ready: /Server is ready to receive web requests/, timeoutMs: 30000, name: "prometheus" },
    );
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const url = `http://127.0.0.1:${port}`;
  const api = async (p, params = {}) => {
    const res = await fetch(`${url}/api/v1/${p}`, {
      method: "POST",
      body: new URLSearchParams(params),
      signal: AbortSignal.timeout(10000),
    });
    const body = await res.json();
    if (body.status !== "success") throw new Error(`${p} ${JSON.stringify(params)}: ${body.errorType} ${body.error}`);
    return body.data;
  };
  return {
    url,
    dir,
    proc,
    /** Instant query: the result vector. */
    query: async (expr) => (await api("query", { query: expr })).result,
    /** Range query over [start, end] (seconds) at `step` seconds: the result matrix. */
    queryRange: async (expr, start, end, step) => (await api("query_range", { query: expr, start, end, step })).result,
    /** Active alerts: [{labels, annotations, state: pending|firing, activeAt, value}]. */
    alerts: async () => (await (await fetch(`${url}/api/v1/alerts`, { signal: AbortSignal.timeout(10000) })).json()).data.alerts,
    targets: async () => (await (await fetch(`${url}/api/v1/targets`, { signal: AbortSignal.timeout(10000) })).json()).data,
    output: () => proc.output.join(""),
    async stop() {
      await stopProcess(proc);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---- the Grafana dashboard -------------------------------------------------------------------

/**
 * Every query of the dashboard (panels inside rows included) as {panel, refId, expr}, with the
 * template variables substituted as Grafana would with their current values: a multi-value
 * variable set to "All" becomes its allValue, `$__rate_interval` becomes `rateInterval` (Grafana:
 * four scrape intervals at this range), `$__interval` becomes `interval`. Throws on a variable it
 * cannot substitute, so a new one cannot slip through unseen.
 */
export function dashboardQueries(dashboard, { rateInterval, interval }) {
  const values = { __rate_interval: rateInterval, __interval: interval };
  for (const v of dashboard.templating?.list ?? []) {
    if (v.type === "datasource") continue;
    const current = v.current?.value;
    const isAll = current === "$__all" || (Array.isArray(current) && current.includes("$__all"));
    if (isAll && v.allValue !== undefined) values[v.name] = v.allValue;
    else if (typeof current === "string" && !isAll) values[v.name] = current;
    else throw new Error(`dashboard variable ${v.name}: no value to substitute (current ${JSON.stringify(v.current)})`);
  }
  const queries = [];
  const walk = (panels) => {
    for (const p of panels ?? []) {
      for (const t of p.targets ?? []) {
        if (!t.expr) continue;
        const expr = t.expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]/g, (whole, a, b, c) => {
          const name = a ?? b ?? c;
          if (!(name in values)) throw new Error(`panel "${p.title}" ${t.refId}: unknown variable ${whole}`);
          return values[name];
        });
        queries.push({ panel: p.title, refId: t.refId, expr });
      }
      walk(p.panels);
    }
  };
  walk(dashboard.panels);
  return queries;
}

export function loadDashboard() {
  return JSON.parse(readFileSync(path.join(deployDir, "grafana/dashboard.json"), "utf8"));
}

// ---- alerts over time ------------------------------------------------------------------------

/** An alert's identity: its name and labels (severity aside). */
export function alertKey(labels) {
  const { severity, ...rest } = labels;
  return JSON.stringify(Object.entries(rest).sort());
}

/**
 * Polls Prometheus' active alerts every `everyMs` and keeps, per alert (name + labels), when it
 * was first seen pending and firing and when it was last seen; an alert that was active and is
 * gone is resolved (its `resolvedAt` set; a later activation starts a new record).
 */
export function watchAlerts(prom, { everyMs = 250 } = {}) {
  const records = [];
  const open = new Map();
  let stopped = false;
  let lastError;
  const poll = async () => {
    while (!stopped) {
      try {
        const now = Date.now();
        const seen = new Set();
        for (const a of await prom.alerts()) {
          const key = alertKey(a.labels);
          seen.add(key);
          let r = open.get(key);
          if (!r) {
            r = { key, labels: a.labels, annotations: a.annotations, pendingAt: undefined, firingAt: undefined, resolvedAt: undefined };
            records.push(r);
            open.set(key, r);
          }
          if (a.state === "pending" && r.pendingAt === undefined) r.pendingAt = now;
          if (a.state === "firing" && r.firingAt === undefined) {
            r.firingAt = now;
            r.annotations = a.annotations;
          }
        }
        for (const [key, r] of open) {
          if (!seen.has(key)) {
            r.resolvedAt = now;
            open.delete(key);
          }
        }
      } catch (err) {
        lastError = err;
      }
      await new Promise((res) => setTimeout(res, everyMs));
    }
  };
  const done = poll();
  return {
    records,
    /** The latest record of an alert whose labels include all of `labels`. */
    find: (labels) => [...records].reverse().find((r) => Object.entries(labels).every(([k, v]) => r.labels[k] === v)),
    active: () => [...open.values()],
    lastError: () => lastError,
    async stop() {
      stopped = true;
      await done;
    },
  };
}
