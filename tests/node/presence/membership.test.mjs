// Presence follows live membership changes: a user added to a workspace through the app's emitter
// (socketsJoin) is announced to it and its later changes go there; a user removed (socketsLeave) is no longer
// listed in it and its later changes do not go there. Two gateways on one Valkey.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Emitter } from "@socket.io/redis-emitter";
import { connect, emitAck, sleep } from "../lib/gateway.mjs";
import { setMembership } from "../lib/app.mjs";
import { startValkey, redisClient, closeAllRedis, until } from "../lib/valkey.mjs";
import { startRelayStack } from "../relay/helpers.mjs";
import { presenceEnv, presenceRecorder, workspacePresence } from "./helpers.mjs";

let valkey, s, A, B, redis, emitter;

before(async () => {
  valkey = await startValkey();
  redis = redisClient(valkey.url);
  emitter = new Emitter(redisClient(valkey.url));
  s = await startRelayStack({ valkeyUrl: valkey.url, gateways: 2, gatewayEnv: presenceEnv() });
  [A, B] = s.gws;
});
after(async () => {
  await s?.stop();
  closeAllRedis();
  await valkey?.stop();
});

test("carol joins w2 live: dave (w2) hears her status from then on; she leaves: he hears nothing more", async () => {
  const carol = s.users.carol.id;
  const dave = await connect(B.url, s.cookies.dave);
  const carolSock = await connect(A.url, s.cookies.carol);
  const rec = presenceRecorder({ dave });
  await sleep(600);
  assert.deepEqual(rec.statuses(carol).dave, [], "not in w2 yet: dave hears nothing of carol");

  await setMembership(s.app.url, { op: "add", kind: "workspace", id: "w2", userId: carol });
  emitter.in(`user:${carol}`).socketsJoin("workspace:w2");
  await rec.waitAll(["dave"], carol, "online");
  await until(async () => (await workspacePresence(redis, "w2"))[carol] === "online", { what: "carol listed in w2" });

  assert.deepEqual(await emitAck(carolSock, "presence:setAway"), { ok: true });
  await rec.waitAll(["dave"], carol, "away");

  await setMembership(s.app.url, { op: "remove", kind: "workspace", id: "w2", userId: carol });
  emitter.in(`user:${carol}`).socketsLeave("workspace:w2");
  await until(async () => (await workspacePresence(redis, "w2"))[carol] === undefined, { what: "carol no longer listed in w2" });
  rec.clear();
  assert.deepEqual(await emitAck(carolSock, "presence:setActive"), { ok: true });
  await sleep(800);
  assert.deepEqual(rec.statuses(carol).dave, [], "after leaving w2 her changes do not go there");
  rec.stop();
  carolSock.close();
  dave.close();
});
