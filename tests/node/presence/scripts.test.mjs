// The presence Lua scripts (src/gateway/presence/scripts/), called directly on a real Valkey with the arguments the
// gateway passes: a user's status over the parts of several instances, workspace entries written in version order,
// heartbeats and claims. The other tests in this folder drive them through the gateways.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { startValkey, redisClient, closeAllRedis, flushAll } from "../lib/valkey.mjs";
import { sleep } from "../lib/gateway.mjs";

const script = (name) => readFileSync(new URL(`../../../src/gateway/presence/scripts/${name}.lua`, import.meta.url), "utf8");
const [SET_USER, SET_WORKSPACE, BEAT] = ["set_user", "set_workspace", "beat"].map(script);
const WEEK_MS = String(7 * 24 * 3600 * 1000);

let valkey, redis;
before(async () => {
  valkey = await startValkey();
  redis = redisClient(valkey.url);
});
after(async () => {
  closeAllRedis();
  await valkey?.stop();
});

/** set_user.lua's answer as {status, lastSeen, changed, before, after} (workspace lists sorted). */
async function setUser(user, member, value, seen = "") {
  const [status, lastSeen, changed, version, n, ...ws] = await redis.eval(SET_USER, 1, `P:user:${user}`, `p:${member}`, value, seen, WEEK_MS);
  assert.match(version, /^\d{16}$/, "version: Valkey's clock in µs");
  return { status, lastSeen: Number(lastSeen), changed: changed === "1", before: ws.slice(0, n).sort(), after: ws.slice(n).sort() };
}

test("set_user: a user's status over every instance's part, changes reported once, lastSeen and expiry", async () => {
  await flushAll(redis);
  let r = await setUser("u", "gw-a.1", "a\nw1");
  assert.deepEqual([r.status, r.changed, r.before, r.after], ["online", true, [], ["w1"]]);
  r = await setUser("u", "gw-b.1", "w\nw2");
  assert.deepEqual([r.status, r.changed, r.before, r.after], ["online", false, ["w1"], ["w1", "w2"]]);
  r = await setUser("u", "gw-a.1", "w\nw1");
  assert.deepEqual([r.status, r.changed], ["away", true]);
  r = await setUser("u", "gw-a.1", "", "1234");
  assert.deepEqual([r.status, r.changed, r.before, r.after], ["away", false, ["w1", "w2"], ["w2"]]);
  assert.equal(await redis.pttl("P:user:u"), -1, "persistent while a part is left");
  r = await setUser("u", "gw-b.1", "", "1234");
  assert.deepEqual([r.status, r.changed, r.lastSeen, r.after], ["offline", true, 1234, []]);
  assert.deepEqual(await redis.hgetall("P:user:u"), { status: "offline", lastSeen: "1234" });
  assert.ok((await redis.pttl("P:user:u")) > 0, "an offline user's key expires");
  r = await setUser("u", "gw-b.1", "", "9999");
  assert.deepEqual([r.status, r.changed, r.lastSeen], ["offline", false, 1234], "removing a part again changes nothing");
});

test("set_workspace: a write older than the entry's last one is refused; removals too", async () => {
  await flushAll(redis);
  const write = (version, status) => redis.eval(SET_WORKSPACE, 2, "P:ws:w1", "{P:ws:w1}:v", "u", String(version), status, WEEK_MS);
  assert.equal(await write(200, "away"), 1);
  assert.equal(await write(100, "online"), 0, "late and older: refused");
  assert.deepEqual(await redis.hgetall("P:ws:w1"), { u: "away" });
  assert.equal(await write(100, ""), 0);
  assert.equal(await write(300, ""), 1);
  assert.deepEqual(await redis.hgetall("P:ws:w1"), {});
  assert.equal(await write(250, "online"), 0, "a removal's version stays, so an older listing cannot come back");
});

test("beat: join, beat, a silent member claimed once by a live one (not by a stalled one), lost, leave", async () => {
  await flushAll(redis);
  const beat = (member, op, lifeMs, previous = "") => redis.eval(BEAT, 1, "P:members", member, op, String(lifeMs), previous, "16");
  assert.deepEqual(await beat("a.1", "join", 1000), ["ok"]);
  assert.deepEqual(await beat("b.1", "join", 5000), ["ok"]);
  assert.deepEqual(await beat("b.1", "beat", 5000), ["ok"], "a.1 is not due yet");
  const aBeat = Number((await redis.hget("P:members", "a.1")).split(" ")[1]);
  await sleep(1200);
  const claimed = await beat("b.1", "beat", 5000);
  assert.deepEqual(claimed, ["ok", "a.1", String(aBeat)], "claimed with its last heartbeat as lastSeen");
  assert.deepEqual(await beat("b.1", "beat", 5000), ["ok"], "claimed once");
  assert.equal((await redis.hget("P:members", "a.1")).split(" ")[2], "b.1", "the claimer is recorded");
  assert.deepEqual(await beat("a.1", "beat", 1000), ["lost"], "a claimed member cannot beat");
  assert.deepEqual(await beat("a.2", "join", 1000, "a.1"), ["ok", "a.1", String(aBeat)], "joining again claims the previous member");
  await sleep(1200);
  // a.2's claim on a.1 has lapsed, but a.2's own beat is late too (a stall): it judges nobody.
  assert.deepEqual(await beat("a.2", "beat", 5000), ["ok"]);
  const leftAt = Date.now();
  assert.deepEqual(await beat("b.1", "leave", 500), ["ok"]);
  await sleep(800);
  // On time now: the lapsed claim is taken over, and b.1 is dead once its grace has passed.
  const [state, ...claims] = await beat("a.2", "beat", 5000);
  assert.equal(state, "ok");
  const byMember = Object.fromEntries([0, 2].filter((i) => i < claims.length).map((i) => [claims[i], Number(claims[i + 1])]));
  assert.deepEqual(Object.keys(byMember).sort(), ["a.1", "b.1"]);
  assert.equal(byMember["a.1"], aBeat);
  assert.ok(Math.abs(byMember["b.1"] - leftAt) < 100, `b.1's lastSeen is when it left (${byMember["b.1"] - leftAt} ms)`);
});
