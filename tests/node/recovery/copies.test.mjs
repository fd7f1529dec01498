// With recovery on, a gateway's broadcast is recorded by one script that publishes it twice: the copy with
// its offset, which the gateways deliver, on the recovery channel, and the plain copy for Node servers, on
// the adapter's channel. The gateways' copy is published first. On a Valkey Cluster each node forwards what
// is published to the others over the cluster bus, whose outgoing links run with Nagle's algorithm (Valkey
// 9.1 sets no TCP_NODELAY on them): a second message right behind the first waits for the other node's
// delayed ACK, about 40 ms (BENCHMARKS.md, "The cluster bus holds a second message"). The copy sockets wait
// for must not be that second message.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect, emitAck, closeAllClients } from "../lib/gateway.mjs";
import { startValkey, redisClient, closeAllRedis, until } from "../lib/valkey.mjs";
import { startRelayStack } from "../relay/helpers.mjs";
import { recoveryEnv } from "./helpers.mjs";

const PLAIN = "socket.io#/#channel:c1#";
const RECORDED = "socket.io-csr#/#channel:c1#";
let valkey, s;

before(async () => {
  valkey = await startValkey();
  s = await startRelayStack({ valkeyUrl: valkey.url, gateways: 1, gatewayEnv: recoveryEnv(valkey.url) });
});
after(async () => {
  closeAllClients();
  await s?.stop();
  closeAllRedis();
  await valkey?.stop();
});

test("a gateway's recorded broadcast: the copy with the offset is published before Node servers' plain copy", async () => {
  const sub = redisClient(valkey.url);
  const seen = [];
  sub.on("messageBuffer", (channel, message) => seen.push({ channel: channel.toString(), message: message.toString("latin1") }));
  await sub.subscribe(PLAIN, RECORDED);
  const [gw] = s.gws;
  const alice = await connect(gw.url, s.cookies.alice, { transports: ["websocket"] });
  const bob = await connect(gw.url, s.cookies.bob, { transports: ["websocket"] });
  const tags = ["order-1", "order-2", "order-3"];
  for (const tag of tags) await emitAck(bob, "message:send", { channelId: "c1", content: tag });
  const copies = (tag) => seen.filter((m) => m.message.includes(tag)).map((m) => m.channel);
  await until(() => tags.every((tag) => copies(tag).length === 2), { what: "both copies of every message" });
  for (const tag of tags) assert.deepEqual(copies(tag), [RECORDED, PLAIN], `the copies of ${tag}, in the order published`);
  alice.close();
  bob.close();
});
