// Through real nginx (configured from deploy/nginx.conf) in front of two gateway instances relaying
// through Valkey, with the fixture app behind the same origin: the page and the client bundle, the
// affinity cookie that keeps a polling session on one instance, the polling → WebSocket upgrade,
// WebSocket-only clients, messages between clients on different instances, and clients moving to
// the other instance when one stops.
// nginx missing is a failure (install it with WITH_NGINX=1 bash scripts/setup.sh), not a skip.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startEdgeStack, openSocket, closeOpened, waitUpgraded, pingIntervalOf, AFFINITY_COOKIE } from "./stack.mjs";
import { waitFor, emitAck, assertAlive, sleep } from "../lib/gateway.mjs";

let s;
const cookies = {};
before(async () => {
  // A short drain, for the last test (an instance stopping).
  s = await startEdgeStack({ gateways: 2, gatewayEnv: { GATEWAY_SERVER__DRAIN_WINDOW_MS: "300", GATEWAY_SERVER__SHUTDOWN_TIMEOUT_MS: "3000" } });
  for (const name of ["alice", "bob"]) cookies[name] = await s.login(name);
});
after(async () => {
  closeOpened();
  await s?.stop();
});

test("nginx serves the chat page and socket.io-client's bundle from the app, and /socket.io/ from a gateway", async () => {
  let r = await fetch(`${s.url}/`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type"), /text\/html/);
  assert.match(await r.text(), /id="signin-form"/);
  r = await fetch(`${s.url}/vendor/socket.io.min.js`);
  assert.equal(r.status, 200);
  const bundle = await r.text();
  assert.ok(bundle.length > 10000 && /Socket\.IO v4\./.test(bundle), "not socket.io-client's browser bundle");

  // A handshake without the affinity cookie gets one, scoped to /socket.io/.
  r = await fetch(`${s.url}/socket.io/?EIO=4&transport=polling`);
  assert.equal(r.status, 200);
  const open = JSON.parse((await r.text()).slice(1));
  assert.ok([0, 1].map(pingIntervalOf).includes(open.pingInterval), `open packet ${JSON.stringify(open)}`);
  const setCookie = r.headers.getSetCookie().find((c) => c.startsWith(`${AFFINITY_COOKIE}=`));
  assert.ok(setCookie, `no ${AFFINITY_COOKIE} cookie in ${JSON.stringify(r.headers.getSetCookie())}`);
  assert.match(setCookie, /^sio_affinity=[0-9a-f]{32}; Path=\/socket\.io\/; HttpOnly; SameSite=Lax$/);
  // The session's next request (an Engine.IO close) with the cookie reaches the instance that
  // issued the sid (another one would answer 400 for an unknown sid), and gets no new cookie.
  const key = /^sio_affinity=([0-9a-f]+)/.exec(setCookie)[1];
  r = await fetch(`${s.url}/socket.io/?EIO=4&transport=polling&sid=${open.sid}`, {
    method: "POST",
    body: "1",
    headers: { cookie: `${AFFINITY_COOKIE}=${key}`, "content-type": "text/plain;charset=UTF-8" },
  });
  assert.equal(r.status, 200, `close of the probe session: ${r.status} ${await r.text()}`);
  assert.deepEqual(r.headers.getSetCookie(), []);
});

test("the affinity cookie pins a client to one instance, and different keys reach both instances", async () => {
  const keyA = await s.affinityFor(0);
  const keyB = await s.affinityFor(1);
  for (let i = 0; i < 3; i++) {
    assert.equal(await s.instanceOfAffinity(keyA), 0);
    assert.equal(await s.instanceOfAffinity(keyB), 1);
  }
});

test("default transports through nginx: polling handshake then WebSocket upgrade, every request of a session on one instance", async () => {
  // Six clients that keep cookies like a browser does (socket.io-client in Node: withCredentials
  // gives it a cookie jar), each with a fresh jar: each gets its own affinity from nginx.
  const sessions = [];
  for (let i = 0; i < 6; i++) {
    const { socket, handshake } = await openSocket(s.url, cookies.alice, { withCredentials: true });
    assert.equal(handshake.upgrades.includes("websocket"), true);
    assert.equal(await waitUpgraded(socket), "websocket");
    assert.equal(socket.io.engine.transport.name, "websocket");
    // The socket works after the upgrade: an acked round trip through the app.
    const ack = await emitAck(socket, "message:send", { channelId: "c1", content: `upgrade check ${i}` });
    assert.equal(ack?.ok, true, JSON.stringify(ack));
    sessions.push({ sid: socket.io.engine.id, instance: [0, 1].find((j) => pingIntervalOf(j) === handshake.pingInterval) });
    socket.close();
  }
  // nginx logs a WebSocket request when it ends: wait for the last one's line.
  const last = sessions.at(-1).sid;
  for (let t = 0; t < 40 && !new RegExp(`transport=websocket&sid=${last} .* 101 `).test(s.nginx.accessLog()); t++) await sleep(50);
  const log = s.nginx.accessLog().split("\n");
  for (const { sid, instance } of sessions) {
    const lines = log.filter((l) => l.includes(`sid=${sid} `));
    const upstreams = new Set(lines.map((l) => /upstream=(\S+)/.exec(l)?.[1]));
    assert.deepEqual([...upstreams], [`127.0.0.1:${s.gws[instance].port}`], `requests of session ${sid}:\n${lines.join("\n")}`);
    assert.ok(lines.some((l) => /transport=polling&t=\S+&sid=/.test(l) && / 200 /.test(l)), `no polling request for ${sid}`);
    assert.ok(lines.some((l) => /transport=websocket&sid=/.test(l) && / 101 /.test(l)), `no WebSocket upgrade for ${sid}`);
  }
});

test("a polling-then-upgraded client on one instance and a WebSocket-only client on the other exchange messages and typing", async () => {
  const keyA = await s.affinityFor(0);
  const keyB = await s.affinityFor(1);
  const a = await openSocket(s.url, `${cookies.alice}; ${AFFINITY_COOKIE}=${keyA}`);
  const b = await openSocket(s.url, `${cookies.bob}; ${AFFINITY_COOKIE}=${keyB}`, { transports: ["websocket"] });
  assert.equal(a.handshake.pingInterval, pingIntervalOf(0), "alice is not on instance 0");
  assert.equal(b.handshake.pingInterval, pingIntervalOf(1), "bob is not on instance 1");
  assert.equal(await waitUpgraded(a.socket), "websocket");
  assert.equal(b.socket.io.engine.transport.name, "websocket");

  const toBob = `alice → bob ${Date.now()}`;
  const gotByBob = waitFor(b.socket, "message:new", 3000, (m) => m?.content === toBob);
  const ackA = await emitAck(a.socket, "message:send", { channelId: "c1", content: toBob });
  assert.equal(ackA?.ok, true, JSON.stringify(ackA));
  assert.deepEqual(await gotByBob, ackA.message);

  const toAlice = `bob → alice ${Date.now()}`;
  const gotByAlice = waitFor(a.socket, "message:new", 3000, (m) => m?.content === toAlice);
  const ackB = await emitAck(b.socket, "message:send", { conversationId: "d1", content: toAlice });
  assert.equal(ackB?.ok, true, JSON.stringify(ackB));
  assert.deepEqual(await gotByAlice, ackB.message);

  const typing = waitFor(b.socket, "typing:update", 3000, (u) => u?.isTyping === true);
  a.socket.emit("typing:start", { channelId: "c1" });
  const u = await typing;
  assert.equal(u.room, "channel:c1");
  assert.equal(u.userId, s.users.alice.id);
  const stopped = waitFor(b.socket, "typing:update", 3000, (x) => x?.isTyping === false);
  a.socket.emit("typing:stop", { channelId: "c1" });
  await stopped;
  for (const gw of s.gws) assertAlive(gw);
});

test("an Origin other than the site's own is refused through nginx; the site's own is accepted", async () => {
  await assert.rejects(
    openSocket(s.url, null, { transports: ["websocket"], extraHeaders: { Cookie: cookies.alice, Origin: "http://evil.test" } }),
    /websocket error|xhr poll error|403/,
  );
  await assert.rejects(
    openSocket(s.url, null, { transports: ["polling"], extraHeaders: { Cookie: cookies.alice, Origin: "http://evil.test" } }),
    /xhr poll error/,
  );
  // (WebSocket-only: a client without a cookie jar has no affinity for polling.)
  const ok = await openSocket(s.url, null, { transports: ["websocket"], extraHeaders: { Cookie: cookies.alice, Origin: s.origin } });
  ok.socket.close();
});

// Last: it stops instance 0.
test("when an instance stops (SIGTERM), its clients reconnect through nginx to the other one", async () => {
  const keyA = await s.affinityFor(0);
  const a = await openSocket(s.url, `${cookies.alice}; ${AFFINITY_COOKIE}=${keyA}`, {
    reconnection: true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 300,
  });
  const b = await openSocket(s.url, `${cookies.bob}; ${AFFINITY_COOKIE}=${await s.affinityFor(1)}`, { transports: ["websocket"] });
  assert.equal(a.handshake.pingInterval, pingIntervalOf(0));
  assert.equal(b.handshake.pingInterval, pingIntervalOf(1));
  await waitUpgraded(a.socket);
  const oldSid = a.socket.io.engine.id;
  const reconnected = new Promise((resolve) => a.socket.io.once("reconnect", resolve));
  await s.gws[0].stop();
  await Promise.race([reconnected, sleep(8000).then(() => assert.fail("alice did not reconnect within 8 s"))]);
  if (!a.socket.connected) await waitFor(a.socket, "connect", 3000);
  const newSid = a.socket.io.engine.id;
  assert.notEqual(newSid, oldSid);
  // The same affinity cookie now lands on instance 1 (nginx skips the stopped one)...
  assert.equal(await s.instanceOfAffinity(keyA), 1);
  // ...and the reconnected socket works: a message from bob (on instance 1) reaches it.
  const text = `after failover ${Date.now()}`;
  const got = waitFor(a.socket, "message:new", 3000, (m) => m?.content === text);
  const ack = await emitAck(b.socket, "message:send", { channelId: "c1", content: text });
  assert.equal(ack?.ok, true, JSON.stringify(ack));
  await got;
  const lines = s.nginx.accessLog().split("\n").filter((l) => l.includes(`sid=${newSid}`));
  assert.ok(lines.length > 0, "no request of the new session in nginx's log");
  for (const l of lines) assert.match(l, new RegExp(`upstream=127\\.0\\.0\\.1:${s.gws[1].port}\\b`), l);
  assertAlive(s.gws[1]);
});
