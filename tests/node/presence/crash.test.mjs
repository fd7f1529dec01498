// An instance that dies without saying goodbye (SIGKILL): the survivor notices its missing heartbeats within the
// TTL and broadcasts `offline` for users who had no other socket (not for those still connected elsewhere), and
// its Valkey entries are cleaned up. A clean shutdown (SIGTERM) hands its users over after the grace period.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect, startGateway, sleep, assertAlive } from "../lib/gateway.mjs";
import { stopProcess } from "../lib/procs.mjs";
import { startValkey, redisClient, closeAllRedis } from "../lib/valkey.mjs";
import { startRelayStack, relayEnv, waitRelay } from "../relay/helpers.mjs";
import {
  presenceEnv,
  presenceRecorder,
  expectUpdates,
  expectQuiet,
  workspacePresence,
  presenceMembers,
  GRACE_MS,
  HEARTBEAT_MS,
  TTL_MS,
  P,
} from "./helpers.mjs";

let valkey, s, A, B, redis;
let ids;
before(async () => {
  valkey = await startValkey();
  redis = redisClient(valkey.url);
  s = await startRelayStack({ valkeyUrl: valkey.url, gateways: 2, gatewayEnv: presenceEnv() });
  [A, B] = s.gws;
  ids = Object.fromEntries(Object.entries(s.users).map(([k, u]) => [k, u.id]));
});
after(async () => {
  await s?.stop();
  closeAllRedis();
  await valkey?.stop();
});

test(`SIGKILL of instance A → its users go offline on B within TTL + heartbeat (${TTL_MS} + ${HEARTBEAT_MS} ms)`, async (t) => {
  // alice and carol only on A; dave on A and on B; bob (the observer) on B.
  const [, , , bobB, daveB] = await Promise.all([
    connect(A.url, s.cookies.alice),
    connect(A.url, s.cookies.carol),
    connect(A.url, s.cookies.dave),
    connect(B.url, s.cookies.bob),
    connect(B.url, s.cookies.dave),
  ]);
  await sleep(2 * HEARTBEAT_MS);
  const membersBefore = (await presenceMembers(redis)).live;
  assert.equal(membersBefore.length, 2);
  assert.deepEqual(await workspacePresence(redis, "w1"), { [ids.alice]: "online", [ids.bob]: "online", [ids.carol]: "online" });

  const rec = presenceRecorder({ bobB, daveB });
  const killedAt = Date.now();
  await stopProcess(A.proc, { signal: "SIGKILL" });
  const first = await expectUpdates(rec, ["bobB"], ids.alice, "offline", { ms: TTL_MS + HEARTBEAT_MS + 5000 });
  const measured = first.bobB.at - killedAt;
  t.diagnostic(`SIGKILL → offline on the survivor: ${measured} ms (heartbeat ${HEARTBEAT_MS} ms, TTL ${TTL_MS} ms)`);
  assert.ok(measured >= TTL_MS - HEARTBEAT_MS - 100, `offline after ${measured} ms: before the TTL could expire`);
  assert.ok(measured <= TTL_MS + HEARTBEAT_MS + 1000, `offline after ${measured} ms: later than TTL + heartbeat (+1 s)`);
  // lastSeen is A's last heartbeat.
  assert.ok(first.bobB.lastSeen <= killedAt + 50, `lastSeen ${first.bobB.lastSeen - killedAt} ms after the kill`);
  assert.ok(first.bobB.lastSeen >= killedAt - HEARTBEAT_MS - 500, `lastSeen ${killedAt - first.bobB.lastSeen} ms before the kill`);

  await expectUpdates(rec, ["bobB"], ids.carol, "offline", { none: ["daveB"] });
  assert.deepEqual(rec.statuses(ids.alice).daveB, ["offline"], "dave (w2) is told about alice");
  // dave still has his socket on B: no update for him.
  assert.deepEqual(rec.statuses(ids.dave), { bobB: [], daveB: [] });
  rec.stop();

  // Cleaned up: only B heartbeats, nothing left of A.
  const membersAfter = await presenceMembers(redis);
  assert.equal(membersAfter.live.length, 1, JSON.stringify(membersAfter));
  const dead = membersBefore.find((m) => !membersAfter.live.includes(m));
  assert.equal(await redis.exists(`${P}:users:${dead}`), 0);
  assert.deepEqual(membersAfter.claimed, []);
  assert.deepEqual(await workspacePresence(redis, "w1"), { [ids.bob]: "online" });
  assert.deepEqual(await workspacePresence(redis, "w2"), { [ids.dave]: "online" });
  const dave = await redis.hgetall(`${P}:user:${ids.dave}`);
  assert.equal(Object.keys(dave).filter((f) => f.startsWith("p:")).length, 1, JSON.stringify(Object.keys(dave)));
  assertAlive(B);
});

test("SIGTERM of instance C: a user who reconnects elsewhere within the grace period stays online; one who does not goes offline after it", async (t) => {
  // A short drain window: the grace period is what this test times, not the drain's spreading.
  const C = await startGateway({
    appUrl: s.app.url,
    env: relayEnv(valkey.url, { ...presenceEnv(), GATEWAY_SERVER__DRAIN_WINDOW_MS: "100" }),
  });
  try {
    await waitRelay(C, "up");
    const bobB = await connect(B.url, s.cookies.bob);
    const rec0 = presenceRecorder({ bobB });
    await Promise.all([connect(C.url, s.cookies.alice), connect(C.url, s.cookies.carol)]);
    await rec0.waitAll(["bobB"], ids.alice, "online");
    await rec0.waitAll(["bobB"], ids.carol, "online");
    rec0.stop();

    const rec = presenceRecorder({ bobB });
    const stoppedAt = Date.now();
    await stopProcess(C.proc);
    // alice's page reconnects to B at once; carol's does not.
    await connect(B.url, s.cookies.alice);
    const first = await expectUpdates(rec, ["bobB"], ids.carol, "offline", { ms: GRACE_MS + TTL_MS + 5000 });
    const measured = first.bobB.at - stoppedAt;
    t.diagnostic(`SIGTERM → offline on the survivor: ${measured} ms (grace ${GRACE_MS} ms, heartbeat ${HEARTBEAT_MS} ms)`);
    assert.ok(measured >= GRACE_MS - 100, `offline after ${measured} ms, within the grace period`);
    assert.ok(measured <= GRACE_MS + HEARTBEAT_MS + 1500, `offline after ${measured} ms`);
    // lastSeen: when C left (not its shifted heartbeat score).
    assert.ok(first.bobB.lastSeen >= stoppedAt - 50, `lastSeen ${stoppedAt - first.bobB.lastSeen} ms before the stop`);
    assert.ok(first.bobB.lastSeen <= stoppedAt + 1000, `lastSeen ${first.bobB.lastSeen - stoppedAt} ms after the stop`);
    await expectQuiet(rec, ids.alice, 500);
    rec.stop();
    assert.equal((await workspacePresence(redis, "w1"))[ids.alice], "online");
    // C's entry went with its users: only B is registered.
    const members = await presenceMembers(redis);
    assert.equal(members.live.length, 1, JSON.stringify(members));
    assert.deepEqual(members.claimed, []);
  } finally {
    await C.stop();
  }
});
