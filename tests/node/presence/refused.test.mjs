// A presence write Valkey refuses (here a user's key of another type, as a stray script could leave): that user is
// decided from the instance's memory, and presence keeps working across instances for everybody else (the instance
// does not give up on Valkey for one broken key).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect, sleep, assertAlive } from "../lib/gateway.mjs";
import { startValkey, redisClient, closeAllRedis } from "../lib/valkey.mjs";
import { startRelayStack } from "../relay/helpers.mjs";
import { presenceEnv, presenceRecorder, expectUpdates, workspacePresence, BATCH_MS, P } from "./helpers.mjs";

let valkey, s, A, B, redis;
before(async () => {
  valkey = await startValkey();
  redis = redisClient(valkey.url);
  s = await startRelayStack({ valkeyUrl: valkey.url, gateways: 2, gatewayEnv: presenceEnv() });
  [A, B] = s.gws;
});
after(async () => {
  await s?.stop();
  closeAllRedis();
  await valkey?.stop();
});

test("carol's presence key is not a hash: her connect on A is refused, yet alice's `online` from A still reaches bob on B", async () => {
  const [alice, carol] = [s.users.alice.id, s.users.carol.id];
  await redis.set(`${P}:user:${carol}`, "not a hash");
  const bobB = await connect(B.url, s.cookies.bob);
  await connect(A.url, s.cookies.carol);
  await sleep(BATCH_MS + 300);

  const rec = presenceRecorder({ bobB });
  await connect(A.url, s.cookies.alice);
  await expectUpdates(rec, ["bobB"], alice, "online");
  rec.stop();
  assert.equal((await workspacePresence(redis, "w1"))[alice], "online");
  assert.equal(await redis.get(`${P}:user:${carol}`), "not a hash", "the broken key is left alone");
  assert.match(A.output(), /presence: Valkey refused/);
  assert.doesNotMatch(A.output(), /presence: Valkey unavailable/);
  assertAlive(A);
  assertAlive(B);
});
