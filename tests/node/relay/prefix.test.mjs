// GATEWAY_REDIS__PREFIX: a gateway with prefix "chatx" talks to Node peers and emitters using key "chatx"
// (channels chatx#/#…, chatx-request#/#) and is invisible to those on the default "socket.io" key.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Emitter } from "@socket.io/redis-emitter";
import { connect, emitAck, expectNothing } from "../lib/gateway.mjs";
import { startValkey, redisClient, closeAllRedis, pubsubChannels, pubsubNumsub } from "../lib/valkey.mjs";
import { startRelayStack, startNodePeer, peerClient, recorder, assertExactlyOnce } from "./helpers.mjs";

let valkey, s, G, admin, pChat, pDefault;
let alice, bob;
const peerClients = [];
before(async () => {
  valkey = await startValkey();
  s = await startRelayStack({ valkeyUrl: valkey.url, gateways: 1, gatewayEnv: { GATEWAY_REDIS__PREFIX: "chatx" } });
  [G] = s.gws;
  admin = redisClient(valkey.url);
  [pChat, pDefault] = await Promise.all([startNodePeer(valkey.url, { key: "chatx" }), startNodePeer(valkey.url)]);
  [alice, bob] = await Promise.all([connect(G.url, s.cookies.alice), connect(G.url, s.cookies.bob)]);
});
after(async () => {
  for (const c of peerClients) c.close();
  await pChat?.close();
  await pDefault?.close();
  await s?.stop();
  closeAllRedis();
  await valkey?.stop();
});

test("the gateway's subscriptions use the prefix: chatx#/#<room># and chatx-request#/#, nothing under socket.io", async () => {
  const chat = await pubsubChannels(admin, "chatx#/#*");
  assert.ok(chat.includes("chatx#/#"), JSON.stringify(chat));
  assert.ok(chat.includes("chatx#/#channel:c1#"), JSON.stringify(chat));
  const req = await pubsubNumsub(admin, ["chatx-request#/#", "socket.io-request#/#"]);
  assert.equal(req["chatx-request#/#"], 2, "gateway + chatx peer on chatx-request#/#");
  assert.equal(req["socket.io-request#/#"], 1, "only the default peer on socket.io-request#/#");
  assert.deepEqual(await pubsubChannels(admin, "socket.io#/#*"), []);
});

test("emitter and Node peer with key 'chatx' reach the gateway; with the default key they do not", async () => {
  const tag = `prefix ${Date.now()}`;
  const rec = recorder({ alice, bob }, "px", (x) => x === tag);
  new Emitter(admin, { key: "chatx" }).to("channel:c1").emit("px", tag);
  await assertExactlyOnce(rec, ["alice", "bob"], [], { label: "chatx emitter" });

  const none = [alice, bob].map((sock) => expectNothing(sock, "px-default", 500));
  new Emitter(admin).to("channel:c1").emit("px-default", 1);
  pDefault.io.to("channel:c1").emit("px-default", 2);
  pDefault.io.emit("px-default", 3);
  await Promise.all(none);

  const sockets = await pChat.io.in("channel:c1").fetchSockets();
  assert.deepEqual(sockets.map((x) => x.id).sort(), [alice.id, bob.id].sort());
  const invisible = await pDefault.io.in("channel:c1").fetchSockets();
  assert.deepEqual(invisible, []);
});

test("gateway → chatx peer: a message:send reaches the chatx peer's c1 client, not the default peer's", async () => {
  const [pcChat, pcDefault] = await Promise.all([peerClient(pChat, ["channel:c1"]), peerClient(pDefault, ["channel:c1"])]);
  peerClients.push(pcChat, pcDefault);
  const content = `prefix msg ${Date.now()}`;
  const rec = recorder({ alice, bob, pcChat, pcDefault }, "message:new", (m) => m?.content === content);
  const ack = await emitAck(alice, "message:send", { channelId: "c1", content });
  assert.equal(ack?.ok, true, JSON.stringify(ack));
  await assertExactlyOnce(rec, ["alice", "bob", "pcChat"], ["pcDefault"], { label: "gateway → chatx peer" });
});
