// Namespaces with socket.io-client 4.8.4: auth payloads, unknown namespace, multiplexing on one Manager.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Manager } from "socket.io-client";
import { useTarget, waitFor, connected, sleep, record, TRANSPORTS } from "./target.mjs";

const { pool, url } = useTarget();

describe("namespaces", { timeout: 40000 }, () => {
  for (const { name, opts } of TRANSPORTS) {
    describe(name, () => {
      it("main namespace without auth gets auth {}", { timeout: 5000 }, async () => {
        const socket = pool.connect("/", opts);
        const auth = waitFor(socket, "auth");
        await connected(socket);
        assert.deepEqual(await auth, [{}]);
      });

      it("/custom with an auth payload gets it back in the auth event", { timeout: 5000 }, async () => {
        const payload = { token: "abc", user: { id: 7, name: "Zoë 😀" }, list: [1, "2"] };
        const socket = pool.connect("/custom", { ...opts, auth: payload });
        const auth = waitFor(socket, "auth");
        await connected(socket);
        assert.equal(socket.nsp, "/custom");
        assert.deepEqual(await auth, [payload]);
      });

      it("/custom without auth gets auth {}", { timeout: 5000 }, async () => {
        const socket = pool.connect("/custom", opts);
        const auth = waitFor(socket, "auth");
        await connected(socket);
        assert.deepEqual(await auth, [{}]);
      });

      it("auth as a function is sent on connect", { timeout: 5000 }, async () => {
        const socket = pool.connect("/custom", { ...opts, auth: (cb) => cb({ fromFn: true }) });
        const auth = waitFor(socket, "auth");
        await connected(socket);
        assert.deepEqual(await auth, [{ fromFn: true }]);
      });

      it("unknown namespace /nope: connect_error 'Invalid namespace', socket inactive", { timeout: 5000 }, async () => {
        const socket = pool.connect("/nope", { ...opts, reconnection: true, reconnectionDelay: 100 });
        const connects = record(socket, "connect");
        const [err] = await waitFor(socket, "connect_error");
        assert.ok(err instanceof Error);
        assert.equal(err.message, "Invalid namespace");
        assert.equal(socket.connected, false);
        assert.equal(socket.active, false);
        await sleep(300);
        assert.deepEqual(connects.seen, []);
      });

      it("multiplexing / and /custom on one Manager (one Engine.IO session)", { timeout: 8000 }, async () => {
        const manager = new Manager(url(), { ...opts, reconnection: false, timeout: 3000 });
        const main = pool.track(manager.socket("/", { auth: { who: "main" } }));
        const custom = pool.track(manager.socket("/custom", { auth: { who: "custom" } }));
        const mainAuth = waitFor(main, "auth");
        const customAuth = waitFor(custom, "auth");
        main.connect();
        custom.connect();
        await Promise.all([connected(main), connected(custom)]);
        assert.deepEqual(await mainAuth, [{ who: "main" }]);
        assert.deepEqual(await customAuth, [{ who: "custom" }]);
        assert.equal(main.io, custom.io);
        assert.notEqual(main.id, custom.id);

        // "/" echoes, "/custom" has no message handler: nothing must leak to it
        const customBack = record(custom, "message-back");
        const back = waitFor(main, "message-back");
        main.emit("message", "to main", { n: 1 });
        assert.deepEqual(await back, ["to main", { n: 1 }]);
        custom.emit("message", "to custom");
        await sleep(200);
        assert.deepEqual(customBack.seen, []);

        // leaving "/custom" keeps "/" (and the engine session) alive across ping intervals
        const engineId = manager.engine.id;
        const mainDisconnects = record(main, "disconnect");
        custom.disconnect();
        await sleep(800);
        assert.ok(main.connected);
        assert.deepEqual(mainDisconnects.seen, []);
        assert.equal(manager.engine.id, engineId);
        const back2 = waitFor(main, "message-back");
        main.emit("message", "still main");
        assert.deepEqual(await back2, ["still main"]);

        // re-joining "/custom" on the same session
        const customAuth2 = waitFor(custom, "auth");
        custom.connect();
        await connected(custom);
        assert.deepEqual(await customAuth2, [{ who: "custom" }]);
        assert.equal(manager.engine.id, engineId);

        // leaving "/" keeps "/custom" alive
        const customDisconnects = record(custom, "disconnect");
        main.disconnect();
        await sleep(800);
        assert.ok(custom.connected);
        assert.deepEqual(customDisconnects.seen, []);
      });

      it("multiplexing with an unknown namespace leaves / working", { timeout: 5000 }, async () => {
        const manager = new Manager(url(), { ...opts, reconnection: false, timeout: 3000 });
        const main = pool.track(manager.socket("/"));
        const nope = pool.track(manager.socket("/nope"));
        const nopeError = waitFor(nope, "connect_error");
        main.connect();
        nope.connect();
        await connected(main);
        const [err] = await nopeError;
        assert.equal(err.message, "Invalid namespace");
        const back = waitFor(main, "message-back");
        main.emit("message", "ok");
        assert.deepEqual(await back, ["ok"]);
      });
    });
  }
});
