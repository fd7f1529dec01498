// Connection state recovery across instances, with a real Valkey, two gateways, the app's emitter and a Node
// socket.io peer on @socket.io/redis-adapter: a client whose gateway is SIGKILLed comes back on the other one
// with its id, rooms and exactly the packets it missed, in order, once.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Emitter } from "@socket.io/redis-emitter";
import { connect, emitAck, closeAllClients, sleep } from "../lib/gateway.mjs";
import { startValkey, redisClient, closeAllRedis, until, valkeyTopology, allKeys } from "../lib/valkey.mjs";
import { startRelayStack, startNodePeer } from "../relay/helpers.mjs";
import { recoveryEnv, recoverable, nextConnect, closeRecoverable } from "./helpers.mjs";
import { parseOffset, offsetAfter } from "../lib/recovery-log.mjs";

let valkey, s, A, B, emitter, admin, peer;

before(async () => {
  valkey = await startValkey();
  s = await startRelayStack({ valkeyUrl: valkey.url, gateways: 2, gatewayEnv: recoveryEnv(valkey.url) });
  [A, B] = s.gws;
  admin = redisClient(valkey.url);
  emitter = new Emitter(redisClient(valkey.url));
  peer = await startNodePeer(valkey.url);
});
after(async () => {
  closeRecoverable();
  closeAllClients();
  await peer?.close();
  await s?.stop();
  closeAllRedis();
  await valkey?.stop();
});

const chat = (sock) =>
  sock.got
    .filter((g) => ["message:new", "news", "peer-news"].includes(g.event))
    .map((g) => ({ tag: g.event === "message:new" ? g.args[0].content : g.args[0], offset: g.offset }));

test("CONNECT carries a pid and every broadcast its offset as the last argument", async () => {
  const alice = await recoverable(A.url, s.cookies.alice);
  const bob = await connect(B.url, s.cookies.bob, { transports: ["websocket"] });
  assert.equal(typeof alice._pid, "string", "the CONNECT reply carries a pid");
  await emitAck(bob, "message:send", { channelId: "c1", content: "offset-check" });
  await until(() => chat(alice).some((m) => m.tag === "offset-check"), { what: "message on alice" });
  const m = chat(alice).find((x) => x.tag === "offset-check");
  const partitions = parseOffset(m.offset);
  assert.ok(partitions, `an offset: ${m.offset}`);
  // One log partition on a single node and Sentinel, 8 on a Cluster (recovery.log_partitions = 0).
  assert.equal(partitions.length, valkeyTopology() === "cluster" ? 8 : 1, `partitions in ${m.offset}`);
  alice.close();
});

test("SIGKILL of the client's instance: it comes back on the other one recovered, with exactly the 20 it missed", async (t) => {
  const alice = await recoverable(A.url, s.cookies.alice, { reconnectMs: 2500 });
  const bob = await connect(B.url, s.cookies.bob, { transports: ["websocket"] });
  const sid = alice.id;
  for (let i = 0; i < 3; i++) await emitAck(bob, "message:send", { channelId: "c1", content: `before-${i}` });
  await until(() => chat(alice).filter((m) => m.tag.startsWith("before-")).length === 3, { what: "3 before the kill" });
  const seenBefore = chat(alice).length;

  const down = new Promise((resolve) => alice.once("disconnect", resolve));
  A.proc.child.kill("SIGKILL");
  await down;
  const t0 = Date.now();
  alice.moveTo(B.url);
  // 20 while alice is away: from the other gateway, the app's emitter and a Node server, interleaved.
  const expected = [];
  for (let i = 0; i < 10; i++) {
    await emitAck(bob, "message:send", { channelId: "c1", content: `gap-gw-${i}` });
    expected.push(`gap-gw-${i}`);
    if (i % 3 === 0) {
      emitter.to("channel:c1").emit("news", `gap-em-${i}`);
      expected.push(`gap-em-${i}`);
      peer.io.to("channel:c1").emit("peer-news", `gap-peer-${i}`);
      expected.push(`gap-peer-${i}`);
    }
  }
  emitter.to("channel:c1").emit("news", "gap-em-last");
  expected.push("gap-em-last");
  peer.io.to("channel:c1").emit("peer-news", "gap-peer-last");
  expected.push("gap-peer-last");
  // Something alice must not get: a room she is not in.
  emitter.to("channel:c3").emit("news", "not-for-alice");
  assert.equal(expected.length, 20);
  assert.ok(Date.now() - t0 < 2000, `the 20 were published before alice's reconnect (${Date.now() - t0} ms)`);

  const recovered = await nextConnect(alice);
  t.diagnostic(`reconnected to B ${Date.now() - t0} ms after the kill; recovered=${recovered}`);
  assert.equal(recovered, true, "socket.recovered");
  assert.equal(alice.id, sid, "same socket id");
  await sleep(500);
  const after = chat(alice).slice(seenBefore);
  const tags = after.map((m) => m.tag);
  // Once each: the same 20, no more.
  assert.deepEqual([...tags].sort(), [...expected].sort(), "exactly the 20 missed packets, once each");
  // In order: each publisher's packets in the order it sent them (the emitter and the Node server
  // publish on their own connections, so only their order against each other is not fixed). On a
  // Cluster, ioredis sends each of the emitter's and the Node server's PUBLISHes to a node at random,
  // and messages from two nodes reach a subscriber in no fixed order: only the gateways' own (each
  // channel published from one node) keep theirs there.
  const ordered = valkeyTopology() === "cluster" ? ["gap-gw-"] : ["gap-gw-", "gap-em-", "gap-peer-"];
  for (const source of ordered) {
    const mine = (list) => list.filter((x) => x.startsWith(source));
    assert.deepEqual(mine(tags), mine(expected), `${source}* in publication order`);
  }
  const offsets = after.map((m) => m.offset);
  assert.ok(offsets.every((o, i) => i === 0 || offsetAfter(offsets[i - 1], o)), "offsets increase");

  // Rooms came back: live traffic reaches alice on B, once.
  await emitAck(bob, "message:send", { channelId: "c1", content: "live-after" });
  await until(() => chat(alice).some((m) => m.tag === "live-after"), { what: "live message after recovery" });
  await sleep(300);
  assert.equal(chat(alice).filter((m) => m.tag === "live-after").length, 1);
  // Her own room too: her id came from A (its tag, not B's), so B follows that room on a channel of its own.
  emitter.to(sid).emit("news", "to-her-id");
  peer.io.to(sid).emit("peer-news", "to-her-id-from-node");
  const toHer = () => chat(alice).filter((m) => m.tag.startsWith("to-her-id")).map((m) => m.tag);
  await until(() => toHer().length === 2, { what: "to(her id) on B" });
  await sleep(300);
  assert.deepEqual(toHer().sort(), ["to-her-id", "to-her-id-from-node"]);
  alice.close();
  bob.close();
});

test("Valkey memory per recoverable session and per buffered packet", async (t) => {
  const keys = await allKeys(admin, "socket.io-csr-session#*");
  assert.ok(keys.length > 0, "live sessions are kept");
  let session = 0;
  for (const k of keys) session += await admin.memory("USAGE", k);
  // The log's partitions (one on a single node, 8 on a Cluster).
  let [len, bytes] = [0, 0];
  for (const log of await allKeys(admin, "socket.io-csr-log#*")) {
    len += await admin.xlen(log);
    bytes += await admin.memory("USAGE", log, "SAMPLES", "0");
  }
  t.diagnostic(
    `per session: ${Math.round(session / keys.length)} B (${keys.length} keys); ` +
      `log: ${len} packets in ${bytes} B = ${Math.round(bytes / len)} B per packet`,
  );
  for (const k of keys) {
    const ttl = await admin.pttl(k);
    // -2: gone meanwhile (a socket closed for good); -1 would be a key that never expires.
    assert.ok(ttl > 0 || ttl === -2, `session key ${k} expires (PTTL ${ttl})`);
  }
});
