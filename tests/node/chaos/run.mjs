// One run of the fault matrix (or the soak's load): the stack, the client fleet, the emitter's
// publisher, then faults one after another, each measured from the outside (time until every
// socket is back, nginx's answers, the app's calls in flight, each gateway's RSS and open files)
// and, at the end, from the inside by the checker over everything every client recorded.
import fs from "node:fs";
import path from "node:path";
import { inFlight, resetStats } from "../lib/app.mjs";
import { scrape } from "../lib/ops.mjs";
import { check } from "./check.mjs";
import { startFleet } from "./fleet.mjs";
import { startPublisher } from "./publisher.mjs";
import { accessStatuses, ensureUsers, startChaosStack } from "./stack.mjs";

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const FANOUT_ROOMS = Array.from({ length: 100 }, (_, i) => `channel:f${i}`);

/**
 * Starts everything. `sockets` clients (one user each), `publishRate` emitter messages per second
 * over the 100 fan-out rooms, one client in `sendersOneIn` sending every `sendEveryS` seconds.
 */
export async function startRun({
  dir,
  sockets,
  gateways = 2,
  gatewayEnv = {},
  netnsGateway = null,
  publishRate = 40,
  sendEveryS = 5,
  sendersOneIn = 10,
  // Handshakes in flight at most, all clients together: browsers do not wait for each other.
  inflight = 100000,
  connectSpreadS = 5,
  log = () => {},
}) {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  // One user more than sockets: the last one is the abusive clients' (never a fleet socket).
  const users = ensureUsers(sockets + 1);
  log(`stack: ${gateways} gateways${netnsGateway !== null ? ` (gw${netnsGateway} in a network namespace)` : ""}, nginx, valkey, app`);
  const stack = await startChaosStack({
    dir,
    users,
    gateways,
    gatewayEnv,
    netnsGateway,
    nginxConnections: Math.min(19000, 2 * sockets + 2000),
  });
  const lastUser = JSON.parse(fs.readFileSync(users.usersFile, "utf8").trim().split("\n").at(-1));
  const ctx = { dir, sockets, stack, phases: [], rows: [], log, fleet: null, publisher: null, abuseVictim: lastUser };
  try {
    ctx.fleet = await startFleet({
      sockets,
      usersFile: users.usersFile,
      targets: [stack.target],
      recordDir: dir,
      inflight,
      sendEveryS,
      sendersOneIn,
    });
    log(`fleet: connecting ${sockets} sockets through nginx`);
    await ctx.fleet.connect(0, sockets, connectSpreadS);
    const up = await waitSteady(ctx, { limitMs: Math.max(120000, sockets * 40) });
    if (!up.ok) throw new Error(`only ${up.stats.connected}/${sockets} sockets connected: ${JSON.stringify(up.stats.failures)}`);
    log(`fleet: ${sockets} connected in ${(up.allBackMs / 1000).toFixed(1)} s`);
    ctx.publisher = await startPublisher({
      url: stack.valkey.url,
      ratePerS: publishRate,
      rooms: FANOUT_ROOMS,
      recordFile: path.join(dir, "published-0.txt"),
    });
  } catch (err) {
    await stopRun(ctx);
    throw err;
  }
  return ctx;
}

/**
 * Waits until every socket is connected and none is reconnecting, continuously for `stableMs`.
 * Resolves to {ok, backAt (when that last began, Unix ms), stats}.
 */
export async function waitSteady(ctx, { limitMs = 120000, stableMs = 2000, everyMs = 100 } = {}) {
  const t0 = Date.now();
  let stableSince = null;
  let s;
  for (;;) {
    s = await ctx.fleet.stats();
    const all = s.connected === ctx.sockets && s.chaos.connecting === 0;
    if (all) {
      stableSince ??= Date.now();
      if (Date.now() - stableSince >= stableMs) return { ok: true, backAt: stableSince, allBackMs: stableSince - t0, stats: s };
    } else {
      stableSince = null;
    }
    if (Date.now() - t0 > limitMs) return { ok: false, backAt: null, allBackMs: null, stats: s };
    await sleep(everyMs);
  }
}

/** A few counters of every live gateway, summed: connects by result, recovery attempts by outcome. */
export async function gatewayCounters(stack) {
  const out = {};
  for (const g of stack.gws) {
    if (!g.running()) continue;
    let families;
    try {
      families = await scrape(g.url);
    } catch {
      continue;
    }
    for (const [metric, label] of [
      ["socket_gateway_connects_total", "result"],
      ["socket_gateway_recovery_attempts_total", "outcome"],
    ]) {
      for (const sample of families.get(metric)?.samples ?? []) {
        const key = `${metric.replace("socket_gateway_", "").replace("_total", "")}:${sample.labels[label]}`;
        out[key] = (out[key] ?? 0) + sample.value;
      }
    }
  }
  return out;
}

function usages(stack) {
  return stack.gws.map((g) => ({ gw: g.name, pid: g.pid, ...(g.usage() ?? { rssKiB: null, fds: null }) }));
}

function diff(a, b) {
  const out = {};
  for (const [k, v] of Object.entries(b)) if (typeof v === "number") out[k] = v - (a[k] ?? 0);
  return out;
}

/**
 * Runs one fault: `inject(ctx)` (resolves when the fault is over, e.g. after a freeze and its
 * thaw), then waits until steady (`limitMs`), then `after(ctx)` (e.g. restart what was killed),
 * then observes `settleMs` more. Pushes the phase and a row of outside measurements.
 */
export async function runFault(ctx, { name, inject, after, limitMs = 120000, settleMs = 3000, expect = {} }) {
  const { stack, fleet } = ctx;
  ctx.log(`fault: ${name}`);
  const before = { usage: usages(stack), stats: await fleet.stats(), access: accessStatuses(stack.nginx).end, counters: await gatewayCounters(stack) };
  await resetStats(stack.app.url).catch(() => {});
  const start = Date.now();
  const injected = (await inject(ctx)) ?? {};
  const steady = await waitSteady(ctx, { limitMs });
  // From the fault's start until every socket was connected again for good.
  const allBackMs = steady.ok ? Math.max(0, steady.backAt - start) : null;
  const appInFlight = await inFlight(stack.app.url).catch(() => null);
  // Counters of the instances alive now (a killed one's are gone: only what the survivors did).
  const counters = diff(before.counters, await gatewayCounters(stack));
  if (after) await after(ctx);
  await waitSteady(ctx, { limitMs });
  await sleep(settleMs);
  const end = Date.now();
  const stats = await fleet.stats();
  const sessions = diff(before.stats.chaos, stats.chaos);
  const reconnected = (sessions.sessions_recovered ?? 0) + (sessions.sessions_fresh ?? 0) + (sessions.sessions_new ?? 0);
  const row = {
    name,
    ok: steady.ok,
    injectedMs: injected.durationMs ?? null,
    // Nobody had to reconnect: nothing to wait for.
    allBackMs: reconnected === 0 && steady.ok ? 0 : allBackMs,
    reconnected,
    notBack: steady.ok ? 0 : ctx.sockets - steady.stats.connected,
    sessions,
    failures: diff(before.stats.failures, stats.failures),
    nginx: accessStatuses(stack.nginx, before.access).counts,
    gateways: counters,
    appInFlightMax: appInFlight?.max ?? null,
    appOverlaps: appInFlight?.overlaps?.slice(0, 5) ?? [],
    usageBefore: before.usage,
    usageAfter: usages(stack),
    panics: stack.gws.reduce((n, g) => n + g.panics().length, 0),
    expect,
    ...injected.extra,
  };
  ctx.phases.push({ name, start, end });
  ctx.rows.push(row);
  ctx.log(
    `  ${name}: ${steady.ok ? "all back" : `NOT all back (${row.notBack} missing)`}` +
      `${row.allBackMs !== null ? ` after ${(row.allBackMs / 1000).toFixed(1)} s` : ""}; sessions +${row.sessions.sessions_recovered ?? 0} recovered` +
      ` +${row.sessions.sessions_fresh ?? 0} fresh; nginx ${JSON.stringify(row.nginx)}; failures ${JSON.stringify(row.failures)}`,
  );
  return row;
}

/** A stretch of load with no fault (the baseline). */
export async function runQuiet(ctx, name, ms) {
  return runFault(ctx, { name, inject: async () => (await sleep(ms), { durationMs: ms }), settleMs: 0 });
}

/**
 * Stops the clients' sends and the publishers, lets what is in flight arrive, publishes the
 * seal (one last message to each of the first publisher's rooms) and waits until deliveries
 * stop (no new checked message for 2 s, at most 5 min). Resolves to the seal's time.
 */
export async function seal(fleet, publishers) {
  await fleet.sending(false);
  for (const p of publishers) p.pause();
  await sleep(3000);
  const sealAt = Date.now();
  publishers[0].seal();
  await publishers[0].settle();
  let last = -1;
  for (let i = 0; i < 150; i++) {
    const n = (await fleet.stats()).chaos.checked;
    if (n === last) break;
    last = n;
    await sleep(2000);
  }
  return sealAt;
}

/**
 * Ends the run: stops the clients' sends and the publisher, seals every room (one last message
 * each, which every connected client must get), waits for deliveries to stop, stops the fleet and
 * runs the checker over the records. Resolves to {check, rows}.
 */
export async function finishRun(ctx, { control } = {}) {
  const { fleet, publisher } = ctx;
  const sealAt = await seal(fleet, [publisher]);
  ctx.phases.push({ name: "seal", start: sealAt, end: Date.now() + 1 });
  await fleet.flush();
  await fleet.stop();
  ctx.fleet = null;
  await publisher.stop();
  ctx.publisher = null;
  fs.writeFileSync(path.join(ctx.dir, "phases.json"), JSON.stringify(ctx.phases, null, 2));
  const result = await check({
    clientFiles: fs.readdirSync(ctx.dir).filter((f) => /^records-\d+\.txt$/.test(f)).map((f) => path.join(ctx.dir, f)),
    publisherFiles: [path.join(ctx.dir, "published-0.txt")],
    phases: ctx.phases,
    sealed: true,
    control,
  });
  fs.writeFileSync(path.join(ctx.dir, "check.json"), JSON.stringify(result, null, 2));
  fs.writeFileSync(path.join(ctx.dir, "rows.json"), JSON.stringify(ctx.rows, null, 2));
  return { check: result, rows: ctx.rows };
}

export async function stopRun(ctx) {
  await ctx.fleet?.stop().catch(() => {});
  await ctx.publisher?.stop().catch(() => {});
  await ctx.stack?.stop().catch(() => {});
}
