// Interop with a Node socket.io 4.8.4 server on @socket.io/redis-adapter 8.3.0 (classic createAdapter) sharing
// the gateways' Valkey: broadcasts both ways (rooms, except, several rooms, binary, socket-id rooms),
// fetchSockets / RemoteSocket operations, allRooms, serverSideEmit with and without ack, broadcast with acks.
//
// Layout: gateway A has alice1 and carol; gateway B has alice2, bob and dave; the Node peer P has pc1 in
// channel:c1, pc2 in channel:c2 + dm:d1, pnone in no room.
//   c1 = alice, bob · c2 = alice, carol · c3 = bob, carol · c4 = alice, dave
//   w1 = alice, bob, carol · w2 = alice, dave · d1 = alice, bob · d2 = alice, dave
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect, emitAck, expectNothing, waitDisconnect, assertAlive, sleep } from "../lib/gateway.mjs";
import { startValkey, closeAllRedis, until } from "../lib/valkey.mjs";
import { startRelayStack, startNodePeer, peerClient, recorder, assertExactlyOnce } from "./helpers.mjs";

let valkey, s, A, B, P;
let alice1, carol, alice2, bob, dave, pc1, pc2, pnone;
let gwSockets, all;
const peerClients = [];
before(async () => {
  valkey = await startValkey();
  s = await startRelayStack({ valkeyUrl: valkey.url, gateways: 2 });
  [A, B] = s.gws;
  P = await startNodePeer(valkey.url, { requestsTimeout: 3000 });
  [alice1, carol, alice2, bob, dave] = await Promise.all([
    connect(A.url, s.cookies.alice, { extraHeaders: { Authorization: "Bearer not-a-real-token-1234" } }),
    connect(A.url, s.cookies.carol),
    connect(B.url, s.cookies.alice),
    connect(B.url, s.cookies.bob),
    connect(B.url, s.cookies.dave),
  ]);
  [pc1, pc2, pnone] = await Promise.all([
    peerClient(P, ["channel:c1"]),
    peerClient(P, ["channel:c2", "dm:d1"]),
    peerClient(P, []),
  ]);
  peerClients.push(pc1, pc2, pnone);
  gwSockets = { alice1, carol, alice2, bob, dave };
  all = { ...gwSockets, pc1, pc2, pnone };
});
after(async () => {
  for (const c of peerClients) c.close();
  await P?.close();
  await s?.stop();
  closeAllRedis();
  await valkey?.stop();
});

let n = 0;
const unique = (label) => `${label} #${++n} ${Date.now()}`;

function checkAlive() {
  assertAlive(A);
  assertAlive(B);
}

// ---------------------------------------------------------------- Node → gateways: broadcasts

test("Node io.to('channel:c1').emit → c1 sockets on both gateways and the peer, once each", async () => {
  const tag = unique("n-room");
  const rec = recorder(all, "n:room", (x) => x?.tag === tag);
  P.io.to("channel:c1").emit("n:room", { tag, nested: { list: [1, "two", null, true] } });
  await assertExactlyOnce(rec, ["alice1", "alice2", "bob", "pc1"], ["carol", "dave", "pc2", "pnone"], { label: "to(c1)" });
  assert.deepEqual(rec.args("bob")[0][0], { tag, nested: { list: [1, "two", null, true] } });
});

test("Node io.emit (no room) → every socket on both gateways and the peer, once each", async () => {
  const tag = unique("n-all");
  const rec = recorder(all, "n:all", (x) => x === tag);
  P.io.emit("n:all", tag);
  await assertExactlyOnce(rec, Object.keys(all), [], { label: "emit to all" });
});

test("Node to('workspace:w1').except('channel:c3') → alice only (bob and carol are in c3, dave not in w1)", async () => {
  const tag = unique("n-except");
  const rec = recorder(all, "n:except", (x) => x === tag);
  P.io.to("workspace:w1").except("channel:c3").emit("n:except", tag);
  await assertExactlyOnce(rec, ["alice1", "alice2"], ["carol", "bob", "dave", "pc1", "pc2", "pnone"], { label: "except room" });
});

test("Node to('channel:c1').except(<alice1's id>) → alice2, bob, pc1; not alice1", async () => {
  const tag = unique("n-except-sid");
  const rec = recorder(all, "n:except-sid", (x) => x === tag);
  P.io.to("channel:c1").except(alice1.id).emit("n:except-sid", tag);
  await assertExactlyOnce(rec, ["alice2", "bob", "pc1"], ["alice1", "carol", "dave", "pc2", "pnone"], { label: "except sid" });
});

test("Node to(['channel:c2','dm:d1']) → alice (in both) once, carol, bob, pc2 once; dave never", async () => {
  const tag = unique("n-multi");
  const rec = recorder(all, "n:multi", (x) => x === tag);
  P.io.to(["channel:c2", "dm:d1"]).emit("n:multi", tag);
  await assertExactlyOnce(rec, ["alice1", "alice2", "carol", "bob", "pc2"], ["dave", "pc1", "pnone"], { label: "multi-room" });
});

test("Node binary broadcast: Buffer args (top level and nested) arrive as binary on gateway clients", async () => {
  const tag = unique("n-bin");
  const rec = recorder(all, "n:bin", (t) => t === tag);
  const big = Buffer.alloc(70000, 7);
  P.io.to("channel:c4").emit("n:bin", tag, Buffer.from([1, 2, 3]), { nested: Buffer.from([0, 255]), n: 1 }, big);
  await assertExactlyOnce(rec, ["alice1", "alice2", "dave"], ["carol", "bob", "pc1", "pc2", "pnone"], { label: "binary" });
  for (const who of ["alice1", "dave"]) {
    const [, buf, obj, large] = rec.args(who)[0];
    assert.ok(Buffer.isBuffer(buf), `${who}: top-level arg arrived as ${typeof buf} ${JSON.stringify(buf)?.slice(0, 80)}`);
    assert.deepEqual([...buf], [1, 2, 3]);
    assert.ok(Buffer.isBuffer(obj?.nested), `${who}: nested arg arrived as ${JSON.stringify(obj)?.slice(0, 80)}`);
    assert.deepEqual([...obj.nested], [0, 255]);
    assert.equal(obj.n, 1);
    assert.ok(Buffer.isBuffer(large) && large.length === 70000 && large.every((b) => b === 7), `${who}: 70000-byte buffer damaged`);
  }
});

test("Node payload fidelity: dates, undefined, numbers, unicode arrive as Node's own client sees them", async () => {
  const tag = unique("n-fidelity");
  const rec = recorder(all, "n:fidelity", (t) => t === tag);
  const payload = {
    at: new Date("2026-01-02T03:04:05.678Z"),
    skipped: undefined,
    list: [undefined, null, 0, -5, 1.5, 2 ** 40, -(2 ** 31), 2 ** 53 - 1, 1e-7],
    text: "üñí©ødé 😀 \u0000 \"quoted\" #/#",
    empty: { a: {}, b: [] },
    bool: [true, false],
  };
  P.io.to("channel:c1").emit("n:fidelity", tag, payload, undefined, null, 42);
  await assertExactlyOnce(rec, ["alice1", "alice2", "bob", "pc1"], ["carol", "dave", "pc2", "pnone"], { label: "fidelity" });
  const reference = rec.args("pc1")[0]; // what Node delivers to its own socket
  for (const who of ["alice1", "alice2", "bob"]) {
    assert.deepEqual(rec.args(who)[0], reference, `${who} got a different payload than the Node peer's own client`);
  }
});

test("Node flags: volatile and compress(false) broadcasts are delivered like plain ones", async () => {
  const tag = unique("n-flags");
  const rec = recorder(all, "n:flags", (x) => x === tag);
  P.io.volatile.compress(false).to("channel:c3").emit("n:flags", tag);
  await assertExactlyOnce(rec, ["bob", "carol"], ["alice1", "alice2", "dave", "pc1", "pc2", "pnone"], { label: "volatile+compress" });
});

test("Node to(['channel:c3', 123]) (a numeric room, as Node allows): c3 members still get it; nothing breaks", async () => {
  const tag = unique("n-numeric");
  const rec = recorder(all, "n:numeric", (x) => x === tag);
  P.io.to(["channel:c3", 123]).emit("n:numeric", tag);
  await assertExactlyOnce(rec, ["bob", "carol"], ["alice1", "alice2", "dave", "pc1", "pc2", "pnone"], { label: "numeric room" });
  checkAlive();
});

test("Node io.to(<gateway socket id>).emit → only that socket (socket-id room across instances)", async () => {
  for (const [name, sock] of [["alice1", alice1], ["dave", dave]]) {
    const tag = unique(`direct-${name}`);
    const rec = recorder(all, "n:direct", (x) => x === tag);
    P.io.to(sock.id).emit("n:direct", tag);
    await assertExactlyOnce(rec, [name], Object.keys(all).filter((k) => k !== name), { label: `to(${name}.id)` });
  }
});

// ---------------------------------------------------------------- gateways → Node

test("gateway message:send (bob on B, c1) → the peer's c1 client gets message:new once, with the app's object", async () => {
  const content = unique("to peer");
  const rec = recorder(all, "message:new", (m) => m?.content === content);
  const ack = await emitAck(bob, "message:send", { channelId: "c1", content });
  assert.equal(ack?.ok, true, JSON.stringify(ack));
  await assertExactlyOnce(rec, ["alice1", "alice2", "bob", "pc1"], ["carol", "dave", "pc2", "pnone"], { label: "gateway → peer" });
  assert.deepEqual(rec.args("pc1")[0][0], ack.message);
});

test("gateway message:send to a dm (alice1 on A, d1) → the peer's d1 client once", async () => {
  const content = unique("dm to peer");
  const rec = recorder(all, "message:new", (m) => m?.content === content);
  const ack = await emitAck(alice1, "message:send", { conversationId: "d1", content });
  assert.equal(ack?.ok, true, JSON.stringify(ack));
  await assertExactlyOnce(rec, ["alice1", "alice2", "bob", "pc2"], ["carol", "dave", "pc1", "pnone"], { label: "dm → peer" });
});

test("gateway typing:start (carol on A, c2; except the sender) → alice on A and B and the peer's c2 client", async () => {
  const rec = recorder(all, "typing:update", (u) => u?.room === "channel:c2" && u?.userId === s.users.carol.id && u?.isTyping === true);
  carol.emit("typing:start", { channelId: "c2" });
  await assertExactlyOnce(rec, ["alice1", "alice2", "pc2"], ["carol", "bob", "dave", "pc1", "pnone"], { label: "typing → peer" });
  carol.emit("typing:stop", { channelId: "c2" });
});

// ---------------------------------------------------------------- requests

const roomsOf = {
  alice: ["workspace:w1", "workspace:w2", "channel:c1", "channel:c2", "channel:c4", "dm:d1", "dm:d2"],
  bob: ["workspace:w1", "channel:c1", "channel:c3", "dm:d1"],
  carol: ["workspace:w1", "channel:c2", "channel:c3"],
  dave: ["workspace:w2", "channel:c4", "dm:d2"],
};

test("Node fetchSockets(): every gateway socket with its rooms (sid room included) and data {userId}; no cookie", async () => {
  const t0 = Date.now();
  const sockets = await P.io.fetchSockets();
  const elapsed = Date.now() - t0;
  assert.ok(elapsed < 2500, `fetchSockets took ${elapsed} ms (a gateway did not answer?)`);
  const byId = new Map(sockets.map((x) => [x.id, x]));
  const want = { alice1: "alice", carol: "carol", alice2: "alice", bob: "bob", dave: "dave" };
  for (const [name, user] of Object.entries(want)) {
    const sock = gwSockets[name];
    const remote = byId.get(sock.id);
    assert.ok(remote, `${name} (${sock.id}) missing from fetchSockets: ${JSON.stringify([...byId.keys()])}`);
    const expected = [sock.id, `user:${s.users[user].id}`, ...roomsOf[user]].sort();
    assert.deepEqual([...remote.rooms].sort(), expected, `${name}'s rooms`);
    assert.deepEqual(remote.data, { userId: s.users[user].id }, `${name}'s data`);
    const headers = remote.handshake?.headers ?? {};
    const lower = Object.keys(headers).map((k) => k.toLowerCase());
    assert.ok(!lower.includes("cookie"), `${name}: handshake headers carry a cookie`);
    assert.ok(!lower.includes("authorization"), `${name}: handshake headers carry authorization`);
    const hs = JSON.stringify(remote.handshake ?? {});
    assert.ok(!hs.includes("better-auth"), `${name}: handshake mentions better-auth`);
    assert.ok(!hs.includes("not-a-real-token-1234"), `${name}: handshake carries the Authorization value`);
    // As Node reports them: the request's URL, and its query parsed.
    assert.match(remote.handshake.url, /^\/socket\.io\/\?EIO=4&transport=/, `${name}'s handshake url`);
    assert.equal(remote.handshake.query.EIO, "4", `${name}'s handshake query`);
    assert.ok(["websocket", "polling"].includes(remote.handshake.query.transport), `${name}'s handshake transport`);
    const token = /better-auth\.session_token=([^;]+)/.exec(s.cookies[user])[1];
    assert.ok(!hs.includes(token) && !hs.includes(decodeURIComponent(token)), `${name}: handshake carries the session token`);
  }
  for (const pc of [pc1, pc2, pnone]) assert.ok(byId.has(pc.id), "the peer's own sockets are in the list");
  assert.equal(sockets.length, 8, `expected 5 gateway + 3 peer sockets, got ${JSON.stringify([...byId.keys()])}`);
});

test("Node in('channel:c3').fetchSockets() and in('workspace:w1').except('channel:c3') select across instances", async () => {
  const c3 = await P.io.in("channel:c3").fetchSockets();
  assert.deepEqual(c3.map((x) => x.id).sort(), [bob.id, carol.id].sort());
  const w1 = await P.io.in("workspace:w1").except("channel:c3").fetchSockets();
  assert.deepEqual(w1.map((x) => x.id).sort(), [alice1.id, alice2.id].sort());
  const none = await P.io.in("no-such-room").fetchSockets();
  assert.deepEqual(none, []);
});

test("RemoteSocket from Node: emit reaches that gateway socket; join/leave change its rooms", async () => {
  const [remoteBob] = await P.io.in(bob.id).fetchSockets();
  assert.ok(remoteBob, "bob not found by his id");
  const tag = unique("remote-emit");
  const rec = recorder(all, "n:remote", (x) => x === tag);
  remoteBob.emit("n:remote", tag);
  await assertExactlyOnce(rec, ["bob"], ["alice1", "alice2", "carol", "dave", "pc1", "pc2", "pnone"], { label: "RemoteSocket.emit" });

  remoteBob.join("extra:joined");
  await until(async () => (await P.io.in("extra:joined").fetchSockets()).some((x) => x.id === bob.id), {
    ms: 3000,
    what: "bob in extra:joined after RemoteSocket.join",
  });
  const tag2 = unique("to-joined");
  const rec2 = recorder(all, "n:joined", (x) => x === tag2);
  P.io.to("extra:joined").emit("n:joined", tag2);
  await assertExactlyOnce(rec2, ["bob"], ["alice1", "alice2", "carol", "dave", "pc1", "pc2", "pnone"], { label: "to(extra:joined)" });

  remoteBob.leave("extra:joined");
  await until(async () => (await P.io.in("extra:joined").fetchSockets()).length === 0, {
    ms: 3000,
    what: "extra:joined empty after RemoteSocket.leave",
  });
  const none = expectNothing(bob, "n:left", 400);
  P.io.to("extra:joined").emit("n:left", 1);
  await none;
});

test("Node io.in(<socket id>).disconnectSockets(true) disconnects that gateway socket only", async () => {
  const carol2 = await connect(B.url, s.cookies.carol);
  const id = carol2.id; // socket.io-client clears socket.id on disconnect
  const gone = waitDisconnect(carol2, 3000);
  const stay = Object.values(gwSockets).map((sock) => expectNothing(sock, "disconnect", 500));
  P.io.in(id).disconnectSockets(true);
  const reason = await gone;
  assert.ok(["transport close", "io server disconnect"].includes(reason), reason);
  await Promise.all(stay);
  await until(async () => (await P.io.in(id).fetchSockets()).length === 0, { ms: 2000, what: "carol2 gone from fetchSockets" });
});

test("Node allRooms(): the gateways' rooms (memberships, users, socket ids) and the peer's", async () => {
  const t0 = Date.now();
  const rooms = await P.io.of("/").adapter.allRooms();
  assert.ok(Date.now() - t0 < 2500, `allRooms took ${Date.now() - t0} ms`);
  const expected = [
    "workspace:w1", "workspace:w2", "channel:c1", "channel:c2", "channel:c3", "channel:c4", "dm:d1", "dm:d2",
    ...["alice", "bob", "carol", "dave"].map((u) => `user:${s.users[u].id}`),
    ...Object.values(gwSockets).map((x) => x.id),
    pc1.id, pc2.id, pnone.id,
  ];
  const missing = expected.filter((r) => !rooms.has(r));
  assert.deepEqual(missing, [], `allRooms lacks ${JSON.stringify(missing)}; has ${JSON.stringify([...rooms])}`);
});

test("Node serverSideEmit without ack: accepted, no gateway socket receives it, gateways stay up", async () => {
  const none = Object.entries(gwSockets).map(([, sock]) => expectNothing(sock, "n:sse", 400));
  P.io.serverSideEmit("n:sse", { x: 1 }, Buffer.from([1]));
  await Promise.all(none);
  checkAlive();
});

test("Node serverSideEmitWithAck: one response per gateway, well before the requests timeout", async () => {
  const t0 = Date.now();
  const replies = await P.io.serverSideEmitWithAck("n:sse-ack", 1);
  const elapsed = Date.now() - t0;
  assert.equal(replies.length, 2, `expected one response from each of the 2 gateways, got ${JSON.stringify(replies)}`);
  assert.ok(elapsed < 2500, `serverSideEmitWithAck took ${elapsed} ms`);
  const none = Object.values(gwSockets).map((sock) => expectNothing(sock, "n:sse-ack", 300));
  await Promise.all(none);
});

test("Node io.to('channel:c1').timeout(3000).emitWithAck → every c1 client's ack, gateway ones included", async () => {
  const handlers = [];
  for (const [name, sock] of Object.entries({ alice1, alice2, bob, pc1 })) {
    const h = (x, cb) => cb({ from: name, x: x * 2 });
    sock.on("n:ask", h);
    handlers.push([sock, h]);
  }
  const noAsk = [carol, dave, pc2, pnone].map((sock) => expectNothing(sock, "n:ask", 300));
  try {
    const t0 = Date.now();
    const acks = await P.io.to("channel:c1").timeout(3000).emitWithAck("n:ask", 21);
    const elapsed = Date.now() - t0;
    assert.deepEqual(
      acks.map((a) => a?.from).sort(),
      ["alice1", "alice2", "bob", "pc1"],
      `acks: ${JSON.stringify(acks)}`,
    );
    for (const a of acks) assert.equal(a.x, 42);
    assert.ok(elapsed < 2500, `emitWithAck took ${elapsed} ms (waited for a missing clientCount?)`);
    await Promise.all(noAsk);
  } finally {
    for (const [sock, h] of handlers) sock.off("n:ask", h);
  }
});

test("Node broadcast-with-ack: a gateway client's binary ack arrives at Node as a Buffer", async () => {
  const h = (cb) => cb(Buffer.from([4, 5, 6]));
  dave.on("n:ask-bin", h);
  try {
    const acks = await P.io.to(dave.id).timeout(3000).emitWithAck("n:ask-bin");
    assert.equal(acks.length, 1, JSON.stringify(acks));
    assert.ok(Buffer.isBuffer(acks[0]), `ack arrived as ${JSON.stringify(acks[0])}`);
    assert.deepEqual([...acks[0]], [4, 5, 6]);
  } finally {
    dave.off("n:ask-bin", h);
  }
});

test("Node broadcast-with-ack to a room nobody is in: [] long before the timeout (each gateway counts 0)", async () => {
  const t0 = Date.now();
  const acks = await P.io.to("nobody-here").timeout(3000).emitWithAck("n:ask-none", 1);
  assert.deepEqual(acks, []);
  assert.ok(Date.now() - t0 < 2500, `took ${Date.now() - t0} ms`);
});

test("Node broadcast-with-ack where a gateway client does not answer: timeout error, the other acks kept", async () => {
  const h = (x, cb) => cb("from-alice1");
  alice1.on("n:ask-partial", h);
  // alice2 and bob do not register a handler: their acks never come.
  try {
    const t0 = Date.now();
    const [err, responses] = await new Promise((resolve) => {
      P.io.to("channel:c1").except(pc1.id).timeout(1000).emit("n:ask-partial", 1, (e, r) => resolve([e, r]));
    });
    assert.ok(err, "expected a timeout error");
    assert.ok(Date.now() - t0 >= 900, `the error came after ${Date.now() - t0} ms, before the timeout`);
    assert.deepEqual(responses, ["from-alice1"]);
  } finally {
    alice1.off("n:ask-partial", h);
  }
  checkAlive();
});

test("after all the above, the gateway sockets are still connected and both gateways alive", async () => {
  await sleep(100);
  for (const [name, sock] of Object.entries(gwSockets)) assert.ok(sock.connected, `${name} disconnected`);
  checkAlive();
});
