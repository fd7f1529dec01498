// Binary attachments both ways (Buffer / Uint8Array / ArrayBuffer, nested, empty, large) with socket.io-client 4.8.4.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { useTarget, waitFor, connected, collect, normalizeBinary, TRANSPORTS } from "./target.mjs";

const { pool, url } = useTarget();

const bytes = (...b) => Buffer.from(b);
const ALL_BYTES = Buffer.from([...Array(256).keys()]);

// 10 attachments in total: socket.io-parser 4.2.7 (client and Node server) rejects more by default
function mixedBinaryArgs() {
  return [
    bytes(1, 2, 3),
    "text between",
    new Uint8Array([4, 5, 6, 255, 0]),
    { file: ALL_BYTES, name: "all-bytes.bin", meta: { parts: [bytes(7), bytes(8, 9)], empty: Buffer.alloc(0) } },
    [Buffer.alloc(0), 42, [bytes(0xff, 0xfe), { deep: [[bytes(10, 11, 12)]] }]],
    null,
    new Uint8Array([9, 8, 7]).buffer, // ArrayBuffer
    { _placeholder: false, num: 0 }, // looks a bit like a placeholder but is not one
  ];
}

function assertSameBinary(actual, expected) {
  assert.deepStrictEqual(normalizeBinary(actual), normalizeBinary(expected));
}

function assertAllBuffers(received) {
  // every binary value must come back as a binary type, not as a JSON object
  const walk = (v) => {
    if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) return;
    if (Array.isArray(v)) return v.forEach(walk);
    if (v && typeof v === "object") {
      assert.ok(!("_placeholder" in v && v._placeholder === true), `unresolved placeholder: ${JSON.stringify(v)}`);
      Object.values(v).forEach(walk);
    }
  };
  walk(received);
}

describe("binary", { timeout: 40000 }, () => {
  for (const { name, opts } of TRANSPORTS) {
    describe(name, () => {
      it("a single buffer comes back byte-identical", { timeout: 5000 }, async () => {
        const socket = pool.connect("/", opts);
        await connected(socket);
        const back = waitFor(socket, "message-back");
        socket.emit("message", bytes(1, 2, 3, 4));
        const [b] = await back;
        assert.ok(Buffer.isBuffer(b) || b instanceof ArrayBuffer || ArrayBuffer.isView(b), `got ${typeof b}`);
        assertSameBinary(b, bytes(1, 2, 3, 4));
        assert.equal(socket.io.engine.transport.name, name);
      });

      it("several buffers nested in objects and arrays, empty buffer, text and ArrayBuffer", { timeout: 5000 }, async () => {
        const socket = pool.connect("/", opts);
        await connected(socket);
        const args = mixedBinaryArgs();
        const back = waitFor(socket, "message-back");
        socket.emit("message", ...args);
        const got = await back;
        assertAllBuffers(got);
        assertSameBinary(got, args);
      });

      it("only an empty buffer", { timeout: 5000 }, async () => {
        const socket = pool.connect("/", opts);
        await connected(socket);
        const back = waitFor(socket, "message-back");
        socket.emit("message", Buffer.alloc(0));
        assertSameBinary(await back, [Buffer.alloc(0)]);
      });

      it("binary with ack (client -> server) returns the same bytes", { timeout: 5000 }, async () => {
        const socket = pool.connect("/", opts);
        await connected(socket);
        const args = mixedBinaryArgs();
        const reply = await new Promise((resolve) => socket.emit("message-with-ack", ...args, (...r) => resolve(r)));
        assertAllBuffers(reply);
        assertSameBinary(reply, args);
        const first = await socket.timeout(2000).emitWithAck("message-with-ack", { blob: ALL_BYTES });
        assertSameBinary(first, { blob: ALL_BYTES });
      });

      it("binary in a server -> client ack request and in the client's ack reply", { timeout: 5000 }, async () => {
        const socket = pool.connect("/", opts);
        await connected(socket);
        let requestArgs;
        socket.on("ack-request", (...args) => {
          const cb = args.pop();
          requestArgs = args;
          cb(bytes(0xde, 0xad), { inner: [bytes(0xbe, 0xef)], empty: Buffer.alloc(0) }, "txt");
        });
        const result = waitFor(socket, "ack-result");
        socket.emit("server-ack", bytes(1), { x: [bytes(2, 3)] });
        const reply = await result;
        assertSameBinary(requestArgs, [bytes(1), { x: [bytes(2, 3)] }]);
        assertAllBuffers(reply);
        assertSameBinary(reply, [bytes(0xde, 0xad), { inner: [bytes(0xbe, 0xef)] , empty: Buffer.alloc(0) }, "txt"]);
      });

      it("binary and text messages interleaved keep their order", { timeout: 8000 }, async () => {
        const socket = pool.connect("/", opts);
        await connected(socket);
        const N = 100;
        const got = collect(socket, "message-back", N, 6000);
        const sent = [];
        for (let i = 0; i < N; i++) {
          const args = i % 3 === 0 ? [i, bytes(i & 0xff, (i * 7) & 0xff)] : i % 3 === 1 ? [i, `t${i}`] : [i, { b: [bytes(i & 0xff)] }, bytes()];
          sent.push(args);
          socket.emit("message", ...args);
        }
        assertSameBinary(await got, sent);
      });

      it("exactly 10 attachments (socket.io-parser default maxAttachments) round trip", { timeout: 5000 }, async () => {
        const socket = pool.connect("/", opts);
        await connected(socket);
        const args = Array.from({ length: 10 }, (_, i) => Buffer.from([i, 255 - i]));
        const back = waitFor(socket, "message-back");
        socket.emit("message", ...args);
        assertSameBinary(await back, args);
      });

      it("11 attachments: the server drops the connection like socket.io-parser 4.2.7 (Node parity)", { timeout: 5000 }, async () => {
        const socket = pool.connect("/", opts);
        await connected(socket);
        const echoes = [];
        socket.on("message-back", (...a) => echoes.push(a));
        const gone = waitFor(socket, "disconnect", 3000);
        socket.emit("message", ...Array.from({ length: 11 }, (_, i) => Buffer.from([i])));
        const [reason] = await gone;
        assert.equal(reason, "transport close");
        assert.deepEqual(echoes, []);
      });

      const bigSize = name === "websocket" ? 900_000 : 200_000; // under maxPayload 1e6 (polling is base64: 4/3 larger)
      it(`a large buffer (${bigSize} bytes) comes back byte-identical`, { timeout: 10000 }, async () => {
        const socket = pool.connect("/", opts);
        await connected(socket);
        const big = randomBytes(bigSize);
        const back = waitFor(socket, "message-back", 8000);
        socket.emit("message", "big", big);
        const [label, b] = await back;
        assert.equal(label, "big");
        assert.equal(Buffer.from(b).length, bigSize);
        assert.ok(Buffer.from(b).equals(big), "large buffer differs");
      });
    });
  }
});
