// Two gateway instances on one Valkey: what a socket on A causes reaches the right sockets on A and B,
// exactly once each (the sender's own instance does not get its broadcast back through Valkey).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect, emitAck, assertAlive } from "../lib/gateway.mjs";
import { startValkey, closeAllRedis, until } from "../lib/valkey.mjs";
import { startRelayStack, readyz, recorder, assertExactlyOnce } from "./helpers.mjs";

let valkey, s, A, B;
let aliceA, aliceB, bobA, bobB, carolB, daveA, daveB;
let all;
before(async () => {
  valkey = await startValkey();
  s = await startRelayStack({ valkeyUrl: valkey.url, gateways: 2 });
  [A, B] = s.gws;
  [aliceA, aliceB, bobA, bobB, carolB, daveA, daveB] = await Promise.all([
    connect(A.url, s.cookies.alice),
    connect(B.url, s.cookies.alice, { transports: ["polling"] }),
    connect(A.url, s.cookies.bob),
    connect(B.url, s.cookies.bob, { transports: ["websocket"] }),
    connect(B.url, s.cookies.carol),
    connect(A.url, s.cookies.dave),
    connect(B.url, s.cookies.dave),
  ]);
  all = { aliceA, aliceB, bobA, bobB, carolB, daveA, daveB };
});
after(async () => {
  await s?.stop();
  closeAllRedis();
  await valkey?.stop();
});

let n = 0;
const unique = (label) => `${label} #${++n} ${Date.now()}`;
const withContent = (content) => (m) => m?.content === content;

test("/readyz on both instances: 200 {ready:true, relay:'up'}", async () => {
  for (const gw of [A, B]) {
    const r = await readyz(gw);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.ready, true, JSON.stringify(r.body));
    assert.equal(r.body.relay, "up", JSON.stringify(r.body));
  }
});

test("message:send on A to c1 → message:new once on every c1 socket of A and B (alice, bob), never carol/dave", async () => {
  const content = unique("c1 from A");
  const rec = recorder(all, "message:new", withContent(content));
  const ack = await emitAck(aliceA, "message:send", { channelId: "c1", content });
  assert.equal(ack?.ok, true, JSON.stringify(ack));
  await assertExactlyOnce(rec, ["aliceA", "aliceB", "bobA", "bobB"], ["carolB", "daveA", "daveB"], { label: "c1 from A" });
  for (const name of ["aliceB", "bobB"]) {
    assert.deepEqual(rec.args(name)[0][0], ack.message, `${name}: the relayed message differs from the app's`);
  }
});

test("message:send on B to c1 → the same, in the other direction", async () => {
  const content = unique("c1 from B");
  const rec = recorder(all, "message:new", withContent(content));
  const ack = await emitAck(bobB, "message:send", { channelId: "c1", content });
  assert.equal(ack?.ok, true, JSON.stringify(ack));
  await assertExactlyOnce(rec, ["aliceA", "aliceB", "bobA", "bobB"], ["carolB", "daveA", "daveB"], { label: "c1 from B" });
});

test("room with members on B only (c2: alice, carol): a send from A reaches aliceB and carolB", async () => {
  const content = unique("c2 from A");
  const rec = recorder(all, "message:new", withContent(content));
  const ack = await emitAck(aliceA, "message:send", { channelId: "c2", content });
  assert.equal(ack?.ok, true, JSON.stringify(ack));
  await assertExactlyOnce(rec, ["aliceA", "aliceB", "carolB"], ["bobA", "bobB", "daveA", "daveB"], { label: "c2 from A" });
});

test("dm d2 from daveB → alice on A and B, dave on A and B; nobody else", async () => {
  const content = unique("d2 from B");
  const rec = recorder(all, "message:new", withContent(content));
  const ack = await emitAck(daveB, "message:send", { conversationId: "d2", content });
  assert.equal(ack?.ok, true, JSON.stringify(ack));
  await assertExactlyOnce(rec, ["aliceA", "aliceB", "daveA", "daveB"], ["bobA", "bobB", "carolB"], { label: "d2 from B" });
});

test("message:delete on A → message:deleted on both instances once", async () => {
  const content = unique("to delete");
  const sent = await emitAck(bobA, "message:send", { channelId: "c1", content });
  assert.equal(sent?.ok, true, JSON.stringify(sent));
  const id = sent.message.id;
  const rec = recorder(all, "message:deleted", (d) => JSON.stringify(d ?? {}).includes(id));
  const ack = await emitAck(bobA, "message:delete", { messageId: id });
  assert.equal(ack?.ok, true, JSON.stringify(ack));
  await assertExactlyOnce(rec, ["aliceA", "aliceB", "bobA", "bobB"], ["carolB", "daveA", "daveB"], { label: "delete" });
});

test("typing:start on A (room except the sender) → typing:update on B's c1 members, not the sender", async () => {
  const rec = recorder(all, "typing:update", (u) => u?.room === "channel:c1" && u?.userId === s.users.alice.id && u?.isTyping === true);
  aliceA.emit("typing:start", { channelId: "c1" });
  await assertExactlyOnce(rec, ["aliceB", "bobA", "bobB"], ["aliceA", "carolB", "daveA", "daveB"], { label: "typing" });
  aliceA.emit("typing:stop", { channelId: "c1" });
});

test("a burst of 50 sends from A and B: every c1 socket gets each message exactly once", async () => {
  const tag = unique("burst");
  const rec = recorder(all, "message:new", (m) => typeof m?.content === "string" && m.content.startsWith(tag));
  const acks = [];
  for (let i = 0; i < 50; i++) {
    const sender = i % 2 ? bobB : aliceA;
    acks.push(emitAck(sender, "message:send", { channelId: "c1", content: `${tag} ${i}` }));
  }
  for (const a of await Promise.all(acks)) assert.equal(a?.ok, true, JSON.stringify(a));
  const yes = ["aliceA", "aliceB", "bobA", "bobB"];
  await until(() => yes.every((k) => rec.args(k).length >= 50), { ms: 5000, what: "50 messages on every c1 socket" }).catch((e) => {
    throw new Error(`${e.message}; counts ${JSON.stringify(rec.counts())}`);
  });
  await new Promise((r) => setTimeout(r, 300));
  const counts = rec.counts();
  rec.stop();
  for (const k of yes) {
    const contents = rec.args(k).map(([m]) => m.content);
    assert.equal(new Set(contents).size, 50, `${k}: ${contents.length} deliveries, ${new Set(contents).size} distinct`);
    assert.equal(contents.length, 50, `${k}: duplicates (${JSON.stringify(counts)})`);
  }
  for (const k of ["carolB", "daveA", "daveB"]) assert.equal(counts[k], 0);
  assertAlive(A);
  assertAlive(B);
});
