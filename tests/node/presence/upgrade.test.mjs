// Gateways started on a Valkey that still holds the previous presence layout (left by an instance of the previous
// version that died): its keys and fields are ignored, and presence works. They are litter to delete once no
// previous instance runs (deploy/README.md, "Upgrading presence").
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect, assertAlive } from "../lib/gateway.mjs";
import { startValkey, redisClient, closeAllRedis } from "../lib/valkey.mjs";
import { startRelayStack } from "../relay/helpers.mjs";
import { presenceEnv, presenceRecorder, expectUpdates, GRACE_MS, P } from "./helpers.mjs";

let valkey, s, A, B, redis;
before(async () => {
  valkey = await startValkey();
  redis = redisClient(valkey.url);
  // The previous layout: a sorted set of instances, and one `s:<member>:<socketId>` field per socket in the users'
  // hashes (written once the users exist). This old instance had a socket of carol's and died; nobody of its
  // version is left to remove it.
  const old = "gw-previous.0";
  await redis.zadd(`${P}:instances`, Date.now(), old);
  s = await startRelayStack({ valkeyUrl: valkey.url, gateways: 2, gatewayEnv: presenceEnv() });
  [A, B] = s.gws;
  const carol = s.users.carol.id;
  await redis.sadd(`${P}:sockets:${old}`, `sid1|${carol}`);
  await redis.hset(`${P}:user:${carol}`, "status", "online", "lastSeen", String(Date.now()), `s:${old}:sid1`, "a\nw1");
});
after(async () => {
  await s?.stop();
  closeAllRedis();
  await valkey?.stop();
});

test("the previous layout's keys are ignored: updates cross instances, and carol goes offline when her last socket does", async () => {
  const [alice, carol] = [s.users.alice.id, s.users.carol.id];
  const bobB = await connect(B.url, s.cookies.bob);
  const rec = presenceRecorder({ bobB });
  await connect(A.url, s.cookies.alice);
  await expectUpdates(rec, ["bobB"], alice, "online");
  const carolA = await connect(A.url, s.cookies.carol);
  await rec.waitAll(["bobB"], carol, "online");
  carolA.close();
  await expectUpdates(rec, ["bobB"], carol, "offline", { ms: GRACE_MS + 5000, expected: ["online", "offline"] });
  rec.stop();
  assert.doesNotMatch(A.output() + B.output(), /presence: Valkey unavailable/);
  assertAlive(A);
  assertAlive(B);
});
