// The recovery log split into partitions (recovery.log_partitions; 32 here on every topology, 8 by default on a
// Cluster): each room's broadcasts go into its own partition, so on a Cluster the log spreads over slots and
// primaries; a client's offset names a place in every partition; and the guarantee holds where one offset per
// client makes it hard: a client restored on an instance that follows none of its rooms (that instance knows
// those partitions only from markers) never sees its offset move back, and a second restore replays nothing
// twice; a room's broadcasts from before a socket joined it are not replayed to it as missed.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Emitter } from "@socket.io/redis-emitter";
import { connect, closeAllClients, sleep } from "../lib/gateway.mjs";
import { startValkey, redisClient, closeAllRedis, until, valkeyTopology } from "../lib/valkey.mjs";
import { logKey, logPartitionOf, parseOffset, offsetAfter } from "../lib/recovery-log.mjs";
import { startRelayStack } from "../relay/helpers.mjs";
import { scrape, value } from "../lib/ops.mjs";
import { recoveryEnv, recoverable, nextConnect, closeRecoverable } from "./helpers.mjs";

// More than the default so that, below, a partition holds a room bob is in and none of alice's.
const PARTITIONS = 32;
const aliceRooms = ["channel:c1", "channel:c2", "channel:c4", "dm:d1", "dm:d2", "workspace:w1", "workspace:w2"];
// Three of alice's rooms, in three partitions.
const gapRooms = ["channel:c2", "channel:c4", "dm:d2"];
let valkey, s, A, B, emitter, admin;

before(async () => {
  valkey = await startValkey();
  const env = recoveryEnv(valkey.url, { GATEWAY_RECOVERY__LOG_PARTITIONS: String(PARTITIONS) });
  s = await startRelayStack({ valkeyUrl: valkey.url, gateways: 2, gatewayEnv: env });
  [A, B] = s.gws;
  admin = redisClient(valkey.url);
  emitter = new Emitter(redisClient(valkey.url));
});
after(async () => {
  closeRecoverable();
  closeAllClients();
  await s?.stop();
  closeAllRedis();
  await valkey?.stop();
});

const partitionOf = (room) => logPartitionOf(room, PARTITIONS);

/** Whether the partition's stream holds an entry whose message contains `tag`. */
async function logged(p, tag) {
  const entries = await admin.xrangeBuffer(logKey(p), "-", "+");
  return entries.some(([, fields]) => fields[1].includes(tag));
}

const news = (sock) => sock.got.filter((g) => g.event === "news").map((g) => g.args[0]);

test("each room's broadcasts go into the room's partition, the others into the first; the partitions spread", async () => {
  const rooms = ["channel:c1", "channel:c2", "channel:c3", "channel:c4", "dm:d1", "dm:d2", "workspace:w1", "workspace:w2"];
  // Someone in every room, so the broadcasts are recorded by a gateway that follows them too.
  const alice = await recoverable(A.url, s.cookies.alice);
  for (const room of rooms) emitter.to(room).emit("news", `split-${room}`);
  emitter.emit("news", "split-everyone");
  emitter.to("channel:c1").to("channel:c2").emit("news", "split-two-rooms");
  for (const room of rooms) {
    await until(() => logged(partitionOf(room), `split-${room}`), { what: `${room} in partition ${partitionOf(room)}` });
  }
  await until(() => logged(0, "split-everyone"), { what: "a broadcast to no room in the first partition" });
  await until(() => logged(0, "split-two-rooms"), { what: "a broadcast to two rooms in the first partition" });
  const used = new Set(rooms.map(partitionOf));
  assert.ok(used.size >= 6, `these 8 rooms use ${used.size} partitions`);
  for (const p of used) assert.ok((await admin.xlen(logKey(p))) > 0, `partition ${p} holds entries`);
  if (valkeyTopology() === "cluster") {
    // The partitions' hash tags put them in different slots, and so on different primaries.
    const ranges = await admin.cluster("SLOTS");
    const holders = new Set();
    for (const p of used) {
      const slot = await admin.cluster("KEYSLOT", logKey(p));
      const [, , [, port]] = ranges.find(([from, to]) => from <= slot && slot <= to);
      holders.add(port);
    }
    assert.ok(holders.size >= 2, `the log's partitions sit on ${holders.size} primaries`);
  }
  alice.close();
});

test("restored on an instance that lags in a partition: the offset never moves back, and a second restore replays nothing twice", async (t) => {
  const bob = await connect(A.url, s.cookies.bob, { transports: ["websocket"] });
  const alice = await recoverable(A.url, s.cookies.alice, { reconnectMs: 50 });
  // A room bob is in and alice is not, in a partition none of alice's rooms is in: B, where nobody else is
  // connected, follows nothing there and knows it only from markers (one a second), while alice's offsets
  // from A carry A's place in it, which bob's traffic keeps moving.
  const hers = new Set([...aliceRooms, `user:${s.users.alice.id}`, alice.id].map(partitionOf));
  const lagRoom = ["channel:c3", `user:${s.users.bob.id}`].find((r) => !hers.has(partitionOf(r)));
  t.diagnostic(`lagging partition: ${lagRoom ? partitionOf(lagRoom) : "none free this run"}`);
  // c1 densely, so that some of its broadcasts reach B between B's reading the log for alice and
  // B's catching up with her place in the lagging partition: they are stamped with B's older place.
  let pumping = true;
  const pump = (async () => {
    for (let i = 0; pumping; i++) {
      if (lagRoom) emitter.to(lagRoom).emit("news", `lag-bob-${i}`);
      for (let k = 0; k < 5; k++) emitter.to("channel:c1").emit("news", `lag-c1-${i}-${k}`);
      await sleep(2);
    }
  })();
  await until(() => news(alice).filter((x) => x.startsWith("lag-c1-")).length >= 20, { what: "traffic on A" });

  alice.moveTo(B.url);
  const back = nextConnect(alice);
  alice.io.engine.close();
  for (const room of gapRooms) emitter.to(room).emit("news", `lag-gap-${room}`);
  assert.equal(await back, true, "recovered on B");
  await sleep(100);
  pumping = false;
  await pump;
  emitter.to(`user:${s.users.alice.id}`).emit("news", "lag-live-on-b");
  await until(() => news(alice).includes("lag-live-on-b"), { what: "a live packet on B" });
  await until(() => gapRooms.every((r) => news(alice).includes(`lag-gap-${r}`)), { what: "the first gap" });

  // Back on A: three more while away.
  alice.moveTo(A.url);
  const backToA = nextConnect(alice);
  const gone = new Promise((resolve) => alice.once("disconnect", resolve));
  alice.io.engine.close();
  await gone;
  for (const room of gapRooms) emitter.to(room).emit("news", `lag-second-${room}`);
  assert.equal(await backToA, true, "recovered on A");
  await until(() => gapRooms.every((r) => news(alice).includes(`lag-second-${r}`)), { what: "the second gap on A" });
  await sleep(300);

  const counts = new Map();
  for (const x of news(alice)) counts.set(x, (counts.get(x) ?? 0) + 1);
  assert.deepEqual([...counts].filter(([, n]) => n > 1).map(([x]) => x), [], "no packet twice");
  assert.ok(![...counts.keys()].some((x) => x.startsWith("lag-bob-")), "nothing of a room she is not in");
  const offsets = alice.got.filter((g) => g.event === "news").map((g) => g.offset);
  assert.ok(offsets.every((o) => parseOffset(o)?.length === PARTITIONS), "each carries a place in every partition");
  const at = offsets.findIndex((o, i) => i > 0 && !offsetAfter(offsets[i - 1], o));
  assert.equal(at, -1, `the offset moved back at packet ${at}: ${offsets[at - 1]} then ${offsets[at]}`);
  alice.close();
  bob.close();
});

test("a room's broadcasts from before a socket joined it are not replayed to it as missed", async () => {
  // channel:c4 has alice and dave; nobody is connected now, so neither gateway follows it.
  const before_ = "c4-before-dave";
  assert.notEqual(partitionOf("channel:c4"), partitionOf("workspace:w2"));
  emitter.to("channel:c4").emit("news", before_);
  await until(() => logged(partitionOf("channel:c4"), before_), { what: "the broadcast recorded" });
  const dave = await recoverable(B.url, s.cookies.dave, { reconnectMs: 800 });
  await sleep(200);
  emitter.to("workspace:w2").emit("news", "dave-first");
  await until(() => news(dave).includes("dave-first"), { what: "dave's first packet" });
  dave.moveTo(A.url);
  const back = nextConnect(dave);
  const gone = new Promise((resolve) => dave.once("disconnect", resolve));
  dave.io.engine.close();
  await gone;
  emitter.to("channel:c4").emit("news", "c4-gap");
  assert.equal(await back, true, "recovered");
  await until(() => news(dave).includes("c4-gap"), { what: "the missed one" });
  await sleep(300);
  assert.deepEqual(news(dave), ["dave-first", "c4-gap"], "only what it missed, nothing from before it joined");
  dave.close();
});

test("a connect whose rooms are followed already asks for no marker; a room new here asks for one", async () => {
  const first = await recoverable(A.url, s.cookies.alice);
  const markers = async () => value(await scrape(A.url), "socket_gateway_recovery_markers_total", { reason: "new_room" });
  const before_ = await markers();
  // Each of these only adds its own id's room: nothing was ever sent to an id before it was made.
  const more = [];
  for (let i = 0; i < 10; i++) more.push(await recoverable(A.url, s.cookies.alice));
  assert.equal((await markers()) - before_, 0, "markers asked for by 10 more sockets of rooms followed already");
  // carol's rooms include channel:c3, which no socket on A is in now.
  const carol = await recoverable(A.url, s.cookies.carol);
  assert.ok((await markers()) - before_ >= 1, "a marker for a room followed here for the first time");
  for (const sock of [first, ...more, carol]) sock.close();
});
