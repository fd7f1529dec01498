// A phone switches networks: its old TCP connection goes silent (no FIN) and the client reconnects with its
// pid, to the same instance (nginx's affinity) or to another one. The recovered socket must be the one that
// receives, from the first second and after the old session's ping timeout fires; the old socket is closed at
// once (one live socket per session, on any instance), and nothing the old session does later touches the
// new one: its close, its kept-session write, its rooms.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Emitter } from "@socket.io/redis-emitter";
import { connect, emitAck, closeAllClients, sleep } from "../lib/gateway.mjs";
import { startValkey, redisClient, closeAllRedis, until } from "../lib/valkey.mjs";
import { startRelayStack, startNodePeer } from "../relay/helpers.mjs";
import { recoveryEnv, recoverable, nextConnect, closeRecoverable } from "../recovery/helpers.mjs";
import { startSilentRelay, closeSilentRelays, contents } from "./helpers.mjs";

// The old session dies PING_INTERVAL + PING_TIMEOUT after its connection went silent.
const PING_INTERVAL = 1000;
const PING_TIMEOUT = 1000;
let valkey, s, A, B, emitter, peer;

before(async () => {
  valkey = await startValkey();
  s = await startRelayStack({
    valkeyUrl: valkey.url,
    gateways: 2,
    gatewayEnv: recoveryEnv(valkey.url, {
      GATEWAY_ENGINE__PING_INTERVAL_MS: String(PING_INTERVAL),
      GATEWAY_ENGINE__PING_TIMEOUT_MS: String(PING_TIMEOUT),
    }),
  });
  [A, B] = s.gws;
  emitter = new Emitter(redisClient(valkey.url));
  peer = await startNodePeer(valkey.url);
});
after(async () => {
  closeRecoverable();
  closeAllClients();
  closeSilentRelays();
  await peer?.close();
  await s?.stop();
  closeAllRedis();
  await valkey?.stop();
});

const everyone = (sock) => sock.got.filter((g) => g.event === "all-news").map((g) => g.args[0]);

/** Alice connected to A through a relay that then goes silent; she reconnects (recovered) to `target`. */
async function switchNetworks(target, tag) {
  const relay = await startSilentRelay(A.url);
  const alice = await recoverable(relay.url, s.cookies.alice, { reconnectMs: 200 });
  const bob = await connect(B.url, s.cookies.bob, { transports: ["websocket"] });
  await emitAck(bob, "message:send", { channelId: "c1", content: `${tag}-before` });
  await until(() => contents(alice).includes(`${tag}-before`), { what: "first message" });
  const sid = alice.id;
  relay.freeze();
  alice.moveTo(target.url);
  alice.io.engine.close(); // the client gives up on the old network; the server hears nothing of it
  assert.equal(await nextConnect(alice), true, "recovered");
  assert.equal(alice.id, sid, "same id");
  return { alice, bob, sid, relay };
}

/** Bob's channel message and a namespace-wide emit both reach alice. */
async function stillReceives(alice, bob, tag) {
  await emitAck(bob, "message:send", { channelId: "c1", content: tag });
  emitter.emit("all-news", tag);
  await until(() => contents(alice).includes(tag) && everyone(alice).includes(tag), { ms: 3000, what: `"${tag}" on alice` });
}

async function socketsOfAlice() {
  const sockets = await peer.io.in(`user:${s.users.alice.id}`).fetchSockets();
  return sockets.map((x) => x.id);
}

for (const where of ["same", "other"]) {
  test(`half-open connection, reconnect to the ${where} instance: the recovered socket keeps receiving`, async () => {
    const target = where === "same" ? A : B;
    const { alice, bob, sid, relay } = await switchNetworks(target, where);
    await stillReceives(alice, bob, `${where}-first-second`);
    // One live socket per session: the old one is gone at once, not at its ping timeout.
    await until(async () => (await socketsOfAlice()).length === 1, { ms: 1500, what: "one socket for alice" });
    assert.deepEqual(await socketsOfAlice(), [sid]);

    // The old session's ping timeout fires now; nothing it does may touch the new socket.
    await sleep(PING_INTERVAL + PING_TIMEOUT + 1000);
    await stillReceives(alice, bob, `${where}-after-timeout`);
    assert.deepEqual(await socketsOfAlice(), [sid]);

    // Its kept session is still the new one's: another drop recovers with exactly what was missed.
    const gone = new Promise((resolve) => alice.once("disconnect", resolve));
    alice.io.engine.close();
    await gone;
    await emitAck(bob, "message:send", { channelId: "c1", content: `${where}-gap` });
    assert.equal(await nextConnect(alice), true, "recovered again");
    assert.equal(alice.id, sid);
    await stillReceives(alice, bob, `${where}-end`);
    await sleep(200);
    assert.deepEqual(contents(alice), [
      `${where}-before`,
      `${where}-first-second`,
      `${where}-after-timeout`,
      `${where}-gap`,
      `${where}-end`,
    ]);
    alice.close();
    bob.close();
    relay.close();
  });
}
