// The gateway tells the app who the client is (X-Forwarded-For, which better-auth's rate limiter reads), and
// believes a client's own X-Forwarded-For only from proxies it trusts (security.trusted_proxies, loopback by
// default). Anyone else is the client, whatever header it sends. The app gets one address, never the header
// as received.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { forwardedFor } from "../lib/app.mjs";
import { startStack, connect } from "../lib/gateway.mjs";

const stacks = [];
after(async () => {
  for (const s of stacks) await s.stop();
});

async function stack(env) {
  // No cache: every connect asks the app, so what it was sent is fresh.
  const s = await startStack({ gatewayEnv: { GATEWAY_APP__SESSION_CACHE_TTL_MS: "0", ...env } });
  stacks.push(s);
  return s;
}

async function seenByApp(s, xff) {
  const sock = await connect(s.url, s.cookies.alice, {
    transports: ["websocket"],
    extraHeaders: xff === undefined ? {} : { "X-Forwarded-For": xff },
  });
  sock.close();
  return forwardedFor(s.app.url);
}

test("from a trusted proxy (loopback, the default): the rightmost address it did not write", async () => {
  const s = await stack({});
  // As nginx sends it: what the client claimed, then the address nginx saw.
  let seen = await seenByApp(s, "6.6.6.6, 198.51.100.7");
  assert.equal(seen.session, "198.51.100.7");
  assert.equal(seen.memberships, "198.51.100.7");
  seen = await seenByApp(s, undefined);
  assert.equal(seen.session, "127.0.0.1", "no header: the peer itself");
});

test("from a peer that is not trusted: its own address, whatever it claims", async () => {
  const s = await stack({ GATEWAY_SECURITY__TRUSTED_PROXIES: "10.0.0.0/8" });
  const seen = await seenByApp(s, "6.6.6.6");
  assert.equal(seen.session, "127.0.0.1");
  assert.equal(seen.memberships, "127.0.0.1");
});

test("an invalid trusted_proxies entry is a configuration error", async () => {
  await assert.rejects(stack({ GATEWAY_SECURITY__TRUSTED_PROXIES: "localhost" }), /trusted_proxies|exited/);
});
