// Helpers for the operations tests (tests/node/ops/*.test.mjs): raw Engine.IO handshakes, a parser
// of the Prometheus text format (strict enough that a malformed /metrics fails the test), and the
// gateway's resident memory.
import fs from "node:fs";

/** GET {url}/socket.io/?EIO=4&transport=polling → {status, text, json, sid}. */
export async function pollingHandshake(url, { headers = {}, path = "/socket.io/" } = {}) {
  const res = await fetch(`${url}${path}?EIO=4&transport=polling`, { headers, signal: AbortSignal.timeout(5000) });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(res.status === 200 ? text.slice(1) : text);
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json, sid: res.status === 200 ? json?.sid : undefined, headers: res.headers };
}

/** POST a raw polling payload to an existing session → {status, text}. */
export async function pollingPost(url, sid, body, { path = "/socket.io/" } = {}) {
  const res = await fetch(`${url}${path}?EIO=4&transport=polling&sid=${sid}`, {
    method: "POST",
    headers: { "content-type": "text/plain;charset=UTF-8" },
    body,
    signal: AbortSignal.timeout(5000),
  });
  return { status: res.status, text: await res.text() };
}

/** GET {url}/metrics → the parsed families (throws unless 200 and well-formed). */
export async function scrape(url) {
  const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5000) });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}: ${text.slice(0, 200)}`);
  const type = res.headers.get("content-type") ?? "";
  if (!type.startsWith("text/plain")) throw new Error(`/metrics content-type ${type}`);
  return parsePrometheus(text);
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

/**
 * Parses the Prometheus text exposition format (version 0.0.4). Returns a Map of family name →
 * {name, help, type, samples:[{name, labels, value}]}. Histogram and summary samples (`_bucket`,
 * `_sum`, `_count`) are filed under their family. Throws on anything malformed: a bad line, a
 * sample before its TYPE, a duplicate series, a histogram whose buckets are not cumulative or
 * whose +Inf bucket differs from its count.
 */
export function parsePrometheus(text) {
  const families = new Map();
  const family = (name) => {
    if (!families.has(name)) families.set(name, { name, help: undefined, type: undefined, samples: [] });
    return families.get(name);
  };
  const seen = new Set();
  const lines = text.split("\n");
  lines.forEach((line, i) => {
    const where = `line ${i + 1}: ${JSON.stringify(line)}`;
    if (line.trim() === "") return;
    if (line.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) return; // other comments are allowed
      const [, kind, name, rest] = m;
      if (!NAME.test(name)) throw new Error(`bad metric name, ${where}`);
      const f = family(name);
      if (kind === "HELP") {
        if (f.help !== undefined) throw new Error(`second HELP, ${where}`);
        f.help = rest.replace(/\\n/g, "\n").replace(/\\\\/g, "\\");
      } else {
        if (!["counter", "gauge", "histogram", "summary", "untyped"].includes(rest)) throw new Error(`bad TYPE, ${where}`);
        if (f.type !== undefined) throw new Error(`second TYPE, ${where}`);
        if (f.samples.length) throw new Error(`TYPE after samples, ${where}`);
        f.type = rest;
      }
      return;
    }
    const sample = parseSample(line, where);
    let owner = families.get(sample.name);
    if (!owner) {
      const base = sample.name.replace(/_(bucket|sum|count)$/, "");
      const f = families.get(base);
      if (f && (f.type === "histogram" || f.type === "summary")) owner = f;
    }
    if (!owner || owner.type === undefined) throw new Error(`sample without a TYPE, ${where}`);
    const key = sample.name + JSON.stringify(Object.entries(sample.labels).sort());
    if (seen.has(key)) throw new Error(`duplicate series, ${where}`);
    seen.add(key);
    owner.samples.push(sample);
  });
  for (const f of families.values()) {
    if (f.type === "histogram") checkHistogram(f);
  }
  return families;
}

function parseSample(line, where) {
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$/.exec(line);
  if (!m) throw new Error(`bad sample, ${where}`);
  const labels = {};
  if (m[3] !== undefined && m[3] !== "") {
    let rest = m[3];
    const re = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/;
    while (rest.length) {
      const l = re.exec(rest);
      if (!l) throw new Error(`bad labels, ${where}`);
      if (l[1] in labels) throw new Error(`duplicate label, ${where}`);
      labels[l[1]] = l[2].replace(/\\(["\\n])/g, (_, c) => (c === "n" ? "\n" : c));
      rest = rest.slice(l[0].length);
    }
  }
  const raw = m[4];
  const value = raw === "+Inf" ? Infinity : raw === "-Inf" ? -Infinity : raw === "NaN" ? NaN : Number(raw);
  if (Number.isNaN(value) && raw !== "NaN") throw new Error(`bad value, ${where}`);
  return { name: m[1], labels, value };
}

function checkHistogram(f) {
  const groups = new Map();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    if (!groups.has(key)) groups.set(key, { buckets: [], count: undefined, sum: undefined });
    const g = groups.get(key);
    if (s.name === `${f.name}_bucket`) {
      if (le === undefined) throw new Error(`${f.name}: bucket without le`);
      g.buckets.push({ le: le === "+Inf" ? Infinity : Number(le), value: s.value });
    } else if (s.name === `${f.name}_count`) g.count = s.value;
    else if (s.name === `${f.name}_sum`) g.sum = s.value;
    else throw new Error(`${f.name}: unexpected sample ${s.name}`);
  }
  for (const [key, g] of groups) {
    if (g.count === undefined || g.sum === undefined) throw new Error(`${f.name}${key}: no _count or _sum`);
    const sorted = [...g.buckets].sort((a, b) => a.le - b.le);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i].value < sorted[i - 1].value) throw new Error(`${f.name}${key}: buckets not cumulative`);
    }
    const inf = sorted.at(-1);
    if (!inf || inf.le !== Infinity) throw new Error(`${f.name}${key}: no +Inf bucket`);
    if (inf.value !== g.count) throw new Error(`${f.name}${key}: +Inf bucket ${inf.value} != count ${g.count}`);
  }
}

/**
 * The value of the series `name` (a sample name: a family, or its `_bucket`/`_count`/`_sum`) whose
 * labels equal `labels` exactly; undefined when absent.
 */
export function value(families, name, labels = {}) {
  const base = name.replace(/_(bucket|sum|count)$/, "");
  const candidates = [families.get(name), families.get(base)].filter(Boolean);
  const want = JSON.stringify(Object.entries(labels).sort());
  for (const f of candidates) {
    for (const s of f.samples) {
      if (s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === want) return s.value;
    }
  }
  return undefined;
}

/** Sum of every series of `name` whose labels include `labels`. */
export function sum(families, name, labels = {}) {
  const base = name.replace(/_(bucket|sum|count)$/, "");
  const f = families.get(name) ?? families.get(base);
  if (!f) return 0;
  return f.samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}

/** Resident memory of a process in KiB (VmRSS of /proc/<pid>/status). */
export function rssKiB(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]);
}

/** Polls `fn` until it returns a truthy value (resolved to) or `ms` pass (rejects with `what`). */
export async function eventually(fn, ms = 3000, what = "condition", every = 50) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what} not reached within ${ms} ms (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, every));
  }
}
