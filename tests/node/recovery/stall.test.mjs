// A Valkey stall shorter than the relay's verdict on its link (a PING unanswered for ping interval + timeout,
// 8 s) loses nothing: what was sent during it arrives late, once, in order, with its offset. Two gateways,
// recovery on; Valkey frozen (SIGSTOP) for about 4 s while bob sends.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect, emitAck, closeAllClients, sleep } from "../lib/gateway.mjs";
import { startValkey, closeAllRedis, until, singleNodeFault } from "../lib/valkey.mjs";
import { startRelayStack } from "../relay/helpers.mjs";
import { recoveryEnv, recoverable, closeRecoverable } from "./helpers.mjs";

let valkey, s, A, B;

before(async () => {
  valkey = await startValkey();
  s = await startRelayStack({ valkeyUrl: valkey.url, gateways: 2, gatewayEnv: recoveryEnv(valkey.url) });
  [A, B] = s.gws;
});
after(async () => {
  valkey?.resume();
  closeRecoverable();
  closeAllClients();
  await s?.stop();
  closeAllRedis();
  await valkey?.stop();
});

const contents = (sock) => sock.got.filter((g) => g.event === "message:new").map((g) => g.args[0].content);

test("messages sent while Valkey is frozen for about 4 s arrive after it, once, in order", { skip: singleNodeFault }, async () => {
  const alice = await recoverable(B.url, s.cookies.alice);
  const bob = await connect(A.url, s.cookies.bob, { transports: ["websocket"] });
  await emitAck(bob, "message:send", { channelId: "c1", content: "stall-before" });
  await until(() => contents(alice).includes("stall-before"), { what: "first message" });
  valkey.pause();
  const sent = [];
  try {
    for (let i = 0; i < 12; i++) {
      // The app answers (it does not need Valkey); the broadcast waits for Valkey.
      await emitAck(bob, "message:send", { channelId: "c1", content: `stall-${i}` });
      sent.push(`stall-${i}`);
      await sleep(300);
    }
  } finally {
    valkey.resume();
  }
  await until(() => contents(alice).includes("stall-11"), { ms: 8000, what: "the messages sent during the stall" });
  await sleep(300);
  assert.deepEqual(contents(alice), ["stall-before", ...sent]);
  const offsets = alice.got.filter((g) => g.event === "message:new").map((g) => g.offset);
  assert.ok(offsets.every(Boolean), "each recorded, with its offset");
  alice.close();
  bob.close();
});
