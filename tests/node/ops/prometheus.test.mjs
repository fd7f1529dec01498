// The operator's view, with the real tools: promtool validates deploy/prometheus/, then a real
// Prometheus (Debian's package), configured from deploy/prometheus/ with only its targets and
// its time scale changed, scrapes two gateways relaying through a real Valkey. Checked: both
// targets are up; every query of deploy/grafana/dashboard.json returns a series from the start
// (before any client came) and a number during the run; under each induced fault the matching
// alert of alerts.yml fires, and it resolves once the fault is over, with no other alert firing.
// Also: the Kubernetes scrape job (deploy/k8s/prometheus-scrape.yaml) keeps the pods of
// deploy/k8s/deployment.yaml and nothing else.
//
// Time scale: the rules' `for:` and range windows are divided by TIME_SCALE (30: a 5m window is
// 10s, `for: 10m` is 20s), with a scrape and evaluation interval of 1s. Thresholds, expressions,
// labels and annotations are the shipped ones. The alert timings are written to
// test-output/prometheus-alerts.json.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { Redis } from "ioredis";
import { Emitter } from "@socket.io/redis-emitter";
import { startFixtureApp, signIn, fault } from "../lib/app.mjs";
import { startGateway, connect, closeAllClients, emitAck, sleep, assertAlive } from "../lib/gateway.mjs";
import { startValkey } from "../lib/valkey.mjs";
import { pollingHandshake, eventually } from "../lib/ops.mjs";
import { repoRoot } from "../lib/procs.mjs";
import {
  missingPrometheus,
  promtool,
  deriveConfig,
  startPrometheus,
  dashboardQueries,
  loadDashboard,
  watchAlerts,
  deployDir,
} from "../lib/prometheus.mjs";

const TIME_SCALE = 30;
const INTERVAL = "1s";
// Grafana's $__rate_interval: four scrape intervals (at a dashboard range this short).
const RATE_INTERVAL = "4s";

const missing = missingPrometheus();
// CI installs Prometheus (.ci/run sets WITH_PROMETHEUS=1): there a missing binary is a failure.
const skip = missing && !process.env.CI ? missing : false;

test("promtool: the shipped config, rules and rule unit tests are valid", { skip }, async (t) => {
  assert.ok(!missing, missing);
  const outputs = [
    await promtool(["check", "config", "prometheus.yml"]),
    await promtool(["check", "rules", "alerts.yml"]),
    await promtool(["test", "rules", "alerts.test.yml"]),
  ];
  for (const out of outputs) assert.match(out, /SUCCESS/);
  t.diagnostic(outputs.join("").replace(/\s+/g, " ").trim());
});

// ---- two gateways, Valkey, the app and Prometheus --------------------------------------------

let app, valkey, prom, watcher, redis;
const gws = {};
const cookies = {};

const gatewayEnv = (valkeyUrl, extra = {}) => ({
  GATEWAY_REDIS__ENABLED: "true",
  REDIS_URL: valkeyUrl,
  GATEWAY_LIMITS__EVENTS_PER_S: "1000",
  GATEWAY_LIMITS__EVENTS_BURST: "1000",
  GATEWAY_SERVER__DRAIN_WINDOW_MS: "200",
  ...extra,
});

/** host:port, as Prometheus labels the instance. */
const target = (gw) => `127.0.0.1:${gw.port}`;

before(async () => {
  if (skip) return;
  app = await startFixtureApp();
  for (const name of Object.keys(app.users)) {
    cookies[name] = await signIn(app.url, app.users[name].email, app.users[name].password);
  }
  valkey = await startValkey();
  gws.gw1 = await startGateway({ appUrl: app.url, env: gatewayEnv(valkey.url) });
  gws.gw2 = await startGateway({ appUrl: app.url, env: gatewayEnv(valkey.url) });
  redis = new Redis(valkey.url, { maxRetriesPerRequest: 1, lazyConnect: true });
  redis.on("error", () => {}); // Valkey is stopped on purpose below.
});

after(async () => {
  await watcher?.stop();
  closeAllClients();
  redis?.disconnect();
  await prom?.stop();
  await Promise.all(Object.values(gws).map((gw) => gw.stop()));
  await valkey?.stop();
  await app?.stop();
});

/** Runs `queries` now; resolves to those that returned no series. */
async function emptyQueries(queries) {
  const empty = [];
  for (const q of queries) {
    if ((await prom.query(q.expr)).length === 0) empty.push(q);
  }
  return empty;
}

const show = (qs) => qs.map((q) => `${q.panel} ${q.refId}: ${q.expr}`).join("\n");

/**
 * A raw polling session that connects to `/` with `cookie` and then never polls again, so
 * everything sent to it waits in its outbound queue: a slow consumer.
 */
async function stalledPollingSocket(url, cookie) {
  const headers = { Cookie: cookie };
  const hs = await pollingHandshake(url, { headers });
  assert.equal(hs.status, 200, hs.text);
  const post = await fetch(`${url}/socket.io/?EIO=4&transport=polling&sid=${hs.sid}`, {
    method: "POST",
    headers: { ...headers, "content-type": "text/plain;charset=UTF-8" },
    body: "40",
    signal: AbortSignal.timeout(5000),
  });
  assert.equal(post.status, 200);
  // Read until the CONNECT reply (a GET answers at once with what is queued, or waits for it).
  for (let i = 0; i < 5; i++) {
    const res = await fetch(`${url}/socket.io/?EIO=4&transport=polling&sid=${hs.sid}`, { headers, signal: AbortSignal.timeout(10000) });
    const body = await res.text();
    if (body.split("\x1e").some((p) => p.startsWith("40{"))) return hs.sid;
    if (body.split("\x1e").some((p) => p.startsWith("44"))) throw new Error(`connect refused: ${body}`);
  }
  throw new Error("no CONNECT reply");
}

/** The alert records a fault phase expected (the others must not fire). */
const explained = new Set();

/**
 * One fault: `start()` it, wait until every alert of `expect` ([{alertname, ...labels}]) fires,
 * `stop()` it, wait until they have all resolved. Resolves to the timings, in seconds.
 */
async function faultPhase(name, { expect, start, stop, fireWithinMs = 60000, resolveWithinMs = 60000 }) {
  const names = expect.map((e) => e.alertname).join(", ");
  const withActive = (err) => {
    const active = watcher.active().map((r) => ({ ...r.labels, state: r.firingAt ? "firing" : "pending" }));
    throw new Error(`${err.message}; active alerts: ${JSON.stringify(active)}; watcher error: ${watcher.lastError()?.message}`);
  };
  const t0 = Date.now();
  const ctx = await start();
  const fired = await eventually(
    () => {
      const rs = expect.map((labels) => watcher.find(labels));
      return rs.every((r) => r?.firingAt !== undefined && r.firingAt >= t0) ? rs : null;
    },
    fireWithinMs,
    `${name}: ${names} firing`,
    100,
  ).catch(withActive);
  const t1 = Date.now();
  await stop(ctx);
  await eventually(() => fired.every((r) => r.resolvedAt !== undefined), resolveWithinMs, `${name}: ${names} resolved`, 100).catch(withActive);
  for (const r of fired) explained.add(r);
  return fired.map((r) => ({
    fault: name,
    alert: r.labels.alertname,
    labels: r.labels,
    summary: r.annotations?.summary,
    pendingAfterS: r.pendingAt === undefined ? null : +((r.pendingAt - t0) / 1000).toFixed(1),
    firingAfterS: +((r.firingAt - t0) / 1000).toFixed(1),
    resolvedAfterS: +((r.resolvedAt - t1) / 1000).toFixed(1),
  }));
}

/** A Kubernetes label or annotation name as Prometheus' discovery spells it in __meta_ labels. */
const sanitize = (name) => name.replace(/[^a-zA-Z0-9_]/g, "_");

test("the Kubernetes scrape job keeps the annotated pods of deployment.yaml, at their annotated port and path, and drops others", { skip }, async (t) => {
  assert.ok(!missing, missing);
  const deployment = YAML.parse(readFileSync(path.join(deployDir, "k8s/deployment.yaml"), "utf8"));
  const pod = deployment.spec.template;
  const ports = pod.spec.containers.flatMap((c) => c.ports ?? []).map((p) => String(p.containerPort));
  const annotations = pod.metadata.annotations;
  assert.ok(ports.includes(annotations["prometheus.io/port"]), `prometheus.io/port ${annotations["prometheus.io/port"]} is no container port (${ports})`);
  const jobs = YAML.parse(readFileSync(path.join(deployDir, "k8s/prometheus-scrape.yaml"), "utf8"));
  assert.equal(jobs.length, 1);
  const job = jobs[0];
  assert.deepEqual(job.kubernetes_sd_configs, [{ role: "pod" }]);

  // Pods as the pod role of Kubernetes discovery presents them (address = pod IP and a declared
  // port), in place of discovery; the annotated port is the running gateway's.
  const gw = gws.gw1;
  const podTarget = (name, labels, podAnnotations) => ({
    targets: ["127.0.0.1:9"],
    labels: {
      __meta_kubernetes_namespace: "chat",
      __meta_kubernetes_pod_name: name,
      ...Object.fromEntries(Object.entries(labels).map(([k, v]) => [`__meta_kubernetes_pod_label_${sanitize(k)}`, v])),
      ...Object.fromEntries(Object.entries(podAnnotations).map(([k, v]) => [`__meta_kubernetes_pod_annotation_${sanitize(k)}`, v])),
    },
  });
  const annotated = { ...annotations, "prometheus.io/port": String(gw.port) };
  const { ["prometheus.io/scrape"]: _, ...unannotated } = annotated;
  delete job.kubernetes_sd_configs;
  job.static_configs = [
    podTarget("socket-gateway-1", pod.metadata.labels, annotated),
    podTarget("socket-gateway-2", pod.metadata.labels, unannotated),
    podTarget("next-app-1", { "app.kubernetes.io/name": "next-app" }, annotated),
  ];
  const k8sProm = await startPrometheus({ config: { global: { scrape_interval: INTERVAL }, scrape_configs: [job] } });
  try {
    const { activeTargets, droppedTargets } = await eventually(async () => {
      const ts = await k8sProm.targets();
      return ts.activeTargets.length === 1 && ts.activeTargets[0].health === "up" ? ts : null;
    }, 15000, "one k8s target up", 200);
    const kept = activeTargets[0];
    t.diagnostic(`kept ${kept.scrapeUrl} ${JSON.stringify(kept.labels)}; dropped ${droppedTargets.length}`);
    assert.equal(kept.scrapeUrl, `http://127.0.0.1:${gw.port}${annotations["prometheus.io/path"]}`);
    assert.deepEqual(kept.labels, { instance: target(gw), job: "socket-gateway-k8s", namespace: "chat", pod: "socket-gateway-1" });
    assert.equal(droppedTargets.length, 2);
    const build = await k8sProm.query('socket_gateway_build_info{job="socket-gateway-k8s", pod="socket-gateway-1"}');
    assert.equal(build.length, 1, "the kept pod's metrics are not in Prometheus");
  } finally {
    await k8sProm.stop();
  }
});

test("a real Prometheus on deploy/prometheus/ scrapes two gateways: targets up, every dashboard query answers, alerts fire under faults and resolve", { skip }, async (t) => {
  assert.ok(!missing, missing);
  const { gw1, gw2 } = gws;
  const { config, rules } = deriveConfig({ targets: [target(gw1), target(gw2)], interval: INTERVAL, timeScale: TIME_SCALE });
  t.diagnostic(`derived rules: ${rules.groups[0].rules.map((r) => `${r.alert} for ${r.for}`).join(", ")}`);
  prom = await startPrometheus({ config, rules });
  const tStart = Date.now();

  // Targets up.
  await eventually(async () => {
    const { activeTargets } = await prom.targets();
    const ours = activeTargets.filter((a) => a.labels.job === "socket-gateway");
    return ours.length === 2 && ours.every((a) => a.health === "up");
  }, 15000, "both gateways up in Prometheus' targets", 200);
  const up = await prom.query('up{job="socket-gateway"}');
  assert.deepEqual(up.map((s) => s.metric.instance).sort(), [target(gw1), target(gw2)].sort());
  assert.ok(up.every((s) => s.value[1] === "1"), JSON.stringify(up));

  // Every dashboard query answers before any client came (series started at zero).
  const queries = dashboardQueries(loadDashboard(), { rateInterval: RATE_INTERVAL, interval: INTERVAL });
  t.diagnostic(`${queries.length} dashboard queries`);
  assert.ok(queries.length >= 24, `only ${queries.length} queries found in the dashboard`);
  await eventually(
    async () => (await emptyQueries(queries)).length === 0,
    15000,
    "every dashboard query returning a series at start",
    500,
  ).catch(async (err) => {
    throw new Error(`${err.message}\nempty at start:\n${show(await emptyQueries(queries))}`);
  });
  const firingAtStart = (await prom.alerts()).filter((a) => a.state === "firing");
  assert.deepEqual(firingAtStart, [], "an alert fires on a healthy fleet");

  watcher = watchAlerts(prom);

  // Traffic, so the rate and latency panels have something to show.
  const alice = await connect(gw1.url, cookies.alice, { transports: ["websocket"] });
  const bob = await connect(gw2.url, cookies.bob, { transports: ["websocket"] });
  for (let i = 0; i < 5; i++) {
    const ack = await emitAck(alice, "message:send", { channelId: "c1", content: `hello ${i}` });
    assert.equal(ack?.ok, true, JSON.stringify(ack));
  }
  bob.emit("typing:start", { channelId: "c1" });

  const timings = [];

  // 1. Valkey down: both instances degrade to local-only.
  timings.push(
    ...(await faultPhase("Valkey stopped", {
      expect: [
        { alertname: "SocketGatewayValkeyDegraded", instance: target(gw1) },
        { alertname: "SocketGatewayValkeyDegraded", instance: target(gw2) },
      ],
      start: () => valkey.stop(),
      stop: () => valkey.restart(),
    })),
  );

  // 2. The app's session endpoint fails (500) during connects: AUTH_UNAVAILABLE, failing calls.
  const fresh = await signIn(app.url, app.users.carol.email, app.users.carol.password);
  timings.push(
    ...(await faultPhase("app session endpoint answering 500", {
      expect: [{ alertname: "SocketGatewayAuthUnavailable" }, { alertname: "SocketGatewayAppErrors", call: "session" }],
      start: async () => {
        await fault(app.url, { mode: "error500", paths: ["session"] });
        // A browser retrying its connect, alternately on each instance, every 250 ms.
        const loop = { running: true, attempts: 0, refused: 0 };
        loop.done = (async () => {
          while (loop.running) {
            const gw = loop.attempts++ % 2 ? gw2 : gw1;
            try {
              (await connect(gw.url, fresh, { transports: ["websocket"] })).close();
            } catch (err) {
              loop.refused++;
              loop.lastRefusal = err.message;
            }
            await sleep(250);
          }
        })();
        return loop;
      },
      stop: async (loop) => {
        await fault(app.url, { mode: "ok" });
        // Keep connecting for a while (now successfully), then stop the loop.
        setTimeout(() => (loop.running = false), 5000);
        await loop.done;
        t.diagnostic(`connect attempts ${loop.attempts}, refused ${loop.refused} (${loop.lastRefusal})`);
        assert.ok(loop.refused > 0, "no connect was refused during the fault");
      },
    })),
  );

  // 3 and 4 at once (they share nothing):
  // 3. The app's events endpoint answers after 1.5 s: chat messages are slow.
  // 4. Clients that stop reading while their room is flooded: slow consumers on gw1.
  const STALLED = 24; // the rule's threshold is 20 per window
  const concurrent = await Promise.all([
    faultPhase("app events endpoint answering after 1.5 s", {
      expect: [{ alertname: "SocketGatewayAppSlow", call: "event" }],
      start: async () => {
        await fault(app.url, { mode: "slow", delayMs: 1500, paths: ["events"] });
        // Two users chatting, each message sent once the previous one was acknowledged.
        const loop = { running: true, sent: 0, acked: 0 };
        const chat = async (socket) => {
          while (loop.running) {
            const ack = await emitAck(socket, "message:send", { channelId: "c1", content: `slow ${loop.sent++}` });
            if (ack?.ok) loop.acked++;
            await sleep(100);
          }
        };
        // Caught at once (an ack timeout must fail the test in stop(), not as an unhandled rejection).
        loop.done = Promise.all([chat(alice), chat(bob)]).catch((err) => (loop.error = err));
        return loop;
      },
      stop: async (loop) => {
        await fault(app.url, { mode: "ok" });
        loop.running = false;
        await loop.done;
        if (loop.error) throw loop.error;
        t.diagnostic(`message:send during the slow phase: ${loop.sent}, acknowledged ok ${loop.acked}`);
        assert.equal(loop.acked, loop.sent, "slow is not failing: every message must be acknowledged");
      },
    }),
    faultPhase("24 clients stop reading during a flood", {
      expect: [{ alertname: "SocketGatewaySlowConsumers", instance: target(gw1) }],
      start: async () => {
        for (let i = 0; i < STALLED; i++) await stalledPollingSocket(gw1.url, cookies.alice);
        if (redis.status !== "ready") await redis.connect().catch(() => {});
        const emitter = new Emitter(redis);
        // More than engine.outbound_queue (256) packets for each stalled session.
        for (let i = 0; i < 300; i++) emitter.to("channel:c1").emit("message:new", { channelId: "c1", content: `flood ${i}` });
      },
      stop: async () => {},
    }),
  ]);
  timings.push(...concurrent.flat());

  // 5. One instance killed: Prometheus cannot scrape it.
  timings.push(
    ...(await faultPhase("gateway SIGKILLed", {
      expect: [{ alertname: "SocketGatewayDown", instance: target(gw2), job: "socket-gateway" }],
      start: () => gw2.proc.child.kill("SIGKILL"),
      stop: async () => {
        gws.gw2 = await startGateway({ appUrl: app.url, env: gatewayEnv(valkey.url, { PORT: String(gw2.port) }) });
      },
    })),
  );
  assertAlive(gws.gw1);

  // Nothing else fired: each alert that fired is one a fault above was meant to cause.
  const unexpected = watcher.records.filter((r) => r.firingAt !== undefined && !explained.has(r));
  assert.deepEqual(unexpected.map((r) => r.labels), [], "alerts fired that no fault explains");

  // Every dashboard query had a number (not only NaN) during the run, as a Grafana range shows it.
  const end = Date.now() / 1000;
  const noNumber = [];
  for (const q of queries) {
    const matrix = await prom.queryRange(q.expr, tStart / 1000, end, 1);
    const numbers = matrix.some((s) => s.values.some(([, v]) => Number.isFinite(Number(v))));
    if (!numbers) noNumber.push(q);
  }
  assert.equal(noNumber.length, 0, `dashboard queries without a number during the run:\n${show(noNumber)}`);

  for (const x of timings) {
    const pending = x.pendingAfterS === null ? "" : `pending after ${x.pendingAfterS}s, `;
    t.diagnostic(`${x.fault}: ${x.alert} ${JSON.stringify(x.labels)} ${pending}firing after ${x.firingAfterS}s; resolved ${x.resolvedAfterS}s after the fault ended`);
  }
  const outDir = process.env.TEST_OUTPUT_DIR || path.join(repoRoot, "test-output");
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, "prometheus-alerts.json"), JSON.stringify({ timeScale: TIME_SCALE, interval: INTERVAL, timings }, null, 2));
});
