// Valkey trouble. Frozen (SIGSTOP) for several TTLs then resumed: every heartbeat is late, yet nobody is taken
// for dead and nobody's status flaps. Killed: each instance keeps presence for its own sockets from memory;
// restarted empty: the instances rebuild their entries and presence works across instances again.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { isDeepStrictEqual } from "node:util";
import { connect, sleep, assertAlive } from "../lib/gateway.mjs";
import { startValkey, redisClient, closeAllRedis, until, singleNodeFault } from "../lib/valkey.mjs";
import { startRelayStack, waitRelay } from "../relay/helpers.mjs";
import { presenceEnv, presenceRecorder, expectUpdates, expectQuiet, workspacePresence, presenceMembers, GRACE_MS, HEARTBEAT_MS, TTL_MS, BATCH_MS } from "./helpers.mjs";

let valkey, s, A, B, redis;
let ids;
let aliceA, carolA, daveA, bobB;
before(async () => {
  valkey = await startValkey();
  redis = redisClient(valkey.url);
  s = await startRelayStack({ valkeyUrl: valkey.url, gateways: 2, gatewayEnv: presenceEnv() });
  [A, B] = s.gws;
  ids = Object.fromEntries(Object.entries(s.users).map(([k, u]) => [k, u.id]));
  [aliceA, carolA, daveA, bobB] = await Promise.all([
    connect(A.url, s.cookies.alice),
    connect(A.url, s.cookies.carol),
    connect(A.url, s.cookies.dave),
    connect(B.url, s.cookies.bob),
  ]);
  await sleep(2 * HEARTBEAT_MS);
});
after(async () => {
  if (valkey?.topology === "single" && valkey.running()) valkey.resume();
  await s?.stop();
  closeAllRedis();
  await valkey?.stop();
});

test(`Valkey frozen for ${3 * TTL_MS} ms (3 TTLs), then resumed → nobody is taken for dead, no status flaps`, { skip: singleNodeFault }, async () => {
  const rec = presenceRecorder({ aliceA, carolA, daveA, bobB });
  valkey.proc.child.kill("SIGSTOP");
  try {
    await sleep(3 * TTL_MS);
  } finally {
    valkey.proc.child.kill("SIGCONT");
  }
  await expectQuiet(rec, undefined, 2 * TTL_MS + 2 * HEARTBEAT_MS);
  rec.stop();
  await until(async () => (await presenceMembers(redis)).live.length === 2, { ms: 5000, what: "two live members" });
  assert.deepEqual(await workspacePresence(redis, "w1"), {
    [ids.alice]: "online",
    [ids.bob]: "online",
    [ids.carol]: "online",
  });
  assertAlive(A);
  assertAlive(B);
});

test("Valkey killed → A still tells its own sockets (dave away, carol offline after the grace period), from memory", { skip: singleNodeFault }, async () => {
  await valkey.kill();
  await waitRelay(A, "down");
  const rec = presenceRecorder({ aliceA });
  daveA.emit("presence:setAway");
  await expectUpdates(rec, ["aliceA"], ids.dave, "away", { ms: 5000 });
  carolA.close();
  await expectUpdates(rec, ["aliceA"], ids.carol, "offline", { ms: GRACE_MS + 5000 });
  rec.stop();
  assert.match(A.output(), /presence: Valkey unavailable/);
});

test("Valkey restarted empty → both instances rebuild their entries; updates cross instances again", { skip: singleNodeFault }, async () => {
  await valkey.restart();
  await waitRelay(A, "up");
  await waitRelay(B, "up");
  await until(
    async () => {
      const [w1, w2] = [await workspacePresence(redis, "w1"), await workspacePresence(redis, "w2")];
      return (
        isDeepStrictEqual(w1, { [ids.alice]: "online", [ids.bob]: "online" }) &&
        isDeepStrictEqual(w2, { [ids.alice]: "online", [ids.dave]: "away" })
      );
    },
    { ms: 10 * HEARTBEAT_MS + 3000, what: "presence rebuilt in Valkey" },
  ).catch(async (err) => {
    throw new Error(`${err.message}; w1 ${JSON.stringify(await workspacePresence(redis, "w1"))} w2 ${JSON.stringify(await workspacePresence(redis, "w2"))}`);
  });
  assert.equal((await presenceMembers(redis)).live.length, 2);
  // The rebuilt entries count as changes: their updates go out when the window closes.
  await sleep(BATCH_MS + 300);

  const rec = presenceRecorder({ aliceA, bobB });
  daveA.emit("presence:setActive");
  await expectUpdates(rec, ["aliceA"], ids.dave, "online", { none: ["bobB"] });
  aliceA.close();
  await expectUpdates(rec, ["bobB"], ids.alice, "offline", { ms: GRACE_MS + 5000 });
  rec.stop();
  assertAlive(A);
  assertAlive(B);
});

test(`instance A frozen (SIGSTOP) past its TTL → taken for dead (its users offline), then back by itself (online again)`, async (t) => {
  const aliceB = await connect(B.url, s.cookies.alice);
  await sleep(2 * HEARTBEAT_MS);
  const rec = presenceRecorder({ aliceB });
  A.proc.child.kill("SIGSTOP");
  let resumedAt;
  try {
    await rec.waitAll(["aliceB"], ids.dave, "offline", TTL_MS + HEARTBEAT_MS + 5000);
  } finally {
    A.proc.child.kill("SIGCONT");
    resumedAt = Date.now();
  }
  const back = await rec.waitAll(["aliceB"], ids.dave, "online", 10 * HEARTBEAT_MS + 3000);
  t.diagnostic(`dave back online ${back.aliceB.at - resumedAt} ms after A resumed`);
  await sleep(500);
  assert.deepEqual(rec.statuses(ids.dave).aliceB, ["offline", "online"]);
  rec.stop();
  assert.equal((await workspacePresence(redis, "w2"))[ids.dave], "online");
  const members = await presenceMembers(redis);
  assert.equal(members.live.length, 2, JSON.stringify(members));
  assert.match(A.output(), /taken for dead/);
  assertAlive(A);
});
