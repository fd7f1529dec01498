// Valkey lost mid-run: killed (SIGKILL) while messages flow between two gateways, restarted on the same port.
// The gateways must keep serving their own sockets (acks, local delivery, no disconnects), report
// relay "down" on /readyz, then resubscribe by themselves ("relay connected", relay "up") and relay again.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect, emitAck, assertAlive, sleep } from "../lib/gateway.mjs";
import { startValkey, redisClient, closeAllRedis, pubsubNumsub, until, singleNodeFault } from "../lib/valkey.mjs";
import { startRelayStack, waitRelay, readyz, recorder, assertExactlyOnce } from "./helpers.mjs";

let valkey, s, A, B;
let aliceA, bobA, bobB, aliceB;
const disconnects = [];
before(async () => {
  valkey = await startValkey();
  s = await startRelayStack({ valkeyUrl: valkey.url, gateways: 2 });
  [A, B] = s.gws;
  [aliceA, bobA, bobB, aliceB] = await Promise.all([
    connect(A.url, s.cookies.alice),
    connect(A.url, s.cookies.bob),
    connect(B.url, s.cookies.bob),
    connect(B.url, s.cookies.alice, { transports: ["polling"] }),
  ]);
  for (const [name, sock] of Object.entries({ aliceA, bobA, bobB, aliceB })) {
    sock.on("disconnect", (reason) => disconnects.push(`${name}: ${reason}`));
  }
});
after(async () => {
  await s?.stop();
  closeAllRedis();
  await valkey?.stop();
});

const count = (text, re) => (text.match(re) ?? []).length;

test("SIGKILL Valkey during traffic, restart on the same port: down, local-only, then up and relaying again", { skip: singleNodeFault }, async (t) => {
  const tag = `flow ${Date.now()}`;
  const seen = { bobA: new Map(), bobB: new Map() };
  const onMsg = (who) => (m) => {
    if (typeof m?.content === "string" && m.content.startsWith(tag)) seen[who].set(m.content, Date.now());
  };
  bobA.on("message:new", onMsg("bobA"));
  bobB.on("message:new", onMsg("bobB"));

  // Traffic: alice on A sends to c1 every 100 ms; every send must be acked within 3 s whatever Valkey does.
  let i = 0;
  let running = true;
  const sends = []; // {content, at, ack, ackMs, error}
  const pump = (async () => {
    while (running) {
      const content = `${tag} ${i++}`;
      const rec = { content, at: Date.now() };
      sends.push(rec);
      emitAck(aliceA, "message:send", { channelId: "c1", content }).then(
        (ack) => {
          rec.ack = ack;
          rec.ackMs = Date.now() - rec.at;
        },
        (err) => {
          rec.error = err.message;
        },
      );
      await sleep(100);
    }
  })();

  try {
    // 1. Relaying before the outage.
    await until(() => seen.bobB.size >= 3, { ms: 5000, what: "relayed messages on bobB before the outage" });

    // 2. Kill Valkey: both gateways go "down" and log it.
    const killedAt = Date.now();
    await valkey.kill();
    const downA = await waitRelay(A, "down", 6000);
    const downB = await waitRelay(B, "down", 6000);
    t.diagnostic(`relay "down" on /readyz ${downA} ms (A) / ${Date.now() - killedAt} ms (B, after A) after the kill`);
    for (const gw of [A, B]) {
      const r = await readyz(gw);
      assert.equal(r.status, 200, "a degraded relay must not make the instance unready");
      assert.equal(r.body.ready, true);
      assert.match(gw.output(), /relay degraded/, `no "relay degraded" log line on ${gw.url}`);
    }
    void downB;

    // 3. While Valkey is away: acks keep coming, local delivery on A goes on.
    const outageStart = sends.length;
    await sleep(1500);
    const duringOutage = sends.slice(outageStart, sends.length - 5); // leave the last in-flight ones
    assert.ok(duringOutage.length >= 5, "the traffic pump stalled");
    for (const r of duringOutage) {
      assert.equal(r.error, undefined, `send "${r.content}" during the outage: ${r.error}`);
      assert.equal(r.ack?.ok, true, `send "${r.content}" during the outage acked ${JSON.stringify(r.ack)}`);
      assert.ok(seen.bobA.has(r.content), `"${r.content}" (sent during the outage) not delivered locally on A`);
    }

    // 4. Restart on the same port and time the first relayed message.
    const restartT0 = Date.now();
    await valkey.restart();
    const restartedAt = Date.now();
    const upAt = Promise.all([A, B].map((gw) => waitRelay(gw, "up", 8000).then(() => Date.now())));
    upAt.catch(() => {}); // awaited below; keeps an early failure above from becoming an unhandled rejection
    const firstAfter = await until(
      () => {
        const after = [...seen.bobB.entries()].filter(([c]) => {
          const r = sends.find((x) => x.content === c);
          return r && r.at >= restartedAt;
        });
        return after.length ? Math.min(...after.map(([, at]) => at)) : false;
      },
      { ms: 8000, everyMs: 20, what: "first message relayed A → B after the Valkey restart" },
    );
    const [upA, upB] = await upAt;
    t.diagnostic(
      `valkey restart took ${restartedAt - restartT0} ms; after Valkey answered PING: first relayed message A → B ` +
        `${firstAfter - restartedAt} ms, /readyz "up" ${upA - restartedAt} ms (A) / ${upB - restartedAt} ms (B) ` +
        `(polled every 50 ms, sends every 100 ms)`,
    );
    for (const gw of [A, B]) {
      assert.ok(count(gw.output(), /relay connected/g) >= 2, `${gw.url}: expected "relay connected" at start and after the restart`);
    }
    // The per-room subscriptions are back (c1 has local members on both gateways).
    const admin = redisClient(valkey.url);
    await until(async () => (await pubsubNumsub(admin, ["socket.io#/#channel:c1#"]))["socket.io#/#channel:c1#"] === 2, {
      ms: 3000,
      what: "NUMSUB socket.io#/#channel:c1# = 2 after the restart",
    });
  } finally {
    running = false;
    await pump;
    bobA.removeAllListeners("message:new");
    bobB.removeAllListeners("message:new");
  }
  // Every send got its ack (including those in flight at the kill).
  await sleep(500);
  const unanswered = sends.filter((r) => !r.ack && !r.error);
  assert.deepEqual(unanswered.map((r) => r.content), [], "sends without an ack");
  const failed = sends.filter((r) => r.error || r.ack?.ok !== true);
  assert.deepEqual(failed.map((r) => `${r.content}: ${r.error ?? JSON.stringify(r.ack)}`), [], "failed sends");
  const slowest = Math.max(...sends.map((r) => r.ackMs ?? 0));
  t.diagnostic(
    `${sends.length} sends, slowest ack ${slowest} ms, local on A ${seen.bobA.size}, relayed to B ${seen.bobB.size} ` +
      `(the ${sends.length - seen.bobB.size} sent while the relay was down are not replayed, as with Node's adapter)`,
  );
  assert.equal(seen.bobA.size, sends.length, "local delivery on A lost messages");
});

test("after the restart: both directions relay exactly once; no socket was disconnected; gateways alive", { skip: singleNodeFault }, async () => {
  for (const [sender, label] of [[aliceA, "A → B"], [bobB, "B → A"]]) {
    const content = `after ${label} ${Date.now()}`;
    const rec = recorder({ aliceA, bobA, bobB, aliceB }, "message:new", (m) => m?.content === content);
    const ack = await emitAck(sender, "message:send", { channelId: "c1", content });
    assert.equal(ack?.ok, true, JSON.stringify(ack));
    await assertExactlyOnce(rec, ["aliceA", "bobA", "bobB", "aliceB"], [], { label });
  }
  assert.deepEqual(disconnects, [], "client sockets were disconnected during the outage");
  assertAlive(A);
  assertAlive(B);
});

test("a second kill/restart cycle also recovers (the retry loop is not one-shot)", { skip: singleNodeFault }, async (t) => {
  await valkey.kill();
  await waitRelay(A, "down", 6000);
  await sleep(2500); // longer than the maximum backoff: the gateways retry several times against a closed port
  const t0 = Date.now();
  await valkey.restart();
  await waitRelay(A, "up", 8000);
  await waitRelay(B, "up", 8000);
  t.diagnostic(`second restart: both "up" ${Date.now() - t0} ms after Valkey started`);
  const content = `cycle2 ${Date.now()}`;
  const rec = recorder({ aliceA, bobA, bobB, aliceB }, "message:new", (m) => m?.content === content);
  // "up" means resubscribed (rooms included): the first message after it must be relayed.
  const ack = await emitAck(aliceA, "message:send", { channelId: "c1", content });
  assert.equal(ack?.ok, true, JSON.stringify(ack));
  await assertExactlyOnce(rec, ["aliceA", "bobA", "bobB", "aliceB"], [], { label: "cycle 2" });
  assert.deepEqual(disconnects, []);
});

test("Valkey frozen (SIGSTOP, connections open but silent): acks and local delivery go on, relay 'down', SIGCONT → 'up'", { skip: singleNodeFault }, async (t) => {
  const tag = `frozen ${Date.now()}`;
  const local = new Set();
  const onLocal = (m) => typeof m?.content === "string" && m.content.startsWith(tag) && local.add(m.content);
  bobA.on("message:new", onLocal);
  const slow = [];
  let i = 0;
  const send = async () => {
    const content = `${tag} ${i++}`;
    const t0 = Date.now();
    const ack = await emitAck(aliceA, "message:send", { channelId: "c1", content });
    const ms = Date.now() - t0;
    if (ack?.ok !== true || ms > 2500) slow.push(`${content}: ${ms} ms ${JSON.stringify(ack)}`);
    return content;
  };
  try {
    const frozenAt = Date.now();
    valkey.pause();
    const down = waitRelay(A, "down", 12000).then(() => Date.now());
    down.catch(() => {});
    let downAt = null;
    down.then((at) => (downAt = at), () => {});
    const sent = [];
    while (downAt === null && Date.now() - frozenAt < 12500) {
      sent.push(await send());
      await sleep(200);
    }
    await down; // rethrows when "down" never came
    t.diagnostic(`frozen Valkey: /readyz "down" on A ${downAt - frozenAt} ms after SIGSTOP; ${sent.length} sends meanwhile`);
    assert.deepEqual(slow, [], "sends acked late or refused while Valkey was frozen");
    await sleep(200);
    const missing = sent.filter((c) => !local.has(c));
    assert.deepEqual(missing, [], "local delivery on A stalled while Valkey was frozen");
  } finally {
    valkey.resume();
    bobA.off("message:new", onLocal);
  }
  const resumedAt = Date.now();
  await waitRelay(A, "up", 8000);
  await waitRelay(B, "up", 8000);
  t.diagnostic(`SIGCONT: both "up" ${Date.now() - resumedAt} ms later`);
  const content = `after thaw ${Date.now()}`;
  const rec = recorder({ aliceA, bobA, bobB, aliceB }, "message:new", (m) => m?.content === content);
  const ack = await emitAck(aliceA, "message:send", { channelId: "c1", content });
  assert.equal(ack?.ok, true, JSON.stringify(ack));
  await assertExactlyOnce(rec, ["aliceA", "bobA", "bobB", "aliceB"], [], { label: "after SIGCONT" });
  assert.deepEqual(disconnects, []);
  assertAlive(A);
  assertAlive(B);
});
