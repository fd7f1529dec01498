// Presence over two gateway instances on one Valkey: a user's status aggregates all their sockets on both
// instances; `presence:update` reaches the workspace rooms on both instances once per real change, after the
// grace period for disconnects, never for a reload within it, and once even when both instances race.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect, emitAck, sleep, assertAlive } from "../lib/gateway.mjs";
import { startValkey, redisClient, closeAllRedis } from "../lib/valkey.mjs";
import { startRelayStack } from "../relay/helpers.mjs";
import { presenceEnv, presenceRecorder, expectUpdates, expectQuiet, workspacePresence, presenceMembers, GRACE_MS, P } from "./helpers.mjs";

let valkey, s, A, B, redis;
let bobB, carolA, daveB;
let alice, bob;
before(async () => {
  valkey = await startValkey();
  redis = redisClient(valkey.url);
  s = await startRelayStack({ valkeyUrl: valkey.url, gateways: 2, gatewayEnv: presenceEnv() });
  [A, B] = s.gws;
  alice = s.users.alice.id;
  bob = s.users.bob.id;
  // Observers: bob (w1) on B, carol (w1) on A, dave (w2) on B.
  [bobB, carolA, daveB] = await Promise.all([
    connect(B.url, s.cookies.bob),
    connect(A.url, s.cookies.carol),
    connect(B.url, s.cookies.dave),
  ]);
  await sleep(300);
});
after(async () => {
  await s?.stop();
  closeAllRedis();
  await valkey?.stop();
});

let aliceA, aliceB;

test("alice connects on A → `online` once on bob (B), carol (A) and dave (B, shares w2 only), lastSeen in ms", async () => {
  const rec = presenceRecorder({ bobB, carolA, daveB });
  const t0 = Date.now();
  aliceA = await connect(A.url, s.cookies.alice);
  const first = await expectUpdates(rec, ["bobB", "carolA", "daveB"], alice, "online");
  rec.stop();
  for (const u of Object.values(first)) {
    assert.deepEqual(Object.keys(u).sort(), ["at", "lastSeen", "status", "userId"]);
    assert.equal(typeof u.lastSeen, "number");
    assert.ok(Math.abs(u.lastSeen - t0) < 5000, `lastSeen ${u.lastSeen} is not near ${t0}`);
  }
  assert.deepEqual(await workspacePresence(redis, "w2"), { [alice]: "online", [s.users.dave.id]: "online" });
});

test("a second socket of alice, on B → no update (she is online already)", async () => {
  const rec = presenceRecorder({ bobB, carolA, daveB });
  aliceB = await connect(B.url, s.cookies.alice);
  await expectQuiet(rec, alice, 800);
  rec.stop();
});

test("setAway on one of alice's sockets → nothing; on both → `away` once everywhere; setActive on A → `online`", async () => {
  const rec = presenceRecorder({ bobB, carolA, daveB });
  assert.deepEqual(await emitAck(aliceA, "presence:setAway"), { ok: true });
  await expectQuiet(rec, alice, 700);
  aliceB.emit("presence:setAway");
  await expectUpdates(rec, ["bobB", "carolA", "daveB"], alice, "away");
  assert.equal((await workspacePresence(redis, "w1"))[alice], "away");
  rec.clear();
  aliceA.emit("presence:setActive");
  await expectUpdates(rec, ["bobB", "carolA", "daveB"], alice, "online");
  rec.stop();
  assert.equal((await workspacePresence(redis, "w1"))[alice], "online");
});

test("bob on B goes away and back → alice sees it on A and on B; dave (not in w1) does not", async () => {
  const rec = presenceRecorder({ aliceA, aliceB, carolA, daveB });
  bobB.emit("presence:setAway");
  await expectUpdates(rec, ["aliceA", "aliceB", "carolA"], bob, "away", { none: ["daveB"] });
  rec.clear();
  bobB.emit("presence:setActive");
  await expectUpdates(rec, ["aliceA", "aliceB", "carolA"], bob, "online", { none: ["daveB"] });
  rec.stop();
});

test("alice closes her B socket (away; A is active) → no update, even after the grace period", async () => {
  const rec = presenceRecorder({ bobB, carolA, daveB });
  aliceB.close();
  await expectQuiet(rec, alice, GRACE_MS + 1000);
  rec.stop();
});

test("page reload within the grace period (A socket closes, a new one opens on B) → no offline, no online", async () => {
  const rec = presenceRecorder({ bobB, carolA, daveB });
  aliceA.close();
  await sleep(200);
  aliceB = await connect(B.url, s.cookies.alice);
  await expectQuiet(rec, alice, GRACE_MS + 1000);
  rec.stop();
});

test("alice's last socket closes → `offline` once everywhere, only after the grace period, lastSeen = disconnect time", async () => {
  const rec = presenceRecorder({ bobB, carolA, daveB });
  const t0 = Date.now();
  aliceB.close();
  const first = await expectUpdates(rec, ["bobB", "carolA", "daveB"], alice, "offline", { ms: GRACE_MS + 5000 });
  rec.stop();
  for (const [name, u] of Object.entries(first)) {
    assert.ok(u.at - t0 >= GRACE_MS - 100, `${name} got offline ${u.at - t0} ms after the close (grace ${GRACE_MS})`);
    assert.ok(Math.abs(u.lastSeen - t0) < 1000, `${name}: lastSeen ${u.lastSeen - t0} ms from the close`);
  }
  // What the app reads: alice is gone from her workspaces; her status and lastSeen stay (with a TTL).
  assert.deepEqual(await workspacePresence(redis, "w1"), { [bob]: "online", [s.users.carol.id]: "online" });
  assert.deepEqual(await workspacePresence(redis, "w2"), { [s.users.dave.id]: "online" });
  const user = await redis.hgetall(`${P}:user:${alice}`);
  assert.deepEqual(Object.keys(user).sort(), ["lastSeen", "status"]);
  assert.equal(user.status, "offline");
  assert.equal(Number(user.lastSeen), first.bobB.lastSeen);
  const ttl = await redis.pttl(`${P}:user:${alice}`);
  assert.ok(ttl > 0, `the offline user's key has no TTL (${ttl})`);
});

test("racing: alice connects on A and B at once → one `online` per observer; both close at once → one `offline`", async () => {
  const rec = presenceRecorder({ bobB, carolA, daveB });
  const [x, y] = await Promise.all([connect(A.url, s.cookies.alice), connect(B.url, s.cookies.alice)]);
  await expectUpdates(rec, ["bobB", "carolA", "daveB"], alice, "online");
  rec.clear();
  x.close();
  y.close();
  await expectUpdates(rec, ["bobB", "carolA", "daveB"], alice, "offline", { ms: GRACE_MS + 5000, settleMs: 800 });
  rec.stop();
  assertAlive(A);
  assertAlive(B);
});

test("presence keys in Valkey stay bounded: each instance lists only the users it has sockets of, both instances heartbeating", async () => {
  const members = await presenceMembers(redis);
  assert.equal(members.live.length, 2, JSON.stringify(members));
  const users = [];
  for (const m of members.live) users.push(...(await redis.smembers(`${P}:users:${m}`)));
  // bob, carol and dave are the only users connected now.
  assert.deepEqual(users.sort(), [bob, s.users.carol.id, s.users.dave.id].sort());
  assert.deepEqual(members.claimed, []);
});
