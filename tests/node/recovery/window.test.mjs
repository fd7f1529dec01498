// Connection state recovery on one instance: a dropped transport comes back recovered with what it missed;
// after the window, or with its session revoked, it does not; bogus claims get a fresh session.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect, emitAck, closeAllClients, sleep } from "../lib/gateway.mjs";
import { revokeUserSessions } from "../lib/app.mjs";
import { startValkey, redisClient, closeAllRedis, until, nodesOf } from "../lib/valkey.mjs";
import { startRelayStack } from "../relay/helpers.mjs";
import { recoveryEnv, recoverable, nextConnect, closeRecoverable } from "./helpers.mjs";

const WINDOW_MS = 1500;
let valkey, s, G;

before(async () => {
  valkey = await startValkey();
  s = await startRelayStack({
    valkeyUrl: valkey.url,
    gateways: 1,
    gatewayEnv: recoveryEnv(valkey.url, { GATEWAY_RECOVERY__MAX_DISCONNECTION_MS: String(WINDOW_MS) }),
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

/** Drops the client's transport as a network failure would (the client reconnects by itself). */
function dropTransport(sock) {
  const gone = new Promise((resolve) => sock.once("disconnect", resolve));
  sock.io.engine.close();
  return gone;
}

test("a dropped transport within the window: recovered, missed packets once, same id and rooms", async () => {
  const alice = await recoverable(G.url, s.cookies.alice, { reconnectMs: 600 });
  const bob = await connect(G.url, s.cookies.bob, { transports: ["websocket"] });
  await emitAck(bob, "message:send", { channelId: "c1", content: "w-before" });
  await until(() => contents(alice).includes("w-before"), { what: "first message" });
  const sid = alice.id;
  await dropTransport(alice);
  await emitAck(bob, "message:send", { channelId: "c1", content: "w-gap-1" });
  await emitAck(bob, "message:send", { channelId: "c1", content: "w-gap-2" });
  assert.equal(await nextConnect(alice), true, "recovered");
  assert.equal(alice.id, sid);
  await emitAck(bob, "message:send", { channelId: "c1", content: "w-live" });
  await until(() => contents(alice).includes("w-live"), { what: "live message" });
  await sleep(200);
  assert.deepEqual(contents(alice), ["w-before", "w-gap-1", "w-gap-2", "w-live"]);
  alice.close();
  bob.close();
});

test("after SCRIPT FLUSH (as after a Valkey restart) broadcasts are still recorded: once each, in order, recoverable", async () => {
  const admin = redisClient(valkey.url);
  const alice = await recoverable(G.url, s.cookies.alice, { reconnectMs: 600 });
  const bob = await connect(G.url, s.cookies.bob, { transports: ["websocket"] });
  await emitAck(bob, "message:send", { channelId: "c1", content: "f-1" });
  await until(() => contents(alice).includes("f-1"), { what: "f-1" });
  // Summed over every node (a Cluster's primaries each run the scripts of their slots).
  const stat = async (section, re) =>
    (await Promise.all(nodesOf(admin).map((n) => n.info(section)))).reduce((sum, text) => sum + Number(text.match(re)?.[1] ?? 0), 0);
  const calls = (cmd) => stat("commandstats", new RegExp(`cmdstat_${cmd}:calls=(\\d+)`));
  assert.ok((await calls("evalsha")) > 0, "recorded by digest");
  const noscript = () => stat("errorstats", /errorstat_NOSCRIPT:count=(\d+)/);
  const noscriptBefore = await noscript();
  // The gateway calls the recording script by digest; the next call gets NOSCRIPT and is sent again.
  for (const node of nodesOf(admin)) assert.equal(await node.call("SCRIPT", "FLUSH"), "OK");
  await emitAck(bob, "message:send", { channelId: "c1", content: "f-2" });
  await emitAck(bob, "message:send", { channelId: "c1", content: "f-3" });
  await until(() => contents(alice).includes("f-3"), { what: "f-3" });
  // Each call in flight when the scripts vanished is sent again with its text (that reloads
  // the script): a few NOSCRIPT answers, then calls by digest work again.
  const afterFlush = (await noscript()) - noscriptBefore;
  assert.ok(afterFlush >= 1 && afterFlush <= 10, `NOSCRIPT answers after the flush: ${afterFlush}`);
  await emitAck(bob, "message:send", { channelId: "c1", content: "f-4" });
  await until(() => contents(alice).includes("f-4"), { what: "f-4" });
  assert.equal((await noscript()) - noscriptBefore, afterFlush, "reloaded: no more NOSCRIPT");
  await dropTransport(alice);
  await emitAck(bob, "message:send", { channelId: "c1", content: "f-gap" });
  assert.equal(await nextConnect(alice), true, "recovered");
  await until(() => contents(alice).includes("f-gap"), { what: "f-gap" });
  await sleep(200);
  assert.deepEqual(contents(alice), ["f-1", "f-2", "f-3", "f-4", "f-gap"]);
  alice.close();
  bob.close();
});

test("after the window: not recovered (new id), rooms work again", async () => {
  const alice = await recoverable(G.url, s.cookies.alice, { reconnectMs: WINDOW_MS + 1000 });
  const bob = await connect(G.url, s.cookies.bob, { transports: ["websocket"] });
  await emitAck(bob, "message:send", { channelId: "c1", content: "late-before" });
  await until(() => contents(alice).includes("late-before"), { what: "first message" });
  const sid = alice.id;
  await dropTransport(alice);
  await emitAck(bob, "message:send", { channelId: "c1", content: "late-gap" });
  assert.equal(await nextConnect(alice, 10000), false, "not recovered after the window");
  assert.notEqual(alice.id, sid);
  assert.ok(!contents(alice).includes("late-gap"), "nothing replayed");
  await emitAck(bob, "message:send", { channelId: "c1", content: "late-live" });
  await until(() => contents(alice).includes("late-live"), { what: "rooms work after a fresh connect" });
  alice.close();
  bob.close();
});

test("a session revoked during the gap does not come back", async () => {
  const carolCookie = await s.login("carol");
  const carol = await recoverable(G.url, carolCookie, { reconnectMs: 800 });
  const bob = await connect(G.url, s.cookies.bob, { transports: ["websocket"] });
  await emitAck(bob, "message:send", { channelId: "c3", content: "r-before" });
  await until(() => contents(carol).includes("r-before"), { what: "first message" });
  await dropTransport(carol);
  await revokeUserSessions(s.app.url, s.users.carol.id);
  await assert.rejects(nextConnect(carol), (err) => err.message === "Invalid session");
  carol.close();
  bob.close();
});

test("a claim with an unknown pid or a malformed offset gets a fresh session", async () => {
  for (const auth of [
    { pid: "nope", offset: "1-0" },
    { pid: "x", offset: "not-an-offset" },
    { pid: 42, offset: {} },
  ]) {
    const sock = await connect(G.url, s.cookies.bob, { transports: ["websocket"], auth });
    assert.equal(sock.recovered, false);
    assert.equal(typeof sock._pid, "string");
    sock.close();
  }
  // And the gateway still serves.
  const ok = await connect(G.url, s.cookies.bob, { transports: ["websocket"] });
  ok.close();
});

test("an unreadable entry in the log during the gap: not recovered (never recovered with a hole)", async () => {
  const admin = redisClient(valkey.url);
  const alice = await recoverable(G.url, s.cookies.alice, { reconnectMs: 600 });
  const bob = await connect(G.url, s.cookies.bob, { transports: ["websocket"] });
  await emitAck(bob, "message:send", { channelId: "c1", content: "u-before" });
  await until(() => contents(alice).includes("u-before"), { what: "first message" });
  await dropTransport(alice);
  await emitAck(bob, "message:send", { channelId: "c1", content: "u-gap-1" });
  // What a rogue or broken publisher could leave in the log: it may have been for alice.
  await admin.xadd("socket.io-csr-log#{/}#", "*", "m", "not msgpack");
  await emitAck(bob, "message:send", { channelId: "c1", content: "u-gap-2" });
  assert.equal(await nextConnect(alice), false, "not recovered");
  alice.close();
  bob.close();
});
