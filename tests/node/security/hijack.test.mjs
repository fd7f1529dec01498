// A kept session belongs to its user. User B (carol), signed in with her own valid cookie, presents user A's
// (alice's) recovery claim {pid, offset}: after alice's transport dropped, and while alice is connected. Carol
// must get a fresh session and hear nothing of alice's; alice keeps everything, her id and her session.
// Two gateways and a real Valkey; the attacker connects to the other instance. The pid never leaves the
// instance: Node peers' fetchSockets() do not see it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Emitter } from "@socket.io/redis-emitter";
import { connect, emitAck, closeAllClients, sleep } from "../lib/gateway.mjs";
import { startValkey, redisClient, closeAllRedis, until } from "../lib/valkey.mjs";
import { startRelayStack, startNodePeer } from "../relay/helpers.mjs";
import { recoveryEnv, recoverable, nextConnect, closeRecoverable } from "../recovery/helpers.mjs";
import { contents, heard, claimOf } from "./helpers.mjs";

let valkey, s, A, B, emitter, peer;

before(async () => {
  valkey = await startValkey();
  s = await startRelayStack({ valkeyUrl: valkey.url, gateways: 2, gatewayEnv: recoveryEnv(valkey.url) });
  [A, B] = s.gws;
  emitter = new Emitter(redisClient(valkey.url));
  peer = await startNodePeer(valkey.url);
});
after(async () => {
  closeRecoverable();
  closeAllClients();
  await peer?.close();
  await s?.stop();
  closeAllRedis();
  await valkey?.stop();
});

/** Alice's private traffic: her DM with bob (carol is not in it) and her own user room. */
async function privateTraffic(bob, tag) {
  await emitAck(bob, "message:send", { conversationId: "d1", content: `${tag}-dm` });
  emitter.to(`user:${s.users.alice.id}`).emit("notice", `${tag}-user`);
}

const privateTags = (sock) =>
  heard(sock)
    .filter((h) => h.event === "notice" || h.event === "message:new")
    .map((h) => (h.event === "notice" ? h.arg : h.arg.content));

test("hijack after the victim's transport dropped: a fresh session for the attacker, everything kept for the victim", async () => {
  const alice = await recoverable(A.url, s.cookies.alice, { reconnection: false });
  const bob = await connect(B.url, s.cookies.bob, { transports: ["websocket"] });
  await privateTraffic(bob, "a0");
  await until(() => privateTags(alice).length === 2, { what: "alice's first private messages" });
  const sid = alice.id;
  const claim = claimOf(alice);
  assert.equal(typeof claim.pid, "string");

  const gone = new Promise((resolve) => alice.once("disconnect", resolve));
  alice.io.engine.close();
  await gone;
  await privateTraffic(bob, "a1"); // missed by alice while she is away

  const carol = await recoverable(B.url, s.cookies.carol, { reconnection: false, auth: claim });
  assert.equal(carol.recovered, false, "the attacker is not recovered");
  assert.notEqual(carol.id, sid, "the attacker does not get the victim's id");
  assert.notEqual(carol._pid, claim.pid, "the attacker does not get the victim's pid");
  await privateTraffic(bob, "a2"); // while carol is connected and alice away
  await sleep(500);
  assert.deepEqual(privateTags(carol), [], "the attacker heard nothing of the victim's");

  // Alice comes back: her session is still hers, with what she missed, once, in order.
  alice.connect();
  assert.equal(await nextConnect(alice), true, "the victim is recovered");
  assert.equal(alice.id, sid);
  await privateTraffic(bob, "a3");
  await until(() => privateTags(alice).includes("a3-user") && privateTags(alice).includes("a3-dm"), {
    what: "alice's live messages",
  });
  await sleep(300);
  const dms = contents(alice).filter((c) => c.endsWith("-dm"));
  assert.deepEqual(dms, ["a0-dm", "a1-dm", "a2-dm", "a3-dm"]);
  assert.deepEqual(privateTags(carol), [], "the attacker still heard nothing");
  alice.close();
  carol.close();
  bob.close();
});

test("hijack while the victim is connected: the attacker gets a fresh session, the victim is untouched", async () => {
  const alice = await recoverable(A.url, s.cookies.alice, { reconnection: false });
  const bob = await connect(B.url, s.cookies.bob, { transports: ["websocket"] });
  await privateTraffic(bob, "b0");
  await until(() => privateTags(alice).length === 2, { what: "alice's first private messages" });
  const sid = alice.id;
  let aliceDisconnected = false;
  alice.on("disconnect", () => (aliceDisconnected = true));

  for (const gw of [A, B]) {
    const carol = await recoverable(gw.url, s.cookies.carol, { reconnection: false, auth: claimOf(alice) });
    assert.equal(carol.recovered, false, `not recovered on ${gw === A ? "the victim's" : "the other"} instance`);
    assert.notEqual(carol.id, sid);
    await privateTraffic(bob, "b1");
    await until(() => privateTags(alice).includes("b1-user"), { what: "alice still receives" });
    await sleep(300);
    assert.deepEqual(privateTags(carol), []);
    carol.close();
  }
  assert.equal(aliceDisconnected, false, "the victim was not disconnected");
  assert.equal(alice.id, sid);
  // Her session is still hers: a drop now recovers.
  const gone = new Promise((resolve) => alice.once("disconnect", resolve));
  alice.io.engine.close();
  await gone;
  await privateTraffic(bob, "b2");
  alice.connect();
  assert.equal(await nextConnect(alice), true, "the victim is still recoverable");
  await until(() => privateTags(alice).includes("b2-dm"), { what: "the missed DM" });
  alice.close();
  bob.close();
});

test("the pid is never shown to other servers: fetchSockets() carries no pid or offset", async () => {
  const alice = await recoverable(A.url, s.cookies.alice, { reconnection: false });
  const bob = await connect(B.url, s.cookies.bob, { transports: ["websocket"] });
  await emitAck(bob, "message:send", { conversationId: "d1", content: "pid-0" });
  await until(() => contents(alice).includes("pid-0"), { what: "first message" });
  const pid = alice._pid;
  const gone = new Promise((resolve) => alice.once("disconnect", resolve));
  alice.io.engine.close();
  await gone;
  alice.connect(); // sends {pid, offset} in its CONNECT
  assert.equal(await nextConnect(alice), true);
  const sockets = await peer.io.in(`user:${s.users.alice.id}`).fetchSockets();
  assert.equal(sockets.length, 1);
  const text = JSON.stringify(sockets.map((x) => ({ handshake: x.handshake, data: x.data })));
  assert.ok(!text.includes(pid), "the pid does not leave the instance");
  assert.equal(sockets[0].handshake.auth.offset, undefined);
  alice.close();
  bob.close();
});
