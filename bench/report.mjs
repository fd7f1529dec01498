// Turns bench/run.sh's results.jsonl into the ratio tables of BENCHMARKS.md (Markdown on stdout).
//
//   node bench/report.mjs results.jsonl [machine.txt]
import fs from "node:fs";

const [file, machineFile] = process.argv.slice(2);
if (!file) {
  process.stderr.write("usage: report.mjs results.jsonl [machine.txt]\n");
  process.exit(2);
}
const rows = fs
  .readFileSync(file, "utf8")
  .split("\n")
  .filter((l) => l.trim())
  .map((l) => JSON.parse(l));
const SERVERS = ["node", "baseline", "gateway", "raw"];
const present = SERVERS.filter((s) => rows.some((r) => r.server === s));

const fmt = (v, d = 1) => (v === null || v === undefined || Number.isNaN(v) ? "–" : typeof v === "number" ? v.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: 0 }) : String(v));
const ratio = (a, b) => (typeof a === "number" && typeof b === "number" && b !== 0 ? `${(a / b).toFixed(2)}×` : "–");

function table(title, metrics) {
  const head = ["metric", ...present];
  const hasNode = present.includes("node");
  const hasRaw = present.includes("raw");
  if (present.includes("gateway") && hasNode) head.push("gateway/node");
  if (present.includes("gateway") && hasRaw) head.push("gateway/raw");
  // "baseline": an earlier gateway build run side by side (BASELINE_BIN).
  const hasBaseline = present.includes("baseline") && present.includes("gateway");
  if (hasBaseline) head.push("gateway/baseline");
  const out = [`### ${title}`, "", `| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`];
  for (const [name, get, digits = 1, opts = {}] of metrics) {
    const vals = Object.fromEntries(present.map((s) => [s, get(s)]));
    if (present.every((s) => vals[s] === undefined || vals[s] === null)) continue;
    const cells = [name, ...present.map((s) => fmt(vals[s], digits))];
    if (present.includes("gateway") && hasNode) cells.push(ratio(vals.gateway, vals.node));
    // The raw server makes no app calls: no ratio for the app's figures.
    if (present.includes("gateway") && hasRaw) cells.push(opts.noRaw ? "–" : ratio(vals.gateway, vals.raw));
    if (hasBaseline) cells.push(ratio(vals.gateway, vals.baseline));
    out.push(`| ${cells.join(" | ")} |`);
  }
  return out.join("\n");
}

const sections = [];
if (machineFile && fs.existsSync(machineFile)) {
  sections.push("```\n" + fs.readFileSync(machineFile, "utf8").trim() + "\n```");
}

// ---- S1
const s1 = rows.filter((r) => r.scenario === "S1");
if (s1.length) {
  const filled = s1.filter((r) => r.idle_s === undefined);
  const idled = s1.filter((r) => r.idle_s !== undefined);
  const levels = [...new Set(filled.map((r) => r.level))].sort((a, b) => a - b);
  const at = (s, level) => filled.find((r) => r.server === s && r.level === level);
  const metrics = [];
  for (const level of levels) {
    metrics.push([`RSS per socket at ${fmt(level, 0)} (KiB)`, (s) => at(s, level)?.rss_kib_per_socket, 2]);
  }
  for (const r of idled.filter((r, i) => idled.findIndex((o) => o.level === r.level) === i)) {
    const after = (s) => idled.find((o) => o.server === s && o.level === r.level);
    metrics.push([`RSS per socket at ${fmt(r.level, 0)} after ${r.idle_s} s idle (KiB)`, (s) => after(s)?.rss_kib_per_socket, 2]);
  }
  for (const level of levels) {
    metrics.push([`sockets connected of ${fmt(level, 0)}`, (s) => at(s, level)?.sockets, 0]);
  }
  for (const level of levels) {
    metrics.push([`server CPU µs per connect, filling to ${fmt(level, 0)}`, (s) => at(s, level)?.server_cpu_us_per_connect, 0]);
  }
  for (const level of levels) {
    metrics.push([`server RSS at ${fmt(level, 0)} (MiB)`, (s) => (at(s, level) ? at(s, level).rss_kib / 1024 : undefined), 1]);
  }
  sections.push(table(`S1 idle sockets (${s1[0]?.instances ?? "?"} instance(s) of each server, ~10 rooms per socket)`, metrics));
}

// ---- S2
const s2 = rows.filter((r) => r.scenario === "S2");
if (s2.length) {
  const summary = (s) => s2.find((r) => r.server === s && r.phase === "summary");
  const fixed = (s) => s2.filter((r) => r.server === s && r.phase === "fixed").pop();
  const best = (s) => {
    const ramp = s2.filter((r) => r.server === s && r.phase === "ramp");
    return ramp.reduce((a, r) => (!a || r.delivered_per_s > a.delivered_per_s ? r : a), null);
  };
  const fr = present.map((s) => fixed(s)?.rate).find((r) => r);
  sections.push(
    table(`S2 fan-out (${fmt(summary(present[0])?.sockets, 0)} sockets, ${summary(present[0])?.rooms ?? "?"} rooms of ~${fmt(summary(present[0])?.mean_room_size)}, emitter publishes through Valkey)`, [
      ["instances", (s) => summary(s)?.instances ?? s2.find((r) => r.server === s)?.instances, 0],
      ["max delivered msgs/s (ramp, any latency)", (s) => best(s)?.delivered_per_s, 0],
      ["… server CPU µs per delivery at that step", (s) => best(s)?.server_cpu_us_per_msg, 2],
      ["… latency p99 at that step (ms)", (s) => (best(s)?.latency?.p99_us ?? NaN) / 1000, 1],
      [`max delivered msgs/s with p99 ≤ ${summary(present[0])?.interactive_p99_ms ?? 50} ms`, (s) => summary(s)?.max_interactive_delivered_per_s, 0],
      [`fixed rate: publishes/s (×room size = msgs/s)`, (s) => fixed(s)?.rate, 0],
      ["fixed rate: delivered msgs/s", (s) => fixed(s)?.delivered_per_s, 0],
      ["fixed rate: delivery ratio", (s) => fixed(s)?.delivery_ratio, 4],
      ["fixed rate: server CPU µs per delivery", (s) => fixed(s)?.server_cpu_us_per_msg, 2],
      ["… of which user", (s) => fixed(s)?.server_user_us_per_msg, 2],
      ["… of which kernel", (s) => fixed(s)?.server_sys_us_per_msg, 2],
      ["fixed rate: latency p50 (ms)", (s) => (fixed(s)?.latency?.p50_us ?? NaN) / 1000, 2],
      ["fixed rate: latency p99 (ms)", (s) => (fixed(s)?.latency?.p99_us ?? NaN) / 1000, 2],
      ["fixed rate: latency max (ms)", (s) => (fixed(s)?.latency?.max_us ?? NaN) / 1000, 1],
      ["fixed rate: server CPU utilisation (cores)", (s) => fixed(s)?.server_cpu?.util, 2],
      ["fixed rate: load generator CPU (cores)", (s) => fixed(s)?.client_cpu?.util, 2],
      ["fixed rate: Valkey CPU (cores)", (s) => fixed(s)?.valkey_cpu?.util, 2],
      ["sockets dropped during S2", (s) => summary(s)?.dropped_sockets, 0],
      ["other events received during S2 (no stamp: presence:update …)", (s) => summary(s)?.unstamped, 0],
      ["time to connect the sockets (s)", (s) => summary(s)?.connect_s, 1],
    ]) + (fr ? `\n\nFixed rate: ${fr} publishes/s for every server.` : ""),
  );
}

// ---- S3
const s3 = rows.filter((r) => r.scenario === "S3");
if (s3.length) {
  const waves = [...new Set(s3.map((r) => r.wave))].sort();
  const metrics = [];
  for (const w of waves) {
    const at = (s) => s3.find((r) => r.server === s && r.wave === w);
    const label = w === 1 ? "cold start" : `reconnect ${w - 1}`;
    metrics.push(
      [`${label}: time until all in rooms (s)`, (s) => at(s)?.all_in_rooms_s, 2],
      [`${label}: sockets connected`, (s) => at(s)?.sockets, 0],
      [`${label}: app calls (session + memberships)`, (s) => (at(s)?.app_calls ? at(s).app_calls.session + at(s).app_calls.memberships : undefined), 0, { noRaw: true }],
      [`${label}: server CPU µs per connect`, (s) => at(s)?.server_cpu_us_per_connect, 0],
      [`${label}: app CPU (s)`, (s) => (at(s)?.app_cpu ? at(s).app_cpu.user_s + at(s).app_cpu.sys_s : undefined), 2, { noRaw: true }],
      [`${label}: retries`, (s) => at(s)?.retries, 0, { noRaw: true }],
      [`${label}: connect p99 (ms)`, (s) => at(s)?.connect_ms?.p99, 0],
    );
  }
  const n = s3[0]?.sockets;
  sections.push(table(`S3 connect storm (${fmt(n, 0)} sockets, ${s3[0]?.instances ?? "?"} instance(s) of each server)`, metrics));
}

// ---- S4
const s4 = rows.filter((r) => r.scenario === "S4");
if (s4.length) {
  const summary = (s) => s4.find((r) => r.server === s && r.phase === "summary");
  const fixed = (s) => s4.filter((r) => r.server === s && r.phase === "fixed").pop();
  sections.push(
    table(`S4 one message to every socket (${fmt(summary(present[0])?.sockets, 0)} sockets, ${s4[0]?.instances ?? "?"} instance(s) of each server, ${fmt(fixed(present[0])?.rate, 1)} publish/s to no room)`, [
      ["sockets connected", (s) => summary(s)?.sockets, 0],
      ["deliveries per publish", (s) => (fixed(s) ? fixed(s).delivered_per_s / fixed(s).publish_rate : undefined), 0],
      ["delivery ratio", (s) => fixed(s)?.delivery_ratio, 4],
      ["publish to arrival: p50 (ms)", (s) => (fixed(s)?.latency?.p50_us ?? NaN) / 1000, 2],
      ["publish to arrival: p99 (ms)", (s) => (fixed(s)?.latency?.p99_us ?? NaN) / 1000, 2],
      ["publish to the last arrival: max (ms)", (s) => (fixed(s)?.latency?.max_us ?? NaN) / 1000, 2],
      ["server CPU µs per delivery", (s) => fixed(s)?.server_cpu_us_per_msg, 2],
      ["server RSS (MiB)", (s) => (fixed(s)?.server_rss_kib ?? NaN) / 1024, 1],
      ["time to connect the sockets (s)", (s) => summary(s)?.connect_s, 1],
    ]),
  );
}

const skipped = rows.filter((r) => r.skipped);
if (skipped.length) {
  sections.push("Skipped (" + skipped[0].skipped + "): " + skipped.map((r) => `${r.scenario} on ${r.server}`).join(", "));
}
const env = rows.filter((r) => r.scenario === "env");
if (env.length) {
  sections.push("Load average before each run (1, 5, 15 min): " + env.map((e) => `${e.what}: ${e.loadavg}`).join("; "));
}
process.stdout.write(sections.join("\n\n") + "\n");
