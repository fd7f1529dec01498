// A client that stops reading (TCP level) while its room is flooded is disconnected as a slow
// consumer once its outbound queue (engine.outbound_queue) overflows, the disconnect is counted,
// the flooders are not affected, and the gateway's memory does not grow with the flood.
//
// Set SLOW_CONSUMER_QUEUE=1000000 to watch this test fail: with the queue bound out of reach
// the unread client keeps every broadcast frame and the gateway's memory grows with the flood.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startFixtureApp, signIn } from "../lib/app.mjs";
import { startGateway, connect, closeAllClients, emitAck, assertAlive, sleep } from "../lib/gateway.mjs";
import { rawSocketIo } from "../lib/rawws.mjs";
import { scrape, value, rssKiB, eventually } from "../lib/ops.mjs";

const QUEUE = process.env.SLOW_CONSUMER_QUEUE || "64";
const MESSAGES = 1500; // ~12 KB each (4000 three-byte characters): ~18 MB of broadcast frames
const FLOODERS = 3;
const WINDOW = 8; // message:send in flight per flooding socket

let app, gw;
before(async () => {
  app = await startFixtureApp();
  gw = await startGateway({
    appUrl: app.url,
    env: {
      GATEWAY_ENGINE__OUTBOUND_QUEUE: QUEUE,
      GATEWAY_LIMITS__EVENTS_PER_S: "100000",
      GATEWAY_LIMITS__EVENTS_BURST: "100000",
      GATEWAY_SERVER__DRAIN_WINDOW_MS: "200",
    },
  });
});
after(async () => {
  closeAllClients();
  await gw?.stop();
  await app?.stop();
});

test("a client that stops reading is disconnected as a slow consumer; memory stays bounded", async (t) => {
  const login = (name) => signIn(app.url, app.users[name].email, app.users[name].password);
  const alice = await login("alice");
  const bob = await login("bob");
  // alice (in channel c1) stops reading right after connecting.
  const stalled = await rawSocketIo(gw.url, { cookie: alice });
  stalled.pause();
  const flooders = await Promise.all(Array.from({ length: FLOODERS }, () => connect(gw.url, bob, { transports: ["websocket"] })));
  let received = 0;
  for (const f of flooders) f.on("message:new", () => received++);

  const pid = gw.proc.child.pid;
  const rssStart = rssKiB(pid);
  let rssPeak = rssStart;
  const sampler = setInterval(() => {
    try {
      rssPeak = Math.max(rssPeak, rssKiB(pid));
    } catch {}
  }, 50);

  const content = "€".repeat(4000);
  let sent = 0;
  let acked = 0;
  const t0 = Date.now();
  try {
    await Promise.all(
      flooders.flatMap((f) =>
        Array.from({ length: WINDOW }, async () => {
          while (sent < MESSAGES) {
            sent++;
            const ack = await emitAck(f, "message:send", { channelId: "c1", content });
            if (ack?.ok !== true) throw new Error(`message:send refused: ${JSON.stringify(ack).slice(0, 200)}`);
            acked++;
          }
        }),
      ),
    );
  } finally {
    clearInterval(sampler);
  }
  const floodMs = Date.now() - t0;
  await sleep(200);
  const rssEnd = rssKiB(pid);
  t.diagnostic(`${acked} messages in ${floodMs} ms; gateway VmRSS ${rssStart} KiB → peak ${rssPeak} KiB, end ${rssEnd} KiB (queue ${QUEUE})`);
  assertAlive(gw);

  const m = await scrape(gw.url);
  assert.equal(value(m, "socket_gateway_slow_consumer_disconnects_total"), 1, "the stalled client was not cut");
  assert.equal(value(m, "socket_gateway_disconnects_total", { reason: "slow consumer" }), 1);

  // The flooders read everything and stayed.
  assert.ok(flooders.every((f) => f.connected));
  // (A message:new is broadcast just after its ack: the last ones may still be on their way.)
  await eventually(() => received === MESSAGES * FLOODERS, 5000, `every flooder getting every message:new (${received})`);

  // The stalled client, once it reads again, finds its connection closed by the server.
  stalled.resume();
  await Promise.race([stalled.ended, sleep(5000).then(() => Promise.reject(new Error("the stalled connection is still open")))]);
  const got = stalled.messages.filter((x) => x.startsWith('42["message:new"')).length;
  t.diagnostic(`the stalled client had ${got} message:new buffered when it was cut`);
  assert.ok(got < MESSAGES / 2, `the stalled client got ${got} of ${MESSAGES} messages: it was not cut early`);

  // Memory: the flood is ~18 MB of frames; an unbounded queue would keep all of them.
  const growthMiB = (rssPeak - rssStart) / 1024;
  assert.ok(growthMiB < 12, `gateway VmRSS grew by ${growthMiB.toFixed(1)} MiB during the flood`);
});
