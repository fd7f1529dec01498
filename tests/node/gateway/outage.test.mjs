// The app failing (5xx, 429, hanging, slow beyond the timeout, stopped) on the session or memberships
// call: new connects get `Auth unavailable` (retryable), never `Invalid session`; connected sockets go on.
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { fault } from "../lib/app.mjs";
import { startStack, connect, connectError, waitFor, expectNothing, assertAlive } from "../lib/gateway.mjs";

let s;
let alice;
let bob;
before(async () => {
  s = await startStack({
    gatewayEnv: {
      GATEWAY_APP__SESSION_CACHE_TTL_MS: "0",
      GATEWAY_APP__TIMEOUT_MS: "300",
      // Long enough that periodic re-validation never runs during a fault.
      GATEWAY_APP__REVALIDATE_INTERVAL_MS: "600000",
    },
  });
  alice = await connect(s.url, s.cookies.alice);
  bob = await connect(s.url, s.cookies.bob);
});
afterEach(async () => {
  if (s && !s.appStopped) await fault(s.app.url, { mode: "ok" });
});
after(async () => {
  await s?.stop();
});

function assertAuthUnavailable(err) {
  assert.equal(err.message, "Auth unavailable", `message: ${err.message}, data: ${JSON.stringify(err.data)}`);
  assert.deepEqual(err.data, { code: "AUTH_UNAVAILABLE", retryable: true });
}

/** Typing between the two connected users still flows (needs no app call). */
async function typingStillFlows() {
  assert.ok(alice.connected, "alice was disconnected");
  assert.ok(bob.connected, "bob was disconnected");
  const got = waitFor(bob, "typing:update", 2000, (u) => u?.isTyping === true);
  alice.emit("typing:start", { channelId: "c1" });
  const u = await got;
  assert.equal(u.room, "channel:c1");
  assert.equal(u.userId, s.users.alice.id);
  const stopped = waitFor(bob, "typing:update", 2000, (u) => u?.isTyping === false);
  alice.emit("typing:stop", { channelId: "c1" });
  await stopped;
}

const cases = [
  { mode: "error500" },
  { mode: "error429" },
  { mode: "hang" },
  { mode: "slow", delayMs: 1500 },
];

for (const path of ["session", "memberships"]) {
  for (const c of cases) {
    test(`${c.mode} on ${path} → Auth unavailable; connected sockets keep working`, async () => {
      await fault(s.app.url, { ...c, paths: [path] });
      const t0 = Date.now();
      assertAuthUnavailable(await connectError(s.url, s.cookies.carol));
      const took = Date.now() - t0;
      assert.ok(took < 3000, `connect_error after ${took} ms (timeout is 300 ms)`);
      await typingStillFlows();
      // Recovery: nothing negative was cached.
      await fault(s.app.url, { mode: "ok" });
      const carol = await connect(s.url, s.cookies.carol);
      carol.close();
    });
  }
}

test("websocket-only client during error500 gets Auth unavailable too", async () => {
  await fault(s.app.url, { mode: "error500", paths: ["session"] });
  assertAuthUnavailable(await connectError(s.url, s.cookies.carol, { transports: ["websocket"] }));
});

test("slow but within the timeout still connects", async () => {
  await fault(s.app.url, { mode: "slow", delayMs: 100, paths: ["session", "memberships"] });
  const carol = await connect(s.url, s.cookies.carol);
  assert.ok(carol.connected);
  carol.close();
});

test("app stopped → Auth unavailable; connected sockets keep working", async () => {
  await s.app.stop();
  s.appStopped = true;
  assertAuthUnavailable(await connectError(s.url, s.cookies.carol));
  assertAuthUnavailable(await connectError(s.url, s.cookies.dave, { transports: ["websocket"] }));
  await typingStillFlows();
  // A client event that needs the app is refused, but does not disconnect.
  const errEvent = waitFor(alice, "error", 3000).catch(() => null);
  let ack;
  try {
    ack = await alice.timeout(3000).emitWithAck("message:send", { channelId: "c1", content: "app is down" });
  } catch (e) {
    ack = { timedOut: true };
  }
  assert.notEqual(ack?.ok, true, `ack: ${JSON.stringify(ack)}`);
  assert.ok(!ack?.timedOut, "message:send during the outage was never acknowledged");
  await errEvent;
  await expectNothing(alice, "disconnect", 300);
  assert.ok(alice.connected && bob.connected);
});

test("the gateway process is still running at the end of the file", () => {
  assertAlive(s.gw);
});
