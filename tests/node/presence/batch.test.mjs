// Presence updates coalesced over presence.batch_ms, on two instances sharing Valkey, with connection state
// recovery off and on (then every update is recorded with its own offset): a flap within the window shrinks to its
// last status (delivery is at least once, so that may repeat the status the rooms have), users connecting at once
// reach an observer exactly once each (together when one instance decided them), and a real change still arrives,
// after the window.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect, emitAck, sleep, assertAlive } from "../lib/gateway.mjs";
import { startValkey, redisClient, closeAllRedis, flushAll } from "../lib/valkey.mjs";
import { startRelayStack } from "../relay/helpers.mjs";
import { presenceEnv, presenceRecorder, expectUpdates, BATCH_MS } from "./helpers.mjs";

let valkey;
before(async () => {
  valkey = await startValkey();
});
after(async () => {
  closeAllRedis();
  await valkey?.stop();
});

for (const recovery of [false, true]) {
  const mode = recovery ? "recovery on" : "recovery off";

  test(`${mode}: alice and bob connect at once on A → carol (A) and dave (B) get one \`online\` each, carol's together; a flap within the window → no \`away\`, at most a repeated \`online\`; a real change → once, after the window`, async () => {
    const redis = redisClient(valkey.url);
    await flushAll(redis);
    const s = await startRelayStack({
      valkeyUrl: valkey.url,
      gateways: 2,
      gatewayEnv: { ...presenceEnv(), GATEWAY_RECOVERY__ENABLED: String(recovery) },
    });
    try {
      const [A, B] = s.gws;
      const { alice, bob } = { alice: s.users.alice.id, bob: s.users.bob.id };
      // carol is in w1 (with alice and bob), dave in w2 (with alice only).
      const [carolA, daveB] = await Promise.all([connect(A.url, s.cookies.carol), connect(B.url, s.cookies.dave)]);
      await sleep(BATCH_MS + 300);

      const rec = presenceRecorder({ carolA, daveB });
      const [aliceA] = await Promise.all([connect(A.url, s.cookies.alice), connect(A.url, s.cookies.bob)]);
      await expectUpdates(rec, ["carolA", "daveB"], alice, "online", { settleMs: BATCH_MS + 400 });
      await expectUpdates(rec, ["carolA"], bob, "online", { none: ["daveB"], settleMs: 0 });
      const [a, b] = [rec.of("carolA", alice)[0], rec.of("carolA", bob)[0]];
      assert.ok(Math.abs(a.at - b.at) < 100, `carol got alice ${a.at - b.at} ms apart from bob`);
      rec.clear();

      // online → away → online within one window: only its last status can go out (again: at least once).
      const [ackAway, ackActive] = await Promise.all([
        emitAck(aliceA, "presence:setAway"),
        emitAck(aliceA, "presence:setActive"),
      ]);
      assert.deepEqual([ackAway, ackActive], [{ ok: true }, { ok: true }]);
      await sleep(BATCH_MS + 800);
      for (const [name, seen] of Object.entries(rec.statuses(alice))) {
        assert.ok(seen.length <= 1 && seen.every((st) => st === "online"), `${name} got ${JSON.stringify(seen)} after the flap`);
      }
      rec.clear();

      // A real change is sent once, when the window closes.
      const t0 = Date.now();
      aliceA.emit("presence:setAway");
      const first = await expectUpdates(rec, ["carolA", "daveB"], alice, "away");
      for (const [name, u] of Object.entries(first)) {
        assert.ok(u.at - t0 >= BATCH_MS - 30, `${name} got away ${u.at - t0} ms after setAway (window ${BATCH_MS})`);
      }
      rec.stop();
      assertAlive(A);
      assertAlive(B);
    } finally {
      await s.stop();
    }
  });
}
