// A real browser (Debian's Chromium via playwright-core) on the chat page, through nginx in front of
// two gateway instances relaying through Valkey: two users in two browser contexts sign in with
// better-auth, one types and sends, the other sees the typing indicator and the message; each
// user's page runs on a different instance; a presence:update emitted by "the app" with
// @socket.io/redis-emitter shows on the page. Screenshots go to $TEST_OUTPUT_DIR.
// Chromium or nginx missing is a failure (WITH_BROWSER=1 WITH_NGINX=1 bash scripts/setup.sh), not a skip.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startEdgeStack, AFFINITY_COOKIE } from "./stack.mjs";
import { launchBrowser, screenshot, pageErrors } from "../lib/browser.mjs";
import { assertAlive, sleep } from "../lib/gateway.mjs";
import { Emitter } from "@socket.io/redis-emitter";
import { redisClient, closeAllRedis } from "../lib/valkey.mjs";

let s;
let browser;
before(async () => {
  s = await startEdgeStack({ gateways: 2 });
  browser = await launchBrowser();
});
after(async () => {
  closeAllRedis();
  await browser?.close();
  await s?.stop();
});

/** A fresh browser context pinned to an instance by its affinity cookie, signed in as `name` on the chat page. */
async function openChat(name, affinity) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 620 } });
  await context.addCookies([{ name: AFFINITY_COOKIE, value: affinity, domain: "127.0.0.1", path: "/socket.io/" }]);
  const page = await context.newPage();
  page.setDefaultTimeout(8000);
  const errors = pageErrors(page);
  await page.goto(s.url);
  await page.locator("#signin-form").waitFor({ state: "visible" });
  await page.fill("#email", s.users[name].email);
  await page.fill("#password", s.users[name].password);
  await page.click("#signin-btn");
  await page.locator('#status[data-state="connected"]').waitFor();
  return { context, page, errors };
}

const typingText = (page) => page.locator("#typing").textContent();

test("two users in two browsers on two instances: sign-in, typing indicator, messages both ways", async () => {
  const alice = await openChat("alice", await s.affinityFor(0));
  const bob = await openChat("bob", await s.affinityFor(1));
  try {
    for (const u of [alice, bob]) {
      await u.page.click('#channels li[data-room="channel:c1"]');
      await u.page.locator('#channels li.active[data-room="channel:c1"]').waitFor();
      // The browser's polling session was upgraded to WebSocket through nginx.
      await u.page.locator('#status[data-state="connected"][data-transport="websocket"]').waitFor();
    }
    assert.equal(await alice.page.locator("#me").textContent(), s.users.alice.name);

    // Alice types: Bob sees the indicator.
    const text = `Hello Bob, from Alice at ${new Date().toISOString()}`;
    await alice.page.locator("#message-input").pressSequentially(text.slice(0, 12), { delay: 30 });
    await bob.page.locator("#typing", { hasText: "Alice is typing" }).waitFor();
    await screenshot(bob.page, "browser-bob-sees-alice-typing");

    // Alice sends: Bob sees the message, and the indicator goes away.
    await alice.page.locator("#message-input").pressSequentially(text.slice(12), { delay: 5 });
    await alice.page.keyboard.press("Enter");
    await bob.page.locator("#messages li .content", { hasText: text }).waitFor();
    await alice.page.locator("#messages li.mine .content", { hasText: text }).waitFor();
    for (let i = 0; i < 40 && (await typingText(bob.page)) !== ""; i++) await sleep(50);
    assert.equal(await typingText(bob.page), "", "the typing indicator stayed after the message was sent");

    // Bob answers with the Send button.
    const reply = `Hi Alice, Bob here ${Date.now()}`;
    await bob.page.fill("#message-input", reply);
    await bob.page.click("#send");
    await alice.page.locator("#messages li .content", { hasText: reply }).waitFor();
    const author = await alice.page.locator("#messages li", { hasText: reply }).locator(".author").textContent();
    assert.equal(author, s.users.bob.name);

    // The app emits through Valkey (@socket.io/redis-emitter): Bob's page renders the presence.
    const emitter = new Emitter(redisClient(s.valkey.url));
    emitter.to("workspace:w1").emit("presence:update", { userId: s.users.alice.id, status: "away", lastSeen: Date.now() });
    await bob.page.locator(`#presence li[data-user-id="${s.users.alice.id}"][data-status="away"]`, { hasText: "Alice (away)" }).waitFor();

    await screenshot(bob.page, "browser-bob");
    await screenshot(alice.page, "browser-alice");
    assert.deepEqual(alice.errors, [], "alice's page reported errors");
    assert.deepEqual(bob.errors, [], "bob's page reported errors");
  } finally {
    await alice.context.close();
    await bob.context.close();
  }
  // nginx logs each WebSocket when it ends: both instances served one (alice's on 0, bob's on 1).
  const served = (gw) => new RegExp(`transport=websocket&sid=\\S+ HTTP/1.1" 101 .* upstream=127\\.0\\.0\\.1:${gw.port} `);
  for (let i = 0; i < 40 && !s.gws.every((gw) => served(gw).test(s.nginx.accessLog())); i++) await sleep(50);
  for (const gw of s.gws) {
    assert.match(s.nginx.accessLog(), served(gw), `no WebSocket through nginx to the instance on port ${gw.port}`);
    assertAlive(gw);
  }
});
