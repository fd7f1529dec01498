// SIGTERM: the server stops accepting, closes every session so clients reconnect elsewhere,
// and exits by itself — over WebSocket and over long-polling.
import { test } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { startTarget, targetName } from "./target.mjs";

function connected(url, transports) {
  return new Promise((resolve, reject) => {
    const s = io(url, { transports, reconnection: false, forceNew: true });
    s.once("connect", () => resolve(s));
    s.once("connect_error", reject);
  });
}

test("SIGTERM closes websocket and polling clients and the process exits 0", {
  skip: targetName === "reference" && "the Node reference server has no graceful shutdown",
}, async () => {
  const target = await startTarget();
  const ws = await connected(target.url, ["websocket"]);
  const polling = await connected(target.url, ["polling"]);
  const reasons = Promise.all(
    [ws, polling].map((s) => new Promise((resolve) => s.once("disconnect", (reason) => resolve(reason)))),
  );
  const exited = new Promise((resolve) => target.proc.child.once("exit", (code, signal) => resolve({ code, signal })));
  const t0 = Date.now();
  target.proc.child.kill("SIGTERM");
  const [wsReason, pollReason] = await reasons;
  // Both learn of the close from the server (not a ping timeout), so they can reconnect at once.
  assert.equal(wsReason, "transport close");
  assert.equal(pollReason, "transport close");
  const exit = await exited;
  assert.deepEqual(exit, { code: 0, signal: null });
  assert.ok(Date.now() - t0 < 5000, `exited after ${Date.now() - t0} ms`);
  ws.close();
  polling.close();
});
