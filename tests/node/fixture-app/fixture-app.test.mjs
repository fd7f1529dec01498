// Tests of the fixture app itself, all over real HTTP, so it is known-good before the gateway relies on it.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  startFixtureApp,
  appRequest,
  signIn,
  signInFull,
  signOut,
  getSession,
  memberships,
  authorize,
  forwardEvent,
  listMessages,
  fault,
  stats,
  resetStats,
  setMembership,
  revokeUserSessions,
} from "../lib/app.mjs";

const NAMES = ["alice", "bob", "carol", "dave"];

describe("fixture app", () => {
  let app;
  let url;
  let users;
  const cookies = {};

  before(async () => {
    app = await startFixtureApp();
    ({ url, users } = app);
    for (const n of NAMES) cookies[n] = await signIn(url, users[n].email, users[n].password);
  });
  after(async () => {
    await app?.stop();
  });

  test("test/users lists the four seeded users with better-auth ids", () => {
    assert.deepEqual(Object.keys(users).sort(), NAMES);
    for (const n of NAMES) {
      const u = users[n];
      assert.equal(u.email, `${n}@example.com`);
      assert.equal(u.password, `password-${n}-123`);
      assert.equal(u.name, n[0].toUpperCase() + n.slice(1));
      assert.match(u.id, /^\S{8,}$/);
    }
    assert.equal(new Set(NAMES.map((n) => users[n].id)).size, 4);
  });

  test("sign-in works for each user and yields a better-auth.session_token cookie", async () => {
    for (const n of NAMES) {
      const { cookie, user } = await signInFull(url, users[n].email, users[n].password);
      assert.match(cookie, /^better-auth\.session_token=[^;\s]+\.[^;\s]+$/);
      assert.equal(user.id, users[n].id);
    }
  });

  test("sign-in with a wrong password is refused (401)", async () => {
    await assert.rejects(signInFull(url, users.alice.email, "wrong-password-000"), (err) => err.status === 401);
  });

  test("get-session with the cookie and both flags returns the user", async () => {
    for (const n of NAMES) {
      const r = await getSession(url, cookies[n]);
      assert.equal(r.status, 200);
      assert.equal(r.body.user.id, users[n].id);
      assert.equal(r.body.session.userId, users[n].id);
      assert.equal(r.headers.get("set-cookie"), null, "read-only call must not set cookies");
    }
    const plain = await getSession(url, cookies.alice, { flags: false });
    assert.equal(plain.status, 200);
    assert.equal(plain.body.user.id, users.alice.id);
  });

  test("get-session: no cookie and tampered cookie → 200 null", async () => {
    const none = await getSession(url, undefined);
    assert.equal(none.status, 200);
    assert.equal(none.body, null);
    assert.equal(none.text, "null");

    // Flip one character of the token part (before the signature).
    const [name, value] = cookies.alice.split("=");
    const flipped = (value[0] === "A" ? "B" : "A") + value.slice(1);
    const tampered = await getSession(url, `${name}=${flipped}`);
    assert.equal(tampered.status, 200);
    assert.equal(tampered.body, null);

    // Signature removed.
    const unsigned = await getSession(url, `${name}=${value.split(".")[0]}`);
    assert.equal(unsigned.body, null);

    // Garbage.
    const garbage = await getSession(url, "better-auth.session_token=garbage; other=1");
    assert.equal(garbage.body, null);
  });

  test("memberships per user match the seed", async () => {
    const id = (n) => users[n].id;
    const expected = {
      alice: {
        workspaces: ["w1", "w2"],
        channels: [
          { id: "c1", workspaceId: "w1" },
          { id: "c2", workspaceId: "w1" },
          { id: "c4", workspaceId: "w2" },
        ],
        conversations: [
          { id: "d1", workspaceId: "w1" },
          { id: "d2", workspaceId: "w2" },
        ],
      },
      bob: {
        workspaces: ["w1"],
        channels: [
          { id: "c1", workspaceId: "w1" },
          { id: "c3", workspaceId: "w1" },
        ],
        conversations: [{ id: "d1", workspaceId: "w1" }],
      },
      carol: {
        workspaces: ["w1"],
        channels: [
          { id: "c2", workspaceId: "w1" },
          { id: "c3", workspaceId: "w1" },
        ],
        conversations: [],
      },
      dave: {
        workspaces: ["w2"],
        channels: [{ id: "c4", workspaceId: "w2" }],
        conversations: [{ id: "d2", workspaceId: "w2" }],
      },
    };
    for (const n of NAMES) {
      const r = await memberships(url, cookies[n]);
      assert.equal(r.status, 200);
      assert.deepEqual(r.body, { userId: id(n), ...expected[n] });
    }
  });

  test("memberships without or with a bad session → 401 unauthenticated", async () => {
    for (const cookie of [undefined, "better-auth.session_token=nope.nope"]) {
      const r = await memberships(url, cookie);
      assert.equal(r.status, 401);
      assert.deepEqual(r.body, { error: "unauthenticated" });
    }
  });

  test("authorize: allowed, denied, bad room, unauthenticated", async () => {
    const alice = users.alice.id;
    const ok = async (room) => {
      const r = await authorize(url, cookies.alice, room);
      assert.equal(r.status, 200, room);
      assert.deepEqual(r.body, { userId: alice, room, allowed: true }, room);
    };
    const no = async (room, reason) => {
      const r = await authorize(url, cookies.alice, room);
      assert.equal(r.status, 200, room);
      assert.deepEqual(r.body, { userId: alice, room, allowed: false, reason }, room);
    };
    await ok(`user:${alice}`);
    await ok("workspace:w1");
    await ok("workspace:w2");
    await ok("channel:c1");
    await ok("channel:c4");
    await ok("dm:d1");
    await no(`user:${users.bob.id}`, "not_self");
    await no("channel:c3", "not_member");
    await no("channel:nope", "not_member");
    await no("dm:nope", "not_member");

    const carolW2 = await authorize(url, cookies.carol, "workspace:w2");
    assert.equal(carolW2.body.allowed, false);
    const carolD1 = await authorize(url, cookies.carol, "dm:d1");
    assert.equal(carolD1.body.allowed, false);

    for (const room of ["bogus", "channel:", "conversation:d1", ":c1", "room:c1"]) {
      const r = await authorize(url, cookies.alice, room);
      assert.equal(r.status, 400, room);
      assert.deepEqual(r.body, { error: "bad_room", room });
    }
    const missing = await authorize(url, cookies.alice, undefined);
    assert.equal(missing.status, 400);
    assert.equal(missing.body.error, "bad_room");

    const anon = await authorize(url, undefined, "channel:c1");
    assert.equal(anon.status, 401);
    assert.deepEqual(anon.body, { error: "unauthenticated" });
  });

  test("message:send to a channel is stored, acked, emitted and listed", async () => {
    const r = await forwardEvent(url, cookies.alice, {
      event: "message:send",
      args: [{ channelId: "c1", content: "hello bob", clientId: "cl-1" }],
      userId: users.alice.id,
    });
    assert.equal(r.status, 200);
    const m = r.body.ack.message;
    assert.equal(r.body.ack.ok, true);
    assert.equal(m.channelId, "c1");
    assert.equal("conversationId" in m, false);
    assert.deepEqual(m.author, { id: users.alice.id, name: "Alice" });
    assert.equal(m.content, "hello bob");
    assert.equal(m.clientId, "cl-1");
    assert.ok(!Number.isNaN(Date.parse(m.createdAt)));
    assert.match(m.id, /\S+/);
    assert.deepEqual(r.body.emit, [{ room: "channel:c1", event: "message:new", data: m }]);

    const listed = await listMessages(url, cookies.bob, { channelId: "c1" });
    assert.equal(listed.status, 200);
    assert.deepEqual(listed.body.messages.at(-1), m);

    const forbidden = await listMessages(url, cookies.carol, { channelId: "c1" });
    assert.equal(forbidden.status, 403);
    const anon = await listMessages(url, undefined, { channelId: "c1" });
    assert.equal(anon.status, 401);
  });

  test("message:send to a conversation, without clientId", async () => {
    const r = await forwardEvent(url, cookies.dave, {
      event: "message:send",
      args: [{ conversationId: "d2", content: "hi alice" }],
      userId: users.dave.id,
    });
    assert.equal(r.status, 200);
    const m = r.body.ack.message;
    assert.equal(m.conversationId, "d2");
    assert.equal("channelId" in m, false);
    assert.equal("clientId" in m, false);
    assert.deepEqual(r.body.emit, [{ room: "dm:d2", event: "message:new", data: m }]);
    const listed = await listMessages(url, cookies.alice, { conversationId: "d2" });
    assert.deepEqual(listed.body.messages.at(-1), m);
  });

  test("message:send refused: non-member, bad payloads, wrong user, no session, unknown event", async () => {
    const send = (who, payload, extra = {}) =>
      forwardEvent(url, cookies[who], { event: "message:send", args: [payload], userId: users[who].id, ...extra });

    let r = await send("carol", { channelId: "c1", content: "let me in" });
    assert.equal(r.status, 403);
    assert.deepEqual(r.body, { error: "not_member" });
    r = await send("carol", { conversationId: "d1", content: "let me in" });
    assert.equal(r.status, 403);
    r = await send("alice", { channelId: "no-such-channel", content: "x" });
    assert.equal(r.status, 403);

    const bad = [
      { channelId: "c1", conversationId: "d1", content: "both" },
      { content: "none" },
      { channelId: "c1", content: "" },
      { channelId: "c1", content: "   " },
      { channelId: "c1", content: 42 },
      { channelId: "c1" },
      { channelId: "c1", content: "x".repeat(4001) },
      { channelId: 7, content: "x" },
      { channelId: "c1", content: "x", clientId: 5 },
      "not an object",
    ];
    for (const p of bad) {
      r = await send("alice", p);
      assert.equal(r.status, 400, JSON.stringify(p).slice(0, 80));
      assert.equal(r.body.error, "bad_payload");
      assert.equal(typeof r.body.detail, "string");
    }
    r = await send("alice", { channelId: "c1", content: "x".repeat(4000) });
    assert.equal(r.status, 200, "4000 characters is the limit, inclusive");

    // Session user differs from body.userId.
    r = await send("alice", { channelId: "c1", content: "spoof" }, { userId: users.bob.id });
    assert.equal(r.status, 401);
    // No session at all.
    r = await forwardEvent(url, undefined, {
      event: "message:send",
      args: [{ channelId: "c1", content: "anon" }],
      userId: users.alice.id,
    });
    assert.equal(r.status, 401);
    assert.deepEqual(r.body, { error: "unauthenticated" });
    // Unknown event.
    r = await forwardEvent(url, cookies.alice, { event: "message:edit", args: [{}], userId: users.alice.id });
    assert.equal(r.status, 404);
    assert.equal(r.body.error, "unknown_event");

    // Nothing refused was stored.
    const listed = await listMessages(url, cookies.alice, { channelId: "c1" });
    assert.ok(!listed.body.messages.some((m) => ["let me in", "spoof", "anon", "both"].includes(m.content)));
  });

  test("message:delete: non-author refused, author deletes, then not found", async () => {
    const sent = await forwardEvent(url, cookies.bob, {
      event: "message:send",
      args: [{ channelId: "c1", content: "to be deleted" }],
      userId: users.bob.id,
    });
    const id = sent.body.ack.message.id;
    const del = (who, messageId = id) =>
      forwardEvent(url, cookies[who], { event: "message:delete", args: [{ messageId }], userId: users[who].id });

    let r = await del("alice");
    assert.equal(r.status, 403);
    assert.equal(r.body.error, "not_author");
    r = await del("carol");
    assert.equal(r.status, 403);

    r = await del("bob");
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, {
      ack: { ok: true },
      emit: [{ room: "channel:c1", event: "message:deleted", data: { messageId: id, channelId: "c1" } }],
    });
    const listed = await listMessages(url, cookies.bob, { channelId: "c1" });
    assert.ok(!listed.body.messages.some((m) => m.id === id));

    r = await del("bob");
    assert.equal(r.status, 404);
    assert.deepEqual(r.body, { error: "not_found" });
    r = await del("bob", "no-such-message");
    assert.equal(r.status, 404);
    r = await forwardEvent(url, cookies.bob, { event: "message:delete", args: [{}], userId: users.bob.id });
    assert.equal(r.status, 400);

    // A dm message: deleted event names the conversation.
    const dm = await forwardEvent(url, cookies.alice, {
      event: "message:send",
      args: [{ conversationId: "d1", content: "dm" }],
      userId: users.alice.id,
    });
    r = await del("alice", dm.body.ack.message.id);
    assert.deepEqual(r.body.emit, [
      { room: "dm:d1", event: "message:deleted", data: { messageId: dm.body.ack.message.id, conversationId: "d1" } },
    ]);
  });

  test("test/memberships add and remove change memberships and authorize", async () => {
    const carol = users.carol.id;
    let r = await setMembership(url, { op: "add", kind: "channel", id: "c1", userId: carol });
    assert.deepEqual(r, { ok: true, changed: true, created: false });
    assert.equal((await authorize(url, cookies.carol, "channel:c1")).body.allowed, true);
    assert.ok((await memberships(url, cookies.carol)).body.channels.some((c) => c.id === "c1"));

    r = await setMembership(url, { op: "remove", kind: "channel", id: "c1", userId: carol });
    assert.equal(r.changed, true);
    assert.equal((await authorize(url, cookies.carol, "channel:c1")).body.allowed, false);
    assert.ok(!(await memberships(url, cookies.carol)).body.channels.some((c) => c.id === "c1"));

    r = await setMembership(url, { op: "add", kind: "workspace", id: "w2", userId: carol });
    assert.deepEqual((await memberships(url, cookies.carol)).body.workspaces, ["w1", "w2"]);
    await setMembership(url, { op: "remove", kind: "workspace", id: "w2", userId: carol });
    assert.deepEqual((await memberships(url, cookies.carol)).body.workspaces, ["w1"]);

    r = await setMembership(url, { op: "add", kind: "conversation", id: "d1", userId: carol });
    assert.equal((await authorize(url, cookies.carol, "dm:d1")).body.allowed, true);
    await setMembership(url, { op: "remove", kind: "conversation", id: "d1", userId: carol });
    assert.equal((await authorize(url, cookies.carol, "dm:d1")).body.allowed, false);

    // A new channel, created by adding a member with workspaceId.
    r = await setMembership(url, { op: "add", kind: "channel", id: "c-new", workspaceId: "w1", userId: carol });
    assert.deepEqual(r, { ok: true, changed: true, created: true });
    assert.ok((await memberships(url, cookies.carol)).body.channels.some((c) => c.id === "c-new" && c.workspaceId === "w1"));
    await setMembership(url, { op: "remove", kind: "channel", id: "c-new", userId: carol });

    // Errors.
    await assert.rejects(setMembership(url, { op: "add", kind: "channel", id: "zzz", userId: carol }), /404/);
    await assert.rejects(setMembership(url, { op: "add", kind: "channel", id: "c1", userId: "nobody" }), /404/);
    await assert.rejects(setMembership(url, { op: "frob", kind: "channel", id: "c1", userId: carol }), /400/);
  });

  test("revoke-user-sessions: get-session → null, memberships → 401; other users unaffected", async () => {
    const c1 = await signIn(url, users.dave.email, users.dave.password);
    const c2 = await signIn(url, users.dave.email, users.dave.password);
    assert.equal((await getSession(url, c1)).body.user.id, users.dave.id);
    const r = await revokeUserSessions(url, users.dave.id);
    assert.equal(r.ok, true);
    assert.ok(r.revoked >= 3, `dave had at least 3 sessions, revoked ${r.revoked}`);
    for (const c of [c1, c2, cookies.dave]) {
      const s = await getSession(url, c);
      assert.equal(s.status, 200);
      assert.equal(s.body, null);
      assert.equal((await memberships(url, c)).status, 401);
    }
    assert.equal((await getSession(url, cookies.alice)).body.user.id, users.alice.id);
    cookies.dave = await signIn(url, users.dave.email, users.dave.password);
    assert.equal((await getSession(url, cookies.dave)).body.user.id, users.dave.id);
  });

  test("sign-out ends the session; POST without Origin is refused by better-auth", async () => {
    const c = await signIn(url, users.bob.email, users.bob.password);
    const noOrigin = await appRequest(url, "/api/auth/sign-out", { method: "POST", body: {}, cookie: c, origin: null });
    assert.equal(noOrigin.status, 403);
    const foreign = await appRequest(url, "/api/auth/sign-out", {
      method: "POST",
      body: {},
      cookie: c,
      origin: "http://evil.example",
    });
    assert.equal(foreign.status, 403);
    assert.equal((await getSession(url, c)).body.user.id, users.bob.id);
    await signOut(url, c);
    assert.equal((await getSession(url, c)).body, null);
    assert.equal((await getSession(url, cookies.bob)).body.user.id, users.bob.id, "other sessions survive");
  });

  test("stats count calls per endpoint (get-session by path only) and reset", async () => {
    await resetStats(url);
    assert.deepEqual(await stats(url), { session: 0, memberships: 0, authorize: 0, events: 0 });
    await getSession(url, cookies.alice);
    await getSession(url, undefined);
    await memberships(url, cookies.alice);
    await authorize(url, cookies.alice, "channel:c1");
    await authorize(url, cookies.alice, "bogus");
    await authorize(url, cookies.alice, "channel:c3");
    await forwardEvent(url, cookies.alice, { event: "nope", args: [], userId: users.alice.id });
    await listMessages(url, cookies.alice, { channelId: "c1" });
    assert.deepEqual(await stats(url), { session: 2, memberships: 1, authorize: 3, events: 1 });
    await resetStats(url);
    assert.deepEqual(await stats(url), { session: 0, memberships: 0, authorize: 0, events: 0 });
  });

  describe("faults", () => {
    after(async () => {
      await fault(url, { mode: "ok" });
    });

    test("error500 on selected paths only", async () => {
      await fault(url, { mode: "error500", paths: ["session"] });
      const s = await getSession(url, cookies.alice);
      assert.equal(s.status, 500);
      const m = await memberships(url, cookies.alice);
      assert.equal(m.status, 200, "memberships not selected");
      await fault(url, { mode: "error500", paths: ["memberships", "authorize", "events"] });
      assert.equal((await memberships(url, cookies.alice)).status, 500);
      assert.equal((await authorize(url, cookies.alice, "channel:c1")).status, 500);
      const before = (await listMessages(url, cookies.alice, { channelId: "c1" })).body.messages.length;
      const e = await forwardEvent(url, cookies.alice, {
        event: "message:send",
        args: [{ channelId: "c1", content: "during fault" }],
        userId: users.alice.id,
      });
      assert.equal(e.status, 500);
      const afterCount = (await listMessages(url, cookies.alice, { channelId: "c1" })).body.messages.length;
      assert.equal(afterCount, before, "a faulted event has no side effect");
      assert.equal((await getSession(url, cookies.alice)).status, 200, "session not selected");
      await fault(url, { mode: "ok" });
      assert.equal((await memberships(url, cookies.alice)).status, 200);
    });

    test("error429 looks like better-auth's rate limiter, on all paths by default", async () => {
      await fault(url, { mode: "error429" });
      const s = await getSession(url, cookies.alice);
      assert.equal(s.status, 429);
      assert.equal(s.headers.get("x-retry-after"), "10");
      assert.equal((await memberships(url, cookies.alice)).status, 429);
      assert.equal((await authorize(url, cookies.alice, "channel:c1")).status, 429);
      assert.equal(
        (await forwardEvent(url, cookies.alice, { event: "message:send", args: [], userId: users.alice.id })).status,
        429,
      );
      await fault(url, { mode: "ok" });
      assert.equal((await getSession(url, cookies.alice)).status, 200);
    });

    test("slow delays then answers normally", async () => {
      await fault(url, { mode: "slow", delayMs: 400, paths: ["session", "memberships"] });
      let t = Date.now();
      const s = await getSession(url, cookies.alice);
      assert.ok(Date.now() - t >= 380, `took ${Date.now() - t} ms`);
      assert.equal(s.body.user.id, users.alice.id);
      t = Date.now();
      const m = await memberships(url, cookies.alice);
      assert.ok(Date.now() - t >= 380);
      assert.equal(m.status, 200);
      t = Date.now();
      await authorize(url, cookies.alice, "channel:c1");
      assert.ok(Date.now() - t < 380, "authorize not selected");
      await fault(url, { mode: "ok" });
    });

    test("hang never answers: the client times out; other paths still work; ok resets", async () => {
      await fault(url, { mode: "hang", paths: ["session"] });
      const t = Date.now();
      await assert.rejects(getSession(url, cookies.alice, { timeoutMs: 300 }), (err) => err.name === "TimeoutError");
      assert.ok(Date.now() - t >= 280);
      assert.equal((await memberships(url, cookies.alice)).status, 200);
      assert.deepEqual(await fault(url, { mode: "ok" }), {
        ok: true,
        fault: { mode: "ok", delayMs: 0, paths: ["session", "memberships", "authorize", "events"] },
      });
      assert.equal((await getSession(url, cookies.alice, { timeoutMs: 2000 })).status, 200);
    });

    test("bad fault requests are refused", async () => {
      await assert.rejects(fault(url, { mode: "explode" }), /400/);
      await assert.rejects(fault(url, { mode: "slow", paths: ["nope"] }), /400/);
    });
  });
});

describe("fixture app with COOKIE_CACHE=1 and TRUSTED_ORIGINS", () => {
  let app;
  before(async () => {
    app = await startFixtureApp({ env: { COOKIE_CACHE: "1", TRUSTED_ORIGINS: "http://localhost:3000, http://gw.test:8080" } });
  });
  after(async () => {
    await app?.stop();
  });

  test("a revoked session keeps passing from the cookie cache unless disableCookieCache", async () => {
    const { url, users } = app;
    const cookie = await signIn(url, users.alice.email, users.alice.password);
    assert.match(cookie, /better-auth\.session_token=/);
    assert.match(cookie, /better-auth\.session_data=/, "cookie cache cookie is set at sign-in");
    await revokeUserSessions(url, users.alice.id);
    const cached = await getSession(url, cookie, { flags: false });
    assert.equal(cached.body?.user?.id, users.alice.id, "stale session served from the cache");
    const fresh = await getSession(url, cookie);
    assert.equal(fresh.body, null);
    assert.equal((await memberships(url, cookie)).status, 401, "contract routes bypass the cache");
  });

  test("TRUSTED_ORIGINS are accepted on POSTs, others refused", async () => {
    const { url, users } = app;
    const body = { email: users.bob.email, password: users.bob.password };
    for (const origin of ["http://localhost:3000", "http://gw.test:8080", url]) {
      const r = await appRequest(url, "/api/auth/sign-in/email", { method: "POST", body, origin });
      assert.equal(r.status, 200, origin);
    }
    const r = await appRequest(url, "/api/auth/sign-in/email", { method: "POST", body, origin: "http://evil.example" });
    assert.equal(r.status, 403);
  });
});

describe("fixture app restarted on the same DB_FILE", () => {
  test("seed is idempotent: same user ids, memberships and messages kept", async () => {
    const { mkdtempSync, rmSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const dir = mkdtempSync(join(tmpdir(), "fixture-app-reuse-"));
    const DB_FILE = join(dir, "app.sqlite");
    try {
      const a = await startFixtureApp({ env: { DB_FILE } });
      let ids;
      try {
        ids = a.users;
        const cookie = await signIn(a.url, ids.alice.email, ids.alice.password);
        const r = await forwardEvent(a.url, cookie, {
          event: "message:send",
          args: [{ channelId: "c1", content: "persisted" }],
          userId: ids.alice.id,
        });
        assert.equal(r.status, 200);
      } finally {
        await a.stop();
      }
      const b = await startFixtureApp({ env: { DB_FILE } });
      try {
        assert.deepEqual(b.users, ids);
        const cookie = await signIn(b.url, ids.alice.email, ids.alice.password);
        const m = await memberships(b.url, cookie);
        assert.equal(m.body.channels.length, 3);
        const listed = await listMessages(b.url, cookie, { channelId: "c1" });
        assert.deepEqual(
          listed.body.messages.map((x) => x.content),
          ["persisted"],
        );
      } finally {
        await b.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
