// The relay tests' own harness, without the gateway: valkey-server starts, is killed and restarts on the
// same port; two Node socket.io peers on @socket.io/redis-adapter relay rooms, except, binary and requests
// through it (the reference behaviour the gateway tests compare against); per-room PUBSUB queries work.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Emitter } from "@socket.io/redis-emitter";
import { startValkey, redisClient, closeAllRedis, pubsubChannels, pubsubNumpat, clientList, until, singleNodeFault } from "../lib/valkey.mjs";
import { startNodePeer, peerClient, recorder, assertExactlyOnce, sleep } from "./helpers.mjs";

let valkey, p1, p2, admin;
const clients = [];
before(async () => {
  valkey = await startValkey();
  [p1, p2] = await Promise.all([startNodePeer(valkey.url), startNodePeer(valkey.url)]);
  admin = redisClient(valkey.url);
});
after(async () => {
  for (const c of clients) c.close();
  await p1?.close();
  await p2?.close();
  closeAllRedis();
  await valkey?.stop();
});

async function client(peer, rooms) {
  const c = await peerClient(peer, rooms);
  clients.push(c);
  return c;
}

test("valkey: PING, no persistence, PSUBSCRIBE-only Node adapters leave PUBSUB CHANNELS without room channels", async () => {
  assert.equal(await admin.ping(), "PONG");
  assert.deepEqual(await admin.config("GET", "save"), ["save", ""]);
  assert.deepEqual(await admin.config("GET", "appendonly"), ["appendonly", "no"]);
  // Each classic adapter PSUBSCRIBEs socket.io#/#* (one unique pattern) and SUBSCRIBEs no broadcast channel.
  assert.equal(await pubsubNumpat(admin), 1);
  const subs = (await clientList(admin)).filter((c) => c.psub > 0);
  assert.equal(subs.length, 2, JSON.stringify(subs));
  assert.deepEqual(await pubsubChannels(admin, "socket.io#/#*"), []);
});

test("Node peer → Node peer: room, except, multi-room and binary broadcasts arrive exactly once", async () => {
  const a = await client(p2, ["r1", "r2"]);
  const b = await client(p2, ["r1"]);
  const c = await client(p2, ["r2"]);
  const d = await client(p2, []);
  const all = { a, b, c, d };

  let rec = recorder(all, "room");
  p1.io.to("r1").emit("room", 1);
  await assertExactlyOnce(rec, ["a", "b"], ["c", "d"], { label: "to(r1)" });

  rec = recorder(all, "ex");
  p1.io.to("r1").except("r2").emit("ex", 1);
  await assertExactlyOnce(rec, ["b"], ["a", "c", "d"], { label: "to(r1).except(r2)" });

  rec = recorder(all, "multi");
  p1.io.to(["r1", "r2"]).emit("multi", 1);
  await assertExactlyOnce(rec, ["a", "b", "c"], ["d"], { label: "to([r1,r2])" });

  rec = recorder(all, "bin");
  p1.io.to("r2").emit("bin", Buffer.from([1, 2, 3]), { nested: Buffer.from([255, 0]) });
  await assertExactlyOnce(rec, ["a", "c"], ["b", "d"], { label: "binary" });
  const [buf, obj] = rec.args("a")[0];
  assert.ok(Buffer.isBuffer(buf), `binary arg arrived as ${typeof buf}`);
  assert.deepEqual([...buf], [1, 2, 3]);
  assert.deepEqual([...obj.nested], [255, 0]);
});

test("Node peer requests: fetchSockets, allRooms, serverSideEmit with ack, broadcast with ack", async () => {
  const x = await client(p2, ["req-room"]);
  const sockets = await p1.io.in("req-room").fetchSockets();
  assert.deepEqual(
    sockets.map((s) => s.id),
    [x.id],
  );
  assert.ok(sockets[0].rooms.has("req-room") && sockets[0].rooms.has(x.id));
  const rooms = await p1.io.of("/").adapter.allRooms();
  assert.ok(rooms.has("req-room"));

  p2.io.on("ping-servers", (n, cb) => cb(n + 1));
  const replies = await p1.io.serverSideEmitWithAck("ping-servers", 41);
  assert.deepEqual(replies, [42]);

  x.on("ask", (n, cb) => cb(n * 2));
  const acks = await p1.io.to("req-room").timeout(2000).emitWithAck("ask", 5);
  assert.deepEqual(acks, [10]);
});

test("emitter: to(room).emit and socketsJoin reach Node peer sockets", async () => {
  const e = new Emitter(admin);
  const y = await client(p2, ["em-room"]);
  const got = recorder({ y }, "from-emitter");
  e.to("em-room").emit("from-emitter", "x");
  await assertExactlyOnce(got, ["y"], [], { label: "emitter" });
  e.in("em-room").socketsJoin("em-joined");
  await until(async () => (await p2.io.in("em-joined").fetchSockets()).length === 1, { ms: 2000, what: "socketsJoin" });
});

test("valkey SIGKILL and restart on the same port: Node peers resubscribe and relay again", { skip: singleNodeFault }, async (t) => {
  const z = await client(p2, ["restart-room"]);
  await valkey.kill();
  assert.equal(valkey.running(), false);
  await sleep(300);
  const t0 = Date.now();
  await valkey.restart();
  const restarted = Date.now();
  // The peers' ioredis clients reconnect (and resubscribe) by themselves.
  let first = null;
  z.on("after-restart", () => {
    first ??= Date.now();
  });
  await until(
    () => {
      p1.io.to("restart-room").emit("after-restart");
      return first !== null;
    },
    { ms: 8000, everyMs: 100, what: "Node→Node relay after the Valkey restart" },
  );
  t.diagnostic(`valkey restart took ${restarted - t0} ms; first relayed Node→Node message ${first - restarted} ms after it answered PING`);
});
