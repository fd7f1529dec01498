// The relay at the size the issue asks about: 1,000 sockets on one gateway spread over 100 extra rooms
// (joined through the emitter's socketsJoin, as the app would). Counts the instance's Valkey subscriptions,
// then checks one emitter broadcast per room reaches exactly its 10 sockets.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Emitter } from "@socket.io/redis-emitter";
import { connect, closeAllClients } from "../lib/gateway.mjs";
import { startValkey, redisClient, closeAllRedis, pubsubChannels, until } from "../lib/valkey.mjs";
import { startRelayStack } from "./helpers.mjs";

const SOCKETS = 1000;
const ROOMS = 100;
let valkey, s, admin, emitter;
const socks = [];

before(async () => {
  valkey = await startValkey();
  // The handshake rate limit (limits.connect_rate_per_s) is not what this file measures.
  s = await startRelayStack({
    valkeyUrl: valkey.url,
    gateways: 1,
    gatewayEnv: { GATEWAY_LIMITS__CONNECT_RATE_PER_S: "100000" },
  });
  admin = redisClient(valkey.url);
  emitter = new Emitter(redisClient(valkey.url));
  const users = Object.keys(s.cookies);
  for (let i = 0; i < SOCKETS; i += 100) {
    const batch = [];
    for (let j = i; j < Math.min(i + 100, SOCKETS); j++) {
      batch.push(connect(s.gws[0].url, s.cookies[users[j % users.length]], { transports: ["websocket"] }));
    }
    socks.push(...(await Promise.all(batch)));
  }
});
after(async () => {
  closeAllClients();
  await s?.stop();
  closeAllRedis();
  await valkey?.stop();
});

test("1,000 sockets in 100 rooms: one subscription per room with members, each broadcast once per member", async (t) => {
  socks.forEach((sock, i) => emitter.in(sock.id).socketsJoin(`load:${i % ROOMS}`));
  const loadChannels = () =>
    pubsubChannels(admin).then((chs) => chs.filter((c) => c.startsWith("socket.io#/#load:")).length);
  await until(async () => (await loadChannels()) === ROOMS, { ms: 10000, what: `${ROOMS} load:* subscriptions` });

  const all = await pubsubChannels(admin, "*");
  const sidRooms = all.filter((c) => socks.some((sock) => c === `socket.io#/#${sock.id}#`)).length;
  const memberships = all.filter((c) => /^socket\.io#\/#(user|workspace|channel|dm):/.test(c)).length;
  t.diagnostic(
    `channel subscriptions of the instance: ${all.length} = ${ROOMS} load rooms + ${sidRooms} socket-id rooms + ` +
      `${memberships} membership rooms + ${all.length - ROOMS - sidRooms - memberships} fixed ` +
      `(namespace, request, lag probe)`,
  );
  assert.equal(sidRooms, 0, "socket-id rooms are followed by the gateway's one pattern");
  assert.equal(all.length - ROOMS - sidRooms - memberships, 3);

  const got = new Map();
  socks.forEach((sock, i) =>
    sock.on("load:ping", (room) => {
      assert.equal(room, i % ROOMS, `socket ${i} got room ${room}'s broadcast`);
      got.set(i, (got.get(i) ?? 0) + 1);
    }),
  );
  for (let r = 0; r < ROOMS; r++) emitter.to(`load:${r}`).emit("load:ping", r);
  await until(() => got.size === SOCKETS, { ms: 10000, what: `${SOCKETS} sockets served` });
  await new Promise((r) => setTimeout(r, 300));
  assert.ok([...got.values()].every((n) => n === 1), "every socket got its room's broadcast exactly once");
});
