// Origin checks: a present, not-allowed Origin is refused with HTTP 403 before any Socket.IO packet
// (polling and websocket); an allowed Origin and a missing Origin work.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { startStack, connect, connectError, ALLOWED_ORIGIN, assertAlive } from "../lib/gateway.mjs";

let s;
before(async () => {
  s = await startStack();
});
after(async () => {
  await s?.stop();
});

const handshakePath = "/socket.io/?EIO=4&transport=polling";

async function handshake(headers) {
  const res = await fetch(s.url + handshakePath, { headers, signal: AbortSignal.timeout(5000) });
  return { status: res.status, text: await res.text(), headers: res.headers };
}

test("polling handshake with a foreign Origin → 403, no Engine.IO open packet", async () => {
  const r = await handshake({ Origin: "http://evil.test", Cookie: s.cookies.alice });
  assert.equal(r.status, 403, `status ${r.status}: ${r.text.slice(0, 200)}`);
  assert.ok(!r.text.startsWith("0{"), `body looks like an open packet: ${r.text.slice(0, 100)}`);
  assert.ok(!/"sid"/.test(r.text), "body carries a sid");
});

test("polling handshake with a foreign Origin and no cookie → 403 as well", async () => {
  const r = await handshake({ Origin: "http://evil.test" });
  assert.equal(r.status, 403);
});

test("an Origin that only resembles the allowed one → 403", async () => {
  for (const origin of ["http://allowed.test.evil.test", "https://allowed.test", "http://allowed.test:8080", "null"]) {
    const r = await handshake({ Origin: origin, Cookie: s.cookies.alice });
    assert.equal(r.status, 403, `Origin ${origin}: status ${r.status}`);
  }
});

test("polling handshake with the allowed Origin → 200 open packet", async () => {
  const r = await handshake({ Origin: ALLOWED_ORIGIN, Cookie: s.cookies.alice });
  assert.equal(r.status, 200, r.text.slice(0, 200));
  assert.ok(r.text.startsWith("0{"), r.text.slice(0, 100));
});

test("polling handshake without Origin → 200 open packet", async () => {
  const r = await handshake({ Cookie: s.cookies.alice });
  assert.equal(r.status, 200, r.text.slice(0, 200));
  assert.ok(r.text.startsWith("0{"), r.text.slice(0, 100));
});

test("raw websocket upgrade with a foreign Origin → 403, no 101", async () => {
  const status = await new Promise((resolve, reject) => {
    const req = http.request(s.url + "/socket.io/?EIO=4&transport=websocket", {
      headers: {
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        Origin: "http://evil.test",
        Cookie: s.cookies.alice,
      },
      timeout: 5000,
    });
    req.on("upgrade", (res, socket) => {
      socket.destroy();
      resolve(res.statusCode);
    });
    req.on("response", (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
  assert.equal(status, 403);
});

test("socket.io-client with a foreign Origin: polling → connect_error", async () => {
  const err = await connectError(s.url, s.cookies.alice, { extraHeaders: { Origin: "http://evil.test" } });
  assert.ok(err instanceof Error);
  assert.notEqual(err.message, "Invalid session");
});

test("socket.io-client with a foreign Origin: websocket only → connect_error", async () => {
  const err = await connectError(s.url, s.cookies.alice, {
    transports: ["websocket"],
    extraHeaders: { Origin: "http://evil.test" },
  });
  assert.ok(err instanceof Error);
  assert.notEqual(err.message, "Invalid session");
});

test("socket.io-client with the allowed Origin connects (polling+upgrade and websocket)", async () => {
  const a = await connect(s.url, s.cookies.alice, { extraHeaders: { Origin: ALLOWED_ORIGIN } });
  const b = await connect(s.url, s.cookies.alice, { transports: ["websocket"], extraHeaders: { Origin: ALLOWED_ORIGIN } });
  assert.ok(a.connected && b.connected);
  a.close();
  b.close();
});

test("socket.io-client without Origin connects; without cookie it is still refused", async () => {
  const a = await connect(s.url, s.cookies.bob);
  assert.ok(a.connected);
  a.close();
  const err = await connectError(s.url, null, { extraHeaders: { Origin: ALLOWED_ORIGIN } });
  assert.equal(err.message, "Invalid session");
});

test("the allowed Origin gets CORS headers for credentials", async () => {
  const r = await handshake({ Origin: ALLOWED_ORIGIN, Cookie: s.cookies.alice });
  assert.equal(r.headers.get("access-control-allow-origin"), ALLOWED_ORIGIN);
  assert.equal(r.headers.get("access-control-allow-credentials"), "true");
});

test("the gateway process is still running at the end of the file", () => {
  assertAlive(s.gw);
});
