// socket.io-client 4.8.4 against the target: transport selection, upgrade, round trips of mixed payloads, ordering.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { useTarget, waitFor, connected, collect, TRANSPORTS } from "./target.mjs";

const { pool, url } = useTarget();

const MIXED = [
  0,
  42,
  -7,
  3.14159,
  1e21,
  "",
  "plain",
  "héllo wörld ñ ç ß",
  "日本語のテキスト 中文 한국어",
  "emoji 😀🎉👍🏽 and 𝄞 (astral) and ❤️",
  "quotes \" ' backslash \\ newline \n tab \t",
  true,
  false,
  null,
  [],
  {},
  [1, "two", [3, [4, { five: 5 }]], null],
  { a: { b: { c: [1, 2, { d: "deep 😀" }] } }, "ключ": "значение", empty: "", n: null, arr: [] },
];

describe("transports", { timeout: 20000 }, () => {
  it("default transports: connects over polling, upgrades to websocket, then round trip", { timeout: 8000 }, async () => {
    const socket = pool.connect("/");
    const engine = socket.io.engine;
    const openedWith = waitFor(engine, "open").then(() => engine.transport.name);
    const upgraded = waitFor(engine, "upgrade", 5000);
    await connected(socket);
    assert.equal(await openedWith, "polling");
    const [transport] = await upgraded;
    assert.equal(transport.name, "websocket");
    assert.equal(socket.io.engine.transport.name, "websocket");
    const back = waitFor(socket, "message-back");
    socket.emit("message", "after upgrade", { ok: true }, 1);
    assert.deepEqual(await back, ["after upgrade", { ok: true }, 1]);
  });

  it("default transports: messages sent during the upgrade all arrive in order", { timeout: 8000 }, async () => {
    const socket = pool.connect("/");
    const upgraded = waitFor(socket.io.engine, "upgrade", 5000);
    await connected(socket);
    const N = 50;
    const got = collect(socket, "message-back", N, 5000);
    for (let i = 0; i < N; i++) socket.emit("message", i);
    await upgraded;
    assert.deepEqual((await got).map(([i]) => i), [...Array(N).keys()]);
    assert.equal(socket.io.engine.transport.name, "websocket");
  });

  for (const { name, opts } of TRANSPORTS) {
    describe(`${name} only`, () => {
      it("connects without changing transport and gets the auth event", { timeout: 5000 }, async () => {
        const socket = pool.connect("/", { ...opts, auth: { token: "123", nested: { ü: "😀" } } });
        const auth = waitFor(socket, "auth");
        await connected(socket);
        assert.equal(socket.io.engine.transport.name, name);
        assert.deepEqual(await auth, [{ token: "123", nested: { ü: "😀" } }]);
        assert.equal(typeof socket.id, "string");
        assert.ok(socket.id.length > 0);
      });

      it("round trip of mixed args (numbers, strings, nested objects, unicode, empty string)", { timeout: 5000 }, async () => {
        const socket = pool.connect("/", opts);
        await connected(socket);
        const back = waitFor(socket, "message-back");
        socket.emit("message", ...MIXED);
        assert.deepEqual(await back, MIXED);
        assert.equal(socket.io.engine.transport.name, name);
      });

      it("round trips of each value as a single argument, and of no argument", { timeout: 8000 }, async () => {
        const socket = pool.connect("/", opts);
        await connected(socket);
        for (const v of MIXED) {
          const back = waitFor(socket, "message-back");
          socket.emit("message", v);
          assert.deepEqual(await back, [v], `value ${JSON.stringify(v)}`);
        }
        const back = waitFor(socket, "message-back");
        socket.emit("message");
        assert.deepEqual(await back, []);
      });

      it("round trip of a large text payload with multibyte characters", { timeout: 8000 }, async () => {
        const socket = pool.connect("/", opts);
        await connected(socket);
        const big = "añ日😀".repeat(20000); // ~100k chars, ~220 KB of UTF-8
        const back = waitFor(socket, "message-back");
        socket.emit("message", big, { big });
        assert.deepEqual(await back, [big, { big }]);
      });

      it("500 emits come back in order", { timeout: 15000 }, async () => {
        const socket = pool.connect("/", opts);
        await connected(socket);
        const N = 500;
        const got = collect(socket, "message-back", N, 12000);
        for (let i = 0; i < N; i++) socket.emit("message", i, `msg-${i}`);
        const results = await got;
        assert.deepEqual(
          results.map(([i, s]) => [i, s]),
          [...Array(N).keys()].map((i) => [i, `msg-${i}`]),
        );
        assert.equal(socket.io.engine.transport.name, name);
      });
    });
  }
});
