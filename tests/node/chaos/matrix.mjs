// The fault matrix (issue 13, RELIABILITY.md): one stack under load, every fault of faults.mjs
// one after another, then the checker over everything the clients recorded. Writes
// results.json and table.md into the output folder and prints the table.
//
//   node tests/node/chaos/matrix.mjs [--sockets 5000] [--faults id,id] [--small] [--out DIR]
//                                     [--publish-rate 40] [--send-every-s 5]
//
// scripts/chaos.sh runs it at full size on release builds; tests/node/chaos/matrix.test.mjs runs
// a reduced one in CI.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { repoRoot } from "../lib/procs.mjs";
import { faults as allFaults, stormSlots } from "./faults.mjs";
import { netnsAvailable } from "./netns.mjs";
import { finishRun, runFault, startRun, stopRun } from "./run.mjs";

const isControl = (slot) => slot % 10 === 9;

/** What a fault's numbers must be (its `expect`); returns the list of violations. */
export function verdict(row) {
  const e = row.expect ?? {};
  const bad = [];
  const c = row.check ?? {};
  if (!row.ok) bad.push(`${row.notBack} sockets not back`);
  if (c.lost > 0) bad.push(`${c.lost} logged messages lost`);
  if (c.lostEverywhere > 0) bad.push(`${c.lostEverywhere} confirmed messages never delivered`);
  if (c.duplicates > 0) bad.push(`${c.duplicates} duplicates`);
  if (c.reordered + c.leaked + c.offsetConflicts > 0) bad.push(`${c.reordered} reordered, ${c.leaked} leaked, ${c.offsetConflicts} conflicts`);
  if (e.fresh === 0 && c.sessions?.fresh > 0) bad.push(`${c.sessions.fresh} fresh sessions`);
  if (e.reconnects === 0 && row.reconnected > 0) bad.push(`${row.reconnected} reconnects`);
  if (e.controlDisconnects === 0 && c.controlDisconnects > 0) bad.push(`${c.controlDisconnects} control-group disconnects`);
  const inFlight = Math.max(row.appInFlightMax?.session ?? 0, row.appInFlightMax?.memberships ?? 0);
  if (e.appInFlightMax !== undefined && inFlight > e.appInFlightMax) bad.push(`${inFlight} app calls in flight for one session`);
  if (row.panics > 0) bad.push(`${row.panics} panics`);
  return bad;
}

/**
 * Runs the matrix. `ids`: the faults to run (default all; `partition` is skipped without network
 * namespaces). Resolves to {rows, check, skipped, dir}.
 */
export async function runMatrix({ sockets = 5000, small = false, ids = null, dir, publishRate = 40, sendEveryS = 5, log = console.error }) {
  const netns = netnsAvailable();
  // In the order asked for (a fault may come twice), or all in their own order.
  const defs = allFaults({ small });
  const list = ids
    ? ids.map((id) => {
        const f = defs.find((d) => d.id === id);
        if (!f) throw new Error(`unknown fault ${id}: one of ${defs.map((d) => d.id).join(", ")}`);
        return f;
      })
    : defs;
  const skipped = [];
  const run = list.filter((f) => {
    if (f.needsNetns && !netns) {
      skipped.push({ id: f.id, why: "network namespaces are not available (needs root and iproute2)" });
      return false;
    }
    return true;
  });
  const ctx = await startRun({
    dir,
    sockets,
    publishRate,
    sendEveryS,
    // The gateway whose Valkey link is cut runs in its own network namespace.
    netnsGateway: run.some((f) => f.needsNetns) ? 1 : null,
    log,
  });
  try {
    const seen = new Map();
    for (const f of run) {
      // A fault run twice gets a numbered phase name (phases are told apart by name).
      const n = (seen.get(f.id) ?? 0) + 1;
      seen.set(f.id, n);
      const name = n > 1 ? `${f.name} (${n})` : f.name;
      const row = await runFault(ctx, { ...f, name, limitMs: Math.max(120000, sockets * 30) });
      row.id = f.id;
      row.storm = Boolean(f.storm);
    }
    const { check } = await finishRun(ctx, { control: isControl });
    for (const row of ctx.rows) {
      row.check = check.phases.find((p) => p.name === row.name);
      row.violations = verdict(row);
    }
    const result = {
      commit: gitCommit(),
      date: new Date().toISOString(),
      machine: machine(),
      sockets,
      stormSockets: stormSlots(ctx).length,
      publishRate,
      sendEveryS,
      rows: ctx.rows,
      check: { ok: check.ok, total: check.total },
      skipped,
    };
    fs.writeFileSync(path.join(dir, "results.json"), JSON.stringify(result, null, 2));
    fs.writeFileSync(path.join(dir, "table.md"), table(result));
    return result;
  } finally {
    await stopRun(ctx);
  }
}

function gitCommit() {
  try {
    const sha = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: repoRoot }).toString().trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], { cwd: repoRoot }).toString().trim();
    return dirty ? `${sha}+uncommitted` : sha;
  } catch {
    return "unknown";
  }
}

function machine() {
  const cpu = /model name\s*:\s*(.*)/.exec(fs.readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "?";
  const cores = fs.readFileSync("/proc/cpuinfo", "utf8").match(/^processor/gm)?.length ?? "?";
  return `${cpu} x ${cores}, load ${fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`;
}

const mib = (kib) => (kib === null || kib === undefined ? "-" : (kib / 1024).toFixed(0));
const secs = (ms) => (ms === null || ms === undefined ? "-" : (ms / 1000).toFixed(1));

/** The markdown table of RELIABILITY.md. */
export function table(result) {
  const head =
    "| fault | steady after (s) | back | recovered / fresh | lost (logged + never logged) | dup | panics | RSS MiB gw0, gw1 (before → after) | fds gw0, gw1 (before → after) | notes | verdict |\n" +
    "|---|---|---|---|---|---|---|---|---|---|---|\n";
  const lines = result.rows.map((r) => {
    const c = r.check ?? {};
    const steady = Math.max(r.allBackMs ?? 0, c.steadyAfterMs ?? 0);
    const usage = (k, f) => r.usageBefore.map((u, i) => `${f(u[k])} → ${f(r.usageAfter[i]?.[k])}`).join(", ");
    const notes = [];
    if (r.injectedMs) notes.push(`fault ${secs(r.injectedMs)} s`);
    if (r.reconnected) notes.push(`${r.reconnected} reconnects`);
    const n = r.nginx ?? {};
    const statuses = Object.entries(n).filter(([k]) => k !== "101" && k !== "200").map(([k, v]) => `${v}×${k}`);
    if (statuses.length) notes.push(`nginx ${statuses.join(" ")}`);
    const fails = Object.entries(r.failures ?? {}).filter(([, v]) => v > 0).map(([k, v]) => `${v}× ${k}`);
    if (fails.length) notes.push(`client retries: ${fails.join(", ")}`);
    if (r.appInFlightMax && (r.appInFlightMax.session || r.appInFlightMax.memberships)) {
      notes.push(`app calls in flight per session ≤ ${r.appInFlightMax.session}, per user ≤ ${r.appInFlightMax.memberships}`);
    }
    if (c.controlDisconnects !== undefined && r.storm) notes.push(`control group disconnects ${c.controlDisconnects}`);
    if (c.unlogged) notes.push(`${c.unlogged} delivered without offset`);
    if (c.maxLatencyMs) notes.push(`max delay ${secs(c.maxLatencyMs)} s`);
    if (r.abuse) notes.push(`abusers: ${Object.entries(r.abuse).map(([k, v]) => `${k} ${v}`).join("; ")}`);
    return `| ${r.name} | ${secs(steady)} | ${r.ok ? "all" : `${r.notBack} not back`} | ${c.sessions?.recovered ?? 0} / ${c.sessions?.fresh ?? 0} | ${c.lost ?? 0} + ${c.lostEverywhere ?? 0} | ${c.duplicates ?? 0} | ${r.panics} | ${usage("rssKiB", mib)} | ${usage("fds", (x) => x ?? "-")} | ${notes.join("; ")} | ${r.violations.length ? `FAIL: ${r.violations.join(", ")}` : "pass"} |`;
  });
  const skipped = result.skipped.map((s) => `\nSkipped: ${s.id} (${s.why}).`).join("");
  return `${head}${lines.join("\n")}\n\nCommit ${result.commit}, ${result.date}, ${result.sockets} sockets (storms: ${result.stormSockets}), ${result.publishRate} emitter messages/s, ${result.machine}. Checker: ${JSON.stringify(result.check.total)}.${skipped}\n`;
}

// ---- CLI
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const argv = process.argv.slice(2);
  const opt = (k, d) => {
    const i = argv.indexOf(k);
    return i >= 0 ? argv[i + 1] : d;
  };
  const small = argv.includes("--small");
  const result = await runMatrix({
    sockets: Number(opt("--sockets", small ? 300 : 5000)),
    small,
    ids: opt("--faults") ? opt("--faults").split(",") : null,
    dir: path.resolve(opt("--out", path.join(repoRoot, "target/chaos", new Date().toISOString().replace(/[:.]/g, "-")))),
    publishRate: Number(opt("--publish-rate", 40)),
    sendEveryS: Number(opt("--send-every-s", 5)),
  });
  process.stdout.write(table(result));
  const failed = result.rows.filter((r) => r.violations.length);
  process.exit(failed.length ? 1 : 0);
}
