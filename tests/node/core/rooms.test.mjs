// Rooms with socket.io-client 4.8.4: join, broadcast to a room (sender included), absence outside the room.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { useTarget, waitFor, connected, sleep, record, normalizeBinary } from "./target.mjs";

const { pool, url } = useTarget();

const ABSENCE_MS = 400;

async function three() {
  // mix transports: the broadcast has to reach websocket and polling clients alike
  const a = pool.connect("/", { transports: ["websocket"] });
  const b = pool.connect("/", { transports: ["polling"] });
  const c = pool.connect("/", {});
  await Promise.all([a, b, c].map((s) => connected(s)));
  return [a, b, c];
}

describe("rooms", { timeout: 30000 }, () => {
  it("two clients join a room; to-room reaches both (sender included); a third client gets nothing", { timeout: 5000 }, async () => {
    const [a, b, c] = await three();
    assert.equal(await a.timeout(2000).emitWithAck("join", "room-1"), true);
    assert.equal(await b.timeout(2000).emitWithAck("join", "room-1"), true);
    const cSeen = record(c, "room-message");
    const atA = waitFor(a, "room-message");
    const atB = waitFor(b, "room-message");
    const payload = ["hello room", { n: 1, s: "ünï 😀" }, [1, [2]], ""];
    assert.equal(await a.timeout(2000).emitWithAck("to-room", "room-1", ...payload), true);
    assert.deepEqual(await atA, payload);
    assert.deepEqual(await atB, payload);
    await sleep(ABSENCE_MS);
    assert.deepEqual(cSeen.seen, []);
  });

  it("to-room without an ack request still broadcasts; a non-member can broadcast into the room", { timeout: 5000 }, async () => {
    const [a, b, c] = await three();
    await a.timeout(2000).emitWithAck("join", "room-2");
    await b.timeout(2000).emitWithAck("join", "room-2");
    const cSeen = record(c, "room-message");
    const atA = waitFor(a, "room-message");
    const atB = waitFor(b, "room-message");
    c.emit("to-room", "room-2", "from outside");
    assert.deepEqual(await atA, ["from outside"]);
    assert.deepEqual(await atB, ["from outside"]);
    await sleep(ABSENCE_MS);
    assert.deepEqual(cSeen.seen, [], "the sender is not in the room, so it gets nothing");
  });

  it("join without an ack request works too", { timeout: 5000 }, async () => {
    const [a, b] = await three();
    a.emit("join", "room-3");
    await sleep(200);
    const atA = waitFor(a, "room-message");
    b.emit("to-room", "room-3", 3);
    assert.deepEqual(await atA, [3]);
  });

  it("separate rooms do not leak into each other; a socket can be in several rooms", { timeout: 5000 }, async () => {
    const [a, b, c] = await three();
    await a.timeout(2000).emitWithAck("join", "red");
    await b.timeout(2000).emitWithAck("join", "blue");
    await c.timeout(2000).emitWithAck("join", "red");
    await c.timeout(2000).emitWithAck("join", "blue");
    const seen = [a, b, c].map((s) => record(s, "room-message"));
    await a.timeout(2000).emitWithAck("to-room", "red", "r");
    await b.timeout(2000).emitWithAck("to-room", "blue", "b");
    await sleep(ABSENCE_MS);
    assert.deepEqual(seen[0].seen, [["r"]]);
    assert.deepEqual(seen[1].seen, [["b"]]);
    assert.deepEqual(seen[2].seen, [["r"], ["b"]]);
  });

  it("a broadcast to an empty room reaches nobody", { timeout: 5000 }, async () => {
    const sockets = await three();
    const seen = sockets.map((s) => record(s, "room-message"));
    assert.equal(await sockets[0].timeout(2000).emitWithAck("to-room", "nobody-here", "x"), true);
    await sleep(ABSENCE_MS);
    assert.deepEqual(seen.map((r) => r.seen), [[], [], []]);
  });

  it("room broadcast with binary reaches members byte-identical", { timeout: 5000 }, async () => {
    const [a, b, c] = await three();
    await b.timeout(2000).emitWithAck("join", "bin");
    await c.timeout(2000).emitWithAck("join", "bin");
    const atB = waitFor(b, "room-message");
    const atC = waitFor(c, "room-message");
    const payload = [Buffer.from([1, 2, 3]), { nested: [Buffer.from([0xff]), Buffer.alloc(0)] }, "t"];
    a.emit("to-room", "bin", ...payload);
    assert.deepStrictEqual(normalizeBinary(await atB), normalizeBinary(payload));
    assert.deepStrictEqual(normalizeBinary(await atC), normalizeBinary(payload));
  });

  it("a disconnected member no longer receives; after reconnect it is not in the room any more", { timeout: 8000 }, async () => {
    const [a, b] = await three();
    await a.timeout(2000).emitWithAck("join", "gone");
    await b.timeout(2000).emitWithAck("join", "gone");
    b.disconnect();
    await sleep(100);
    b.connect();
    await connected(b);
    const bSeen = record(b, "room-message");
    const atA = waitFor(a, "room-message");
    a.emit("to-room", "gone", "only a");
    assert.deepEqual(await atA, ["only a"]);
    await sleep(ABSENCE_MS);
    assert.deepEqual(bSeen.seen, []);
  });
});
