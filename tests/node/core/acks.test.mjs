// Acknowledgements in both directions with socket.io-client 4.8.4.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { useTarget, waitFor, connected, sleep, TRANSPORTS } from "./target.mjs";

const { pool, url } = useTarget();

const ARGS = [1, "2", { 3: [false] }, "ünïcødé 😀", "", null, [{ a: [] }]];

describe("acks", { timeout: 30000 }, () => {
  for (const { name, opts } of TRANSPORTS) {
    describe(`client -> server (${name})`, () => {
      it("emitWithAck resolves with the first ack argument", { timeout: 5000 }, async () => {
        const socket = pool.connect("/", opts);
        await connected(socket);
        assert.deepEqual(await socket.emitWithAck("message-with-ack", { hello: "wörld" }, 2), { hello: "wörld" });
        assert.equal(await socket.emitWithAck("message-with-ack", "😀"), "😀");
      });

      it("callback ack receives all the args", { timeout: 5000 }, async () => {
        const socket = pool.connect("/", opts);
        await connected(socket);
        const reply = await new Promise((resolve) => socket.emit("message-with-ack", ...ARGS, (...r) => resolve(r)));
        assert.deepEqual(reply, ARGS);
      });

      it("ack with no args", { timeout: 5000 }, async () => {
        const socket = pool.connect("/", opts);
        await connected(socket);
        const reply = await new Promise((resolve) => socket.emit("message-with-ack", (...r) => resolve(r)));
        assert.deepEqual(reply, []);
      });

      it("socket.timeout(1000): emitWithAck and callback with (err, ...args)", { timeout: 5000 }, async () => {
        const socket = pool.connect("/", opts);
        await connected(socket);
        assert.deepEqual(await socket.timeout(1000).emitWithAck("message-with-ack", [1, 2, 3], "x"), [1, 2, 3]);
        const [err, ...reply] = await new Promise((resolve) =>
          socket.timeout(1000).emit("message-with-ack", ...ARGS, (...r) => resolve(r)),
        );
        assert.equal(err, null);
        assert.deepEqual(reply, ARGS);
      });

      it("many concurrent acks each resolve with their own value", { timeout: 8000 }, async () => {
        const socket = pool.connect("/", opts);
        await connected(socket);
        const N = 200;
        const results = await Promise.all(
          [...Array(N).keys()].map((i) => socket.timeout(5000).emitWithAck("message-with-ack", { i, s: `v${i}` })),
        );
        assert.deepEqual(results, [...Array(N).keys()].map((i) => ({ i, s: `v${i}` })));
      });

      it("socket.timeout rejects when the server does not answer in time", { timeout: 5000 }, async () => {
        const socket = pool.connect("/", opts);
        await connected(socket);
        // "server-ack" is never acked by the server (it answers with an ack-request of its own)
        socket.on("ack-request", (...args) => args.pop()("late"));
        await assert.rejects(socket.timeout(300).emitWithAck("server-ack", "no-ack"), /operation has timed out/);
        // the connection is still usable
        assert.equal(await socket.emitWithAck("message-with-ack", "still ok"), "still ok");
      });
    });

    describe(`server -> client (${name})`, () => {
      it("server-ack: the client's ack reply comes back in ack-result", { timeout: 5000 }, async () => {
        const socket = pool.connect("/", opts);
        await connected(socket);
        let requestArgs;
        socket.on("ack-request", (...args) => {
          const cb = args.pop();
          assert.equal(typeof cb, "function", "ack-request must carry an ack id");
          requestArgs = args;
          cb("reply", { n: 1, u: "日本 😀" }, args, null);
        });
        const result = waitFor(socket, "ack-result");
        socket.emit("server-ack", ...ARGS);
        const reply = await result;
        assert.deepEqual(requestArgs, ARGS);
        assert.deepEqual(reply, ["reply", { n: 1, u: "日本 😀" }, ARGS, null]);
      });

      it("server-ack with an empty ack reply", { timeout: 5000 }, async () => {
        const socket = pool.connect("/", opts);
        await connected(socket);
        socket.on("ack-request", (...args) => args.pop()());
        const result = waitFor(socket, "ack-result");
        socket.emit("server-ack", "x");
        assert.deepEqual(await result, []);
      });

      it("server-ack several in flight, answered out of order", { timeout: 5000 }, async () => {
        const socket = pool.connect("/", opts);
        await connected(socket);
        const pending = [];
        socket.on("ack-request", (...args) => {
          const cb = args.pop();
          pending.push([args[0], cb]);
          if (pending.length === 3) for (const [i, f] of pending.reverse()) f(`answer-${i}`);
        });
        const results = [];
        socket.on("ack-result", (r) => results.push(r));
        for (let i = 0; i < 3; i++) socket.emit("server-ack", i);
        for (let t = 0; t < 40 && results.length < 3; t++) await sleep(50);
        // the order of the three ack-result emits is the server handler's business (Node: ack arrival order)
        assert.deepEqual([...results].sort(), ["answer-0", "answer-1", "answer-2"]);
      });

      it("server-ack timeout: the client never acks -> ack-timeout", { timeout: 6000 }, async () => {
        const socket = pool.connect("/", opts);
        await connected(socket);
        const request = waitFor(socket, "ack-request");
        const timedOut = waitFor(socket, "ack-timeout", 4000);
        const results = [];
        socket.on("ack-result", (...r) => results.push(r));
        const t0 = Date.now();
        socket.emit("server-ack", "ignore me");
        const args = await request;
        assert.equal(typeof args.pop(), "function");
        assert.deepEqual(args, ["ignore me"]);
        await timedOut;
        const elapsed = Date.now() - t0;
        assert.ok(elapsed >= 1800, `ack-timeout after ${elapsed} ms, expected ~2000`);
        assert.deepEqual(results, []);
        assert.ok(socket.connected);
      });
    });
  }
});
