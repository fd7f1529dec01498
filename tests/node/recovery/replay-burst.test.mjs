// A recovered client that missed more packets than a socket may have queued (engine.outbound_queue) gets them
// all, then its CONNECT reply: the replay is the server's own burst, not a slow consumer. Over long-polling
// everything waits in the queue for the next GET, so the test does not depend on how fast a WebSocket drains
// (RELIABILITY.md open finding 7: behind a veth pair the replays of a storm's clients overflowed the queue,
// each was closed before its CONNECT reply and tried again, and the storms took 100 s). A client that missed
// more than a replay may hold gets recovered === false instead.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect, emitAck, closeAllClients } from "../lib/gateway.mjs";
import { startValkey, closeAllRedis, until } from "../lib/valkey.mjs";
import { startRelayStack } from "../relay/helpers.mjs";
import { recoveryEnv, recoverable, nextConnect, closeRecoverable } from "./helpers.mjs";

const QUEUE = 8;
let valkey, s, G;

before(async () => {
  valkey = await startValkey();
  s = await startRelayStack({
    valkeyUrl: valkey.url,
    gateways: 1,
    gatewayEnv: recoveryEnv(valkey.url, { GATEWAY_ENGINE__OUTBOUND_QUEUE: String(QUEUE) }),
  });
  [G] = s.gws;
});
after(async () => {
  closeRecoverable();
  closeAllClients();
  await s?.stop();
  closeAllRedis();
  await valkey?.stop();
});

const contents = (sock) => sock.got.filter((g) => g.event === "message:new").map((g) => g.args[0].content);

/** Drops the client's transport as a network failure would; sends `n` messages to c1 meanwhile. */
async function missing(alice, bob, tag, n) {
  const gone = new Promise((resolve) => alice.once("disconnect", resolve));
  alice.io.engine.close();
  await gone;
  const sent = [];
  for (let i = 0; i < n; i++) {
    await emitAck(bob, "message:send", { channelId: "c1", content: `${tag}-${i}` });
    sent.push(`${tag}-${i}`);
  }
  return sent;
}

test(`missed ${5 * QUEUE} packets with an outbound queue of ${QUEUE}: recovered with all of them, in order, once`, async () => {
  const alice = await recoverable(G.url, s.cookies.alice, { reconnectMs: 1500, transports: ["polling"] });
  const bob = await connect(G.url, s.cookies.bob, { transports: ["websocket"] });
  await emitAck(bob, "message:send", { channelId: "c1", content: "b-before" });
  await until(() => contents(alice).includes("b-before"), { what: "first message" });
  const sid = alice.id;
  const sent = await missing(alice, bob, "b-gap", 5 * QUEUE);
  assert.equal(await nextConnect(alice), true, "recovered");
  assert.equal(alice.id, sid, "same id");
  await until(() => contents(alice).length === 1 + sent.length, { what: "every missed message" });
  assert.deepEqual(contents(alice), ["b-before", ...sent]);
  alice.close();
  bob.close();
});

test("missed more than a replay may hold (16 × the queue): recovered === false, and live again", async () => {
  const alice = await recoverable(G.url, s.cookies.alice, { reconnectMs: 1500, transports: ["polling"] });
  const bob = await connect(G.url, s.cookies.bob, { transports: ["websocket"] });
  await emitAck(bob, "message:send", { channelId: "c1", content: "c-before" });
  await until(() => contents(alice).includes("c-before"), { what: "first message" });
  await missing(alice, bob, "c-gap", 16 * QUEUE + 1);
  assert.equal(await nextConnect(alice), false, "not recovered: the app refetches instead");
  await emitAck(bob, "message:send", { channelId: "c1", content: "c-live" });
  await until(() => contents(alice).includes("c-live"), { what: "live message" });
  assert.ok(!contents(alice).some((c) => c.startsWith("c-gap")), "no part of the gap");
  alice.close();
  bob.close();
});
