// Presence on a single instance without Valkey (GATEWAY_REDIS__ENABLED=false): the status comes from the
// instance's own sockets, in memory, with the same rules: online / away / offline, grace period, one update per change.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startStack, connect, emitAck, sleep, assertAlive } from "../lib/gateway.mjs";
import { presenceEnv, presenceRecorder, expectUpdates, expectQuiet, GRACE_MS } from "./helpers.mjs";

let s, bob, carol, dave;
let alice;
before(async () => {
  s = await startStack({ gatewayEnv: { GATEWAY_REDIS__ENABLED: "false", ...presenceEnv() } });
  alice = s.users.alice.id;
  [bob, carol, dave] = await Promise.all([
    connect(s.url, s.cookies.bob),
    connect(s.url, s.cookies.carol),
    connect(s.url, s.cookies.dave),
  ]);
  await sleep(200);
});
after(async () => {
  await s?.stop();
});

let a1, a2;

test("without Valkey: alice connects → `online` once to her workspaces' sockets (bob, carol via w1; dave via w2)", async () => {
  const rec = presenceRecorder({ bob, carol, dave });
  const t0 = Date.now();
  a1 = await connect(s.url, s.cookies.alice);
  const first = await expectUpdates(rec, ["bob", "carol", "dave"], alice, "online");
  rec.stop();
  assert.equal(typeof first.bob.lastSeen, "number");
  assert.ok(Math.abs(first.bob.lastSeen - t0) < 5000);
  assert.match(s.gw.output(), /listening on/);
  assert.doesNotMatch(s.gw.output(), /presence: Valkey/);
});

test("without Valkey: second socket → nothing; away on one → nothing; away on both → `away`; active → `online`", async () => {
  const rec = presenceRecorder({ bob, carol, dave });
  a2 = await connect(s.url, s.cookies.alice);
  assert.deepEqual(await emitAck(a1, "presence:setAway"), { ok: true });
  await expectQuiet(rec, alice, 600);
  a2.emit("presence:setAway");
  await expectUpdates(rec, ["bob", "carol", "dave"], alice, "away");
  rec.clear();
  a2.emit("presence:setActive");
  await expectUpdates(rec, ["bob", "carol", "dave"], alice, "online");
  rec.stop();
});

test("without Valkey: a reload within the grace period → no update; the last socket gone → `offline` after the grace period", async () => {
  const rec = presenceRecorder({ bob, carol, dave });
  a1.close(); // the away one
  a2.close(); // the active one: alice has no socket now...
  await sleep(150);
  a1 = await connect(s.url, s.cookies.alice); // ...until the reload comes back
  await expectQuiet(rec, alice, GRACE_MS + 800);
  const t0 = Date.now();
  a1.close();
  const first = await expectUpdates(rec, ["bob", "carol", "dave"], alice, "offline", { ms: GRACE_MS + 4000 });
  rec.stop();
  assert.ok(first.bob.at - t0 >= GRACE_MS - 100, `offline after ${first.bob.at - t0} ms (grace ${GRACE_MS})`);
  assert.ok(Math.abs(first.bob.lastSeen - t0) < 500, `lastSeen ${first.bob.lastSeen - t0} ms from the close`);
  assertAlive(s.gw);
});

test("presence events on an unknown name are still refused; setAway takes no payload and ignores one", async () => {
  const rec = presenceRecorder({ bob, carol });
  assert.deepEqual(await emitAck(dave, "presence:setAway", { status: "busy" }), { ok: true });
  const got = await new Promise((resolve) => {
    dave.once("error", resolve);
    dave.emit("presence:setBusy");
  });
  assert.equal(got.code, "UNKNOWN_EVENT");
  // dave is only in w2: bob and carol (w1) hear nothing of him.
  await expectQuiet(rec, s.users.dave.id, 400);
  rec.stop();
  dave.emit("presence:setActive");
});
