// Races while a recovering CONNECT waits for Valkey (here: Valkey frozen for a moment, so the wait is long and
// certain). A client that goes away during that wait must leave nothing behind: no socket in the namespace or
// its rooms. A second CONNECT for the same namespace during that wait is a protocol error, never a second socket.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect, emitAck, closeAllClients, sleep } from "../lib/gateway.mjs";
import { openRawWs } from "../lib/rawws.mjs";
import { startValkey, closeAllRedis, until, singleNodeFault } from "../lib/valkey.mjs";
import { startRelayStack, startNodePeer } from "../relay/helpers.mjs";
import { recoveryEnv, recoverable, closeRecoverable } from "../recovery/helpers.mjs";
import { ALLOWED_ORIGIN } from "../lib/gateway.mjs";
import { contents, claimOf } from "./helpers.mjs";

let valkey, s, G, peer;

before(async () => {
  valkey = await startValkey();
  s = await startRelayStack({ valkeyUrl: valkey.url, gateways: 1, gatewayEnv: recoveryEnv(valkey.url) });
  [G] = s.gws;
  peer = await startNodePeer(valkey.url);
});
after(async () => {
  valkey?.resume();
  closeRecoverable();
  closeAllClients();
  await peer?.close();
  await s?.stop();
  closeAllRedis();
  await valkey?.stop();
});

/** A claim of alice's kept session: she connected, got a message, and dropped. */
async function keptClaim(tag) {
  const alice = await recoverable(G.url, s.cookies.alice, { reconnection: false });
  const bob = await connect(G.url, s.cookies.bob, { transports: ["websocket"] });
  await emitAck(bob, "message:send", { channelId: "c1", content: tag });
  await until(() => contents(alice).includes(tag), { what: "first message" });
  const claim = claimOf(alice);
  const gone = new Promise((resolve) => alice.once("disconnect", resolve));
  alice.io.engine.close();
  await gone;
  bob.close();
  return claim;
}

const aliceSockets = async () => (await peer.io.in(`user:${s.users.alice.id}`).fetchSockets()).map((x) => x.id);

/** An Engine.IO session over WebSocket, past its handshake (cookie and allowed origin). */
async function rawSession() {
  const ws = await openRawWs(G.url, "/socket.io/?EIO=4&transport=websocket", {
    headers: { Cookie: s.cookies.alice, Origin: ALLOWED_ORIGIN },
  });
  assert.equal(ws.status, 101);
  await ws.nextMatching(/^0\{/);
  return ws;
}

test("the client goes away while its recovery waits for Valkey: no socket is left behind", { skip: singleNodeFault }, async () => {
  const claim = await keptClaim("zombie-0");
  await until(async () => (await aliceSockets()).length === 0, { what: "alice gone" });
  const ws = await rawSession();
  valkey.pause();
  try {
    ws.send(`40${JSON.stringify(claim)}`);
    await sleep(400); // authenticated by the app by now; the restore waits for Valkey
    ws.destroy();
    await sleep(200);
  } finally {
    valkey.resume();
  }
  await sleep(1000);
  assert.deepEqual(await aliceSockets(), [], "no zombie socket in the namespace");
});

test("a second CONNECT while the first waits for Valkey: a protocol error, never a second socket", { skip: singleNodeFault }, async () => {
  const claim = await keptClaim("twice-0");
  await until(async () => (await aliceSockets()).length === 0, { what: "alice gone" });
  const ws = await rawSession();
  valkey.pause();
  try {
    ws.send(`40${JSON.stringify(claim)}`);
    await sleep(400);
    ws.send("40");
    await sleep(200);
  } finally {
    valkey.resume();
  }
  await sleep(1000);
  assert.ok((await aliceSockets()).length <= 1, "at most one socket");
  await ws.until((w) => w.isEnded, 3000, "the session closed");
  await until(async () => (await aliceSockets()).length === 0, { what: "no socket once the session closed" });
});
