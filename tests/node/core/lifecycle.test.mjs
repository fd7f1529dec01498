// Connection lifecycle with socket.io-client 4.8.4: transport drop + auto-reconnect, manual reconnect,
// server-initiated disconnect, heartbeat over several ping intervals.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { useTarget, waitFor, connected, sleep, record, TRANSPORTS } from "./target.mjs";

const { pool, url } = useTarget();

const RECONNECT = { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 200, randomizationFactor: 0 };

async function roundTrip(socket, ...args) {
  const back = waitFor(socket, "message-back");
  socket.emit("message", ...args);
  assert.deepEqual(await back, args);
}

describe("lifecycle", { timeout: 60000 }, () => {
  for (const { name, opts } of [...TRANSPORTS, { name: "default (polling + upgrade)", opts: {} }]) {
    describe(name, () => {
      it("drop-transport: transport close, automatic reconnect with a new id, messaging works again", { timeout: 8000 }, async () => {
        const socket = pool.connect("/", { ...opts, ...RECONNECT });
        const upgraded = opts.transports ? null : waitFor(socket.io.engine, "upgrade", 3000);
        await connected(socket);
        await upgraded;
        const firstId = socket.id;
        await roundTrip(socket, "before", 1);
        const gone = waitFor(socket, "disconnect", 3000);
        const reconnectAttempt = waitFor(socket.io, "reconnect", 5000);
        socket.emit("drop-transport");
        const [reason] = await gone;
        assert.equal(reason, "transport close");
        assert.equal(socket.active, true, "the client must plan to reconnect after a transport close");
        await waitFor(socket, "connect", 5000);
        await reconnectAttempt;
        assert.ok(socket.connected);
        assert.notEqual(socket.id, firstId, "a new session gets a new socket id");
        await roundTrip(socket, "after", 2, { ok: "✓" });
      });

      it("manual socket.disconnect() then socket.connect() gets a new id and works", { timeout: 8000 }, async () => {
        const socket = pool.connect("/", { ...opts, ...RECONNECT });
        await connected(socket);
        const firstId = socket.id;
        const gone = waitFor(socket, "disconnect");
        socket.disconnect();
        const [reason] = await gone;
        assert.equal(reason, "io client disconnect");
        assert.equal(socket.active, false);
        await sleep(200);
        assert.equal(socket.connected, false);
        socket.connect();
        await connected(socket);
        assert.notEqual(socket.id, firstId);
        await roundTrip(socket, "again", [1, 2]);
      });

      it("disconnect-me: io server disconnect, socket inactive, no auto-reconnect", { timeout: 8000 }, async () => {
        const socket = pool.connect("/", { ...opts, ...RECONNECT });
        await connected(socket);
        const gone = waitFor(socket, "disconnect");
        const connects = record(socket, "connect");
        socket.emit("disconnect-me");
        const [reason] = await gone;
        assert.equal(reason, "io server disconnect");
        assert.equal(socket.active, false);
        assert.equal(socket.connected, false);
        await sleep(600);
        assert.deepEqual(connects.seen, [], "must not reconnect after a server-side disconnect");
        // the client may connect again explicitly
        socket.connect();
        await connected(socket);
        await roundTrip(socket, "back");
      });

      it("heartbeat: stays connected for 2.2 s (several 300 ms ping intervals) and still works", { timeout: 8000 }, async () => {
        const socket = pool.connect("/", opts);
        await connected(socket);
        const id = socket.id;
        const disconnects = record(socket, "disconnect");
        const pings = record(socket.io, "ping");
        await sleep(2200);
        assert.deepEqual(disconnects.seen, []);
        assert.ok(socket.connected);
        assert.equal(socket.id, id);
        assert.ok(pings.seen.length >= 4, `expected >= 4 pings in 2.2 s, got ${pings.seen.length}`);
        await roundTrip(socket, "still here");
      });
    });
  }

  it("disconnect-me on one socket leaves another client's socket connected", { timeout: 5000 }, async () => {
    const a = pool.connect("/", { transports: ["websocket"] });
    const b = pool.connect("/", { transports: ["polling"] });
    await Promise.all([connected(a), connected(b)]);
    const gone = waitFor(a, "disconnect");
    a.emit("disconnect-me");
    assert.equal((await gone)[0], "io server disconnect");
    await sleep(100);
    assert.ok(b.connected);
    await roundTrip(b, "b ok");
  });
});
