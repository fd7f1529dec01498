// The acceptance of the Next.js example, in a real browser (Debian's Chromium via playwright-core)
// through nginx (deploy/nginx.conf) against `next start` and two gateway instances relaying
// through Valkey. Three people sign up through the UI and chat: presence at page open, messages
// both ways once, typing for the other only, delete on both screens, a DM its two participants
// see and a third user does not; the gateway serving one of them is SIGKILLed while the other
// sends 3 messages (the page reconnects by itself and shows them once, in order); a removal from a
// channel through the app's own route takes the channel away at once; signing out closes the
// socket and the old cookie is refused. Screenshots of each step go to $TEST_OUTPUT_DIR
// (nextjs-*.png). Chromium, nginx or the build missing is a failure, not a skip.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startEdgeStack, AFFINITY_COOKIE } from "../e2e/stack.mjs";
import { launchBrowser, screenshot, pageErrors } from "../lib/browser.mjs";
import { connectError, sleep } from "../lib/gateway.mjs";
import { startNextApp } from "../lib/nextapp.mjs";

let s;
let browser;
const people = {};
before(async () => {
  s = await startEdgeStack({
    gateways: 2,
    startApp: ({ origin, valkey }) => startNextApp({ redisUrl: valkey.url, publicUrl: origin }),
  });
  browser = await launchBrowser();
});
after(async () => {
  for (const p of Object.values(people)) await p.context.close().catch(() => {});
  await browser?.close();
  await s?.stop();
});

const shot = (who, step) => screenshot(people[who].page, `nextjs-${step}-${who}`);

/** A browser context pinned to gateway `instance` by its affinity cookie; signs `name` up through the UI. */
async function signUpThroughUi(name, instance) {
  const context = await browser.newContext({ viewport: { width: 1180, height: 720 } });
  await context.addCookies([{ name: AFFINITY_COOKIE, value: await s.affinityFor(instance), domain: "127.0.0.1", path: "/socket.io/" }]);
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  const errors = pageErrors(page);
  await page.goto(`${s.url}/`);
  await page.waitForURL(/\/sign-in$/);
  await page.getByRole("link", { name: "Create an account" }).click();
  await page.waitForURL(/\/sign-up$/);
  const display = name[0].toUpperCase() + name.slice(1);
  await page.getByLabel("Name").fill(display);
  await page.getByLabel("Email").fill(`${name}@example.com`);
  await page.getByLabel("Password").fill(`password-${name}-123`);
  people[name] = { context, page, errors, display, instance };
  if (name === "alice") await shot(name, "01-sign-up");
  await page.getByRole("button", { name: "Create account" }).click();
  await page.waitForURL(/\/w\/acme\/c\/acme-general$/);
  await page.locator('#status[data-state="connected"]').waitFor();
  return people[name];
}

const messageTexts = (page) => page.locator("#messages li.message .content").allTextContents();
const presenceOf = (page, userId) => page.locator(`#presence li[data-user-id="${userId}"]`).getAttribute("data-status");
const userIdOf = async (name) => {
  const cookies = await people[name].context.cookies();
  const cookie = cookies.map((c) => `${c.name}=${c.value}`).join("; ");
  const r = await fetch(`${s.url}/api/auth/get-session`, { headers: { cookie } });
  return (await r.json()).user.id;
};

/** Waits until `page` shows `text` in exactly one message, and returns all message texts. */
async function seesOnce(page, text) {
  await page.locator("#messages li.message:not(.pending) .content", { hasText: text }).first().waitFor();
  await sleep(300); // a duplicate would arrive within this
  const texts = await messageTexts(page);
  assert.equal(texts.filter((t) => t === text).length, 1, `"${text}" shown ${texts.filter((t) => t === text).length} times: ${JSON.stringify(texts)}`);
  return texts;
}

test("sign-up through the UI, presence at page open, messages both ways once, typing for the other only, delete on both screens", async () => {
  const alice = await signUpThroughUi("alice", 0);
  const bob = await signUpThroughUi("bob", 1);
  people.alice.id = await userIdOf("alice");
  people.bob.id = await userIdOf("bob");

  // Bob's page opened while Alice was connected: only the snapshot can show her online.
  await bob.page.locator(`#presence li[data-user-id="${people.alice.id}"][data-status="online"]`).waitFor();
  // Alice's page opened before Bob existed: reopening it shows him, online, at once.
  await alice.page.reload();
  await alice.page.locator('#status[data-state="connected"]').waitFor();
  await alice.page.locator(`#presence li[data-user-id="${people.bob.id}"][data-status="online"]`).waitFor();
  await shot("alice", "02-presence-at-open");

  const hello = `Hello Bob, it's Alice ${Date.now()}`;
  await alice.page.locator("#message-input").fill(hello);
  await alice.page.locator("#message-input").press("Enter");
  await seesOnce(bob.page, hello);
  await seesOnce(alice.page, hello);
  const reply = `Hi Alice! Bob here ${Date.now()}`;
  await bob.page.locator("#message-input").fill(reply);
  await bob.page.getByRole("button", { name: "Send" }).click();
  await seesOnce(alice.page, reply);
  await seesOnce(bob.page, reply);
  await shot("bob", "03-messages");

  // Bob types: Alice sees it, Bob does not see himself typing.
  await bob.page.locator("#message-input").pressSequentially("I am typing some", { delay: 20 });
  await alice.page.locator("#typing", { hasText: "Bob is typing…" }).waitFor();
  assert.equal(await bob.page.locator("#typing").textContent(), "");
  await shot("alice", "04-typing");
  await bob.page.locator("#message-input").fill("");

  // Alice deletes her message: gone on both screens.
  const mine = alice.page.locator("#messages li.message.mine", { hasText: hello });
  await mine.hover();
  await mine.getByRole("button", { name: "Delete message" }).click();
  await alice.page.locator("#messages li.message .content", { hasText: hello }).waitFor({ state: "detached" });
  await bob.page.locator("#messages li.message .content", { hasText: hello }).waitFor({ state: "detached" });
  assert.deepEqual((await messageTexts(bob.page)).filter((t) => t === hello), []);
  await shot("bob", "05-deleted");
  assert.deepEqual(alice.errors, [], "alice's page reported errors");
  assert.deepEqual(bob.errors, [], "bob's page reported errors");
});

test("a DM is seen by its two participants, not by a third user", async () => {
  const { alice, bob } = people;
  const carol = await signUpThroughUi("carol", 1);
  await alice.page.locator(`#presence li[data-user-id="${people.bob.id}"] button`).click();
  await alice.page.waitForURL(/\/w\/acme\/d\//);
  const dmUrl = alice.page.url();
  await alice.page.locator('#status[data-state="connected"]').waitFor();
  const secret = `Just between us, Bob ${Date.now()}`;
  await alice.page.locator("#message-input").fill(secret);
  await alice.page.locator("#message-input").press("Enter");
  await seesOnce(alice.page, secret);
  // Bob's sidebar lists the new conversation at once (conversation:joined through the emitter).
  const entry = bob.page.locator("#conversations li", { hasText: "Alice" });
  await entry.waitFor();
  await entry.locator("a").click();
  await bob.page.waitForURL(dmUrl);
  await seesOnce(bob.page, secret);
  await shot("bob", "06-dm");
  // Carol: not in her sidebar, not on her screen, and the URL sends her back.
  assert.equal(await carol.page.locator("#conversations li").count(), 0);
  assert.equal(await carol.page.getByText(secret).count(), 0);
  await carol.page.goto(dmUrl);
  await carol.page.waitForURL(/\/w\/acme\/c\/acme-general$/);
  assert.equal(await carol.page.getByText(secret).count(), 0);
  await shot("carol", "07-dm-not-visible");
  await bob.page.getByRole("link", { name: "general" }).click();
  await alice.page.getByRole("link", { name: "general" }).click();
  await bob.page.waitForURL(/acme-general$/);
  await alice.page.waitForURL(/acme-general$/);
});

test("the gateway serving Alice is SIGKILLed while Bob sends 3 messages: her page reconnects by itself and shows them once, in order", async () => {
  const { alice, bob } = people;
  assert.equal(alice.instance, 0);
  assert.equal(bob.instance, 1);
  await alice.page.locator('#status[data-state="connected"]').waitFor();
  s.gws[0].proc.child.kill("SIGKILL");
  await alice.page.locator('#status[data-state="reconnecting"]').waitFor();
  await shot("alice", "08-reconnecting");
  const burst = [1, 2, 3].map((i) => `Failover message ${i} of 3, ${Date.now()}`);
  for (const text of burst) {
    await bob.page.locator("#message-input").fill(text);
    await bob.page.locator("#message-input").press("Enter");
    await bob.page.locator("#messages li.message:not(.pending) .content", { hasText: text }).waitFor();
  }
  await alice.page.locator('#status[data-state="connected"]').waitFor({ timeout: 20000 });
  await alice.page.locator("#messages li.message .content", { hasText: burst[2] }).waitFor({ timeout: 15000 });
  await sleep(500);
  const shown = (await messageTexts(alice.page)).filter((t) => t.startsWith("Failover message"));
  assert.deepEqual(shown, burst, "the 3 messages, once each, in order");
  await shot("alice", "09-after-failover");
});

test("removing Bob from a channel through the app takes it off his open page at once", async () => {
  const { alice, bob } = people;
  // Alice creates #launch and adds Bob through the members panel.
  await alice.page.getByRole("button", { name: "New channel" }).click();
  await alice.page.getByLabel("Channel name").fill("launch");
  await alice.page.getByLabel("Channel name").press("Enter");
  await alice.page.waitForURL(/\/w\/acme\/c\//);
  await alice.page.locator("#room-title", { hasText: "launch" }).waitFor();
  await alice.page.getByRole("button", { name: "Members" }).click();
  await alice.page.getByLabel("Add a member").selectOption({ label: "Bob" });
  await alice.page.getByRole("button", { name: "Add", exact: true }).click();
  await alice.page.locator('#channel-members li[data-user-id]', { hasText: "Bob" }).waitFor();
  // Bob's sidebar shows it live; he opens it and reads.
  const link = bob.page.getByRole("link", { name: "launch" });
  await link.click();
  await bob.page.locator("#room-title", { hasText: "launch" }).waitFor();
  const plan = `Launch plan: Friday ${Date.now()}`;
  await alice.page.locator("#message-input").fill(plan);
  await alice.page.locator("#message-input").press("Enter");
  await seesOnce(bob.page, plan);
  await shot("bob", "10-in-launch");

  await alice.page.getByRole("button", { name: "Remove Bob" }).click();
  await bob.page.locator("#room-gone", { hasText: "You were removed from #launch" }).waitFor();
  assert.equal(await bob.page.getByText(plan).count(), 0, "the channel's messages are gone from Bob's page");
  assert.equal(await bob.page.locator("#channels li", { hasText: "launch" }).count(), 0);
  await shot("bob", "11-removed");
  // Later messages do not reach him.
  const after = `After Bob left ${Date.now()}`;
  await alice.page.locator("#message-input").fill(after);
  await alice.page.locator("#message-input").press("Enter");
  await seesOnce(alice.page, after);
  await sleep(500);
  assert.equal(await bob.page.getByText(after).count(), 0);
});

test("signing out closes the socket (on every page of the session) and the old cookie is refused", async () => {
  const { bob } = people;
  const second = await bob.context.newPage();
  await second.goto(`${s.url}/w/acme/c/acme-general`);
  await second.locator('#status[data-state="connected"]').waitFor();
  const cookie = (await bob.context.cookies()).filter((c) => c.name.includes("better-auth")).map((c) => `${c.name}=${c.value}`).join("; ");
  await bob.page.getByRole("button", { name: "Sign out" }).click();
  await bob.page.waitForURL(/\/sign-in$/);
  // The other page's socket was closed by the app (disconnectSockets); its reconnect is refused
  // and it goes to the sign-in page by itself.
  await second.waitForURL(/\/sign-in$/, { timeout: 10000 });
  await shot("bob", "12-signed-out");
  const err = await connectError(s.url, cookie, { transports: ["websocket"], extraHeaders: { Origin: s.origin } });
  assert.equal(err.message, "Invalid session");
  // No script error on any page, through all of the above (failed network requests during the
  // failover are expected console noise, uncaught exceptions are not).
  for (const [name, p] of Object.entries(people)) assert.deepEqual(p.errors.filter((e) => e.startsWith("pageerror")), [], `${name}'s page threw`);
});
