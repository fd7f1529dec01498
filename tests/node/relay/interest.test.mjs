// Per-room interest: each gateway SUBSCRIBEs `socket.io#/#<room>#` only while it has a local member in the room
// (one subscription per room however many local sockets are in it), plus `socket.io#/#` and the request
// channel. The rooms named by its own sockets' ids have no channel subscription each: every id a gateway makes
// starts with its 4-character tag, and one pattern per gateway, `socket.io#/#<tag>????????????????#`, follows
// them all. Checked with PUBSUB CHANNELS / NUMSUB / NUMPAT and CLIENT LIST on Valkey as sockets connect, join,
// leave and disconnect on two gateways.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect, emitAck, waitDisconnect, closeAllClients } from "../lib/gateway.mjs";
import {
  startValkey,
  redisClient,
  closeAllRedis,
  pubsubChannels,
  pubsubNumsub,
  pubsubNumpat,
  clientList,
  until,
} from "../lib/valkey.mjs";
import { startRelayStack } from "./helpers.mjs";

const PREFIX = "socket.io#/#";
let valkey, s, A, B, admin;
/** The model: every open gateway socket → {gw, user, sock, rooms (without its sid)}. */
const open = new Set();

const ROOMS = {
  alice: ["workspace:w1", "workspace:w2", "channel:c1", "channel:c2", "channel:c4", "dm:d1", "dm:d2"],
  bob: ["workspace:w1", "channel:c1", "channel:c3", "dm:d1"],
  carol: ["workspace:w1", "channel:c2", "channel:c3"],
  dave: ["workspace:w2", "channel:c4", "dm:d2"],
};

before(async () => {
  valkey = await startValkey();
  s = await startRelayStack({ valkeyUrl: valkey.url, gateways: 2 });
  [A, B] = s.gws;
  admin = redisClient(valkey.url);
});
after(async () => {
  await s?.stop();
  closeAllRedis();
  await valkey?.stop();
});

async function open1(gw, user, opts) {
  const sock = await connect(gw.url, s.cookies[user], opts);
  const rooms = new Set([`user:${s.users[user].id}`, ...ROOMS[user]]);
  const entry = { gw, user, sock, rooms };
  open.add(entry);
  return entry;
}

async function close1(entry) {
  const gone = waitDisconnect(entry.sock, 3000);
  entry.sock.close();
  await gone.catch(() => {});
  open.delete(entry);
}

/** Expected {room: number of gateways with a local member}, from the model (socket-id rooms left out). */
function expected() {
  const perGw = new Map();
  for (const e of open) {
    if (!perGw.has(e.gw)) perGw.set(e.gw, new Set());
    for (const r of e.rooms) perGw.get(e.gw).add(r);
  }
  const out = {};
  for (const rooms of perGw.values()) for (const r of rooms) out[r] = (out[r] ?? 0) + 1;
  return out;
}

/** Valkey's view: {room: NUMSUB} for every subscribed `socket.io#/#<room>#` channel ("" = the bare channel). */
async function observed() {
  const channels = await pubsubChannels(admin, `${PREFIX}*`);
  const numsub = await pubsubNumsub(admin, channels);
  const out = {};
  for (const ch of channels) {
    const room = ch === PREFIX ? "" : ch.slice(PREFIX.length, -1);
    out[room] = numsub[ch];
  }
  return out;
}

/**
 * Waits until Valkey's subscriptions match the model exactly: every room with NUMSUB = number of gateways that
 * have a local member in it, the bare channel on both gateways, and nothing else: no socket's id room (Node's
 * `io.to(socketId)` publishes on that room's channel, which the gateway's pattern matches). Resolves to the
 * observed map.
 */
async function assertInterest(label) {
  const sids = new Set([...open].map((e) => e.sock.id));
  let last;
  try {
    return await until(
      async () => {
        const want = { "": 2, ...expected() };
        const got = await observed();
        last = { want, got };
        return JSON.stringify(sortKeys(got)) === JSON.stringify(sortKeys(want)) ? got : false;
      },
      { ms: 4000, everyMs: 50, what: label },
    );
  } catch (err) {
    const want = last?.want ?? {};
    const got = last?.got ?? {};
    const diff = [...new Set([...Object.keys(want), ...Object.keys(got)])]
      .filter((r) => want[r] !== got[r])
      .map((r) => `${r === "" ? "(bare)" : r}${sids.has(r) ? " (socket id)" : ""}: want ${want[r] ?? 0}, NUMSUB ${got[r] ?? 0}`);
    throw new Error(`${err.message}\n${diff.join("\n")}`);
  }
}

function sortKeys(o) {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
}

test("no sockets: only socket.io#/# (both gateways), the request channel and one pattern per gateway", async () => {
  await assertInterest("idle gateways");
  const req = await pubsubNumsub(admin, ["socket.io-request#/#"]);
  assert.equal(req["socket.io-request#/#"], 2, "each gateway subscribes to the request channel once");
  assert.equal(await pubsubNumpat(admin), 2, "patterns: one per gateway");
  const psubbers = (await clientList(admin)).filter((c) => c.psub > 0);
  assert.deepEqual(psubbers.map((c) => c.psub), [1, 1], "connections with pattern subscriptions");
});

test("3 alice + 2 bob sockets on A: one subscription per room of theirs, nothing for carol's or dave's rooms", async () => {
  for (let i = 0; i < 3; i++) await open1(A, "alice");
  for (let i = 0; i < 2; i++) await open1(A, "bob");
  const got = await assertInterest("alice×3 + bob×2 on A");
  assert.equal(got[`user:${s.users.carol.id}`], undefined);
  assert.equal(got[`user:${s.users.dave.id}`], undefined);
  for (const e of open) assert.equal(got[e.sock.id], undefined, "socket-id room channel");
  const tags = new Set([...open].map((e) => e.sock.id.slice(0, 4)));
  assert.equal(tags.size, 1, "the ids of one gateway's sockets start with its tag");
});

test("alice + dave on B: shared rooms count 2 (one per gateway), dave's rooms 1", async () => {
  await open1(B, "alice", { transports: ["polling"] });
  await open1(B, "dave");
  const got = await assertInterest("+ alice, dave on B");
  assert.equal(got["channel:c1"], 2);
  assert.equal(got["channel:c4"], 2);
  assert.equal(got["channel:c3"], 1);
  const tagsOn = (gw) => [...new Set([...open].filter((e) => e.gw === gw).map((e) => e.sock.id.slice(0, 4)))];
  assert.equal(tagsOn(B).length, 1, "the ids of B's sockets start with its tag");
  assert.notEqual(tagsOn(A)[0], tagsOn(B)[0], "each gateway has its own tag");
});

test("20 more alice sockets on A: the counts do not change (no per-socket subscriptions or connections)", async (t) => {
  const before = (await clientList(admin)).length;
  await Promise.all(Array.from({ length: 20 }, () => open1(A, "alice")));
  const got = await assertInterest("+ 20 alice on A");
  assert.equal(got["channel:c1"], 2);
  const conns = await clientList(admin);
  t.diagnostic(`Valkey connections (2 gateways + this test's admin): ${conns.length}; subscribing: ${conns.filter((c) => c.sub > 0).length}`);
  // Publishing connections may open lazily (at most one more per gateway here); 20 sockets must not add 20.
  assert.ok(conns.length <= before + 2, `Valkey connections went from ${before} to ${conns.length} with 20 more sockets`);
  assert.equal(conns.filter((c) => c.sub > 0).length, 2, "one Pub/Sub connection per gateway");
});

test("room:leave by the last local member drops the room's subscription; room:join brings it back", async () => {
  const bobs = [...open].filter((e) => e.user === "bob");
  assert.equal(bobs.length, 2);
  const left1 = await emitAck(bobs[0].sock, "room:leave", { room: "channel:c3" });
  assert.equal(left1?.ok, true, JSON.stringify(left1));
  bobs[0].rooms.delete("channel:c3");
  let got = await assertInterest("one bob left c3");
  assert.equal(got["channel:c3"], 1);
  const left2 = await emitAck(bobs[1].sock, "room:leave", { room: "channel:c3" });
  assert.equal(left2?.ok, true, JSON.stringify(left2));
  bobs[1].rooms.delete("channel:c3");
  got = await assertInterest("both bobs left c3");
  assert.equal(got["channel:c3"], undefined, "channel:c3 still subscribed with no local member");
  const joined = await emitAck(bobs[0].sock, "room:join", { room: "channel:c3" });
  assert.equal(joined?.ok, true, JSON.stringify(joined));
  bobs[0].rooms.add("channel:c3");
  got = await assertInterest("bob rejoined c3");
  assert.equal(got["channel:c3"], 1);
});

test("disconnects: extra alice sockets change nothing; bob gone drops bob-only rooms; all gone → bare channel only", async () => {
  const alicesA = [...open].filter((e) => e.user === "alice" && e.gw === A);
  await Promise.all(alicesA.slice(1).map(close1));
  await assertInterest("22 of 23 alice sockets on A closed");
  await Promise.all([...open].filter((e) => e.user === "bob").map(close1));
  const got = await assertInterest("bob's sockets closed");
  assert.equal(got[`user:${s.users.bob.id}`], undefined);
  assert.equal(got["channel:c3"], undefined);
  assert.equal(got["channel:c1"], 2, "alice still has c1 on A and B");
  await Promise.all([...open].filter((e) => e.gw === A).map(close1));
  await assertInterest("A empty");
  await Promise.all([...open].map(close1));
  const final = await assertInterest("both empty");
  assert.deepEqual(final, { "": 2 });
  closeAllClients();
});
