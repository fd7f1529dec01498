// The Cluster and Sentinel harnesses (lib/valkey-cluster.mjs, lib/valkey-sentinel.mjs) against real servers,
// before gateway tests rely on them: the cluster forms with replicas and its slot map is what the nodes say,
// clients and sharded Pub/Sub work on it, slot migration, failover and a crash converge again; the sentinels
// promote a writable replica when the primary is killed. Skipped (with the reason) without a valkey-server,
// except on CI, where that is a failure.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { Cluster } from "ioredis";
import { skipWithoutValkey, redisClient, closeAllRedis } from "../lib/valkey.mjs";
import { startValkeyCluster } from "../lib/valkey-cluster.mjs";
import { startValkeySentinel } from "../lib/valkey-sentinel.mjs";

const skip = skipWithoutValkey;

const hostPort = (url) => ({ host: "127.0.0.1", port: Number(new URL(url).port) });

describe("valkey cluster harness", { skip, timeout: 45000 }, () => {
  let cluster, clusterClient;
  before(async () => {
    cluster = await startValkeyCluster({ primaries: 3, replicasPerPrimary: 1 });
    clusterClient = new Cluster(cluster.seeds.map(hostPort), { redisOptions: { maxRetriesPerRequest: 1 } });
  });
  after(async () => {
    clusterClient?.disconnect();
    closeAllRedis();
    await cluster?.stop();
  });

  test("3 primaries with a replica each cover all slots; slotOf() agrees with CLUSTER KEYSLOT", async () => {
    const primaries = cluster.nodes.filter((n) => n.role === "primary");
    const replicas = cluster.nodes.filter((n) => n.role === "replica");
    assert.equal(primaries.length, 3);
    assert.equal(replicas.length, 3);
    assert.deepEqual(cluster.seeds, primaries.map((n) => n.url));
    const admin = redisClient(cluster.nodes[0].url);
    // CLUSTER SLOTS: [from, to, [host, port, id], replica...] per range.
    const ranges = await admin.cluster("SLOTS");
    assert.equal(ranges.length, 3);
    assert.equal(ranges.reduce((sum, [from, to]) => sum + to - from + 1, 0), 16384);
    for (const [from, to, [, port, id], ...reps] of ranges) {
      assert.equal(reps.length, 1, `one replica for ${from}-${to}`);
      for (const slot of [from, to]) {
        assert.equal(cluster.primaryForSlot(slot).port, port);
        assert.equal(cluster.primaryForSlot(slot).id, id);
      }
    }
    const keys = [
      "", "a", "foo", "bar", "user:1000", "socket.io#/#room#", "ключ", "emoji-🎉",
      "{user1000}.following", "{user1000}.followers", "foo{bar}baz", "{bar}", "x{}y", "{}", "{}{bar}",
      "a{b}c{d}", "{{x}}", "{x", "x}", "a{", "}{a}",
    ];
    for (const key of keys) assert.equal(cluster.slotOf(key), await admin.cluster("KEYSLOT", key), `slot of ${JSON.stringify(key)}`);
    assert.equal(cluster.slotOf("{user1000}.following"), cluster.slotOf("{user1000}.followers"));
  });

  test("ioredis Cluster: keys written through it are readable, and stored on primaryForSlot()", async () => {
    for (let i = 0; i < 30; i++) await clusterClient.set(`key:${i}`, `v${i}`);
    for (let i = 0; i < 30; i++) assert.equal(await clusterClient.get(`key:${i}`), `v${i}`);
    const owners = new Set();
    for (const key of ["key:0", "key:7", "key:29"]) {
      const owner = cluster.primaryForSlot(cluster.slotOf(key));
      owners.add(owner);
      assert.equal(await redisClient(owner.url).get(key), `v${key.slice(4)}`, `${key} on :${owner.port}`);
    }
    assert.ok(owners.size > 1, "keys spread over several primaries");
  });

  test("sharded Pub/Sub: SSUBSCRIBE on the channel's primary receives an SPUBLISH; other primaries answer MOVED", async () => {
    const channel = "socket.io#/#{room-a}#";
    const owner = cluster.primaryForSlot(cluster.slotOf(channel));
    const sub = redisClient(owner.url);
    await sub.ssubscribe(channel);
    const got = once(sub, "smessage");
    assert.equal(await redisClient(owner.url).spublish(channel, "hello"), 1);
    assert.deepEqual(await got, [channel, "hello"]);
    const other = cluster.nodes.find((n) => n.role === "primary" && n !== owner);
    await assert.rejects(redisClient(other.url).spublish(channel, "x"), /MOVED/);
    // Through the cluster client (which routes SPUBLISH by slot) too.
    const again = once(sub, "smessage");
    assert.equal(await clusterClient.spublish(channel, "via cluster"), 1);
    assert.deepEqual(await again, [channel, "via cluster"]);
    sub.disconnect();
  });

  test("migrateSlot(): the slot's keys move to the target primary, the cluster stays ok, clients follow", async () => {
    const keys = Array.from({ length: 250 }, (_, i) => `{moving}:${i}`);
    for (const k of keys) await clusterClient.set(k, k);
    const slot = cluster.slotOf(keys[0]);
    const from = cluster.primaryForSlot(slot);
    const to = cluster.nodes.find((n) => n.role === "primary" && n !== from);
    await cluster.migrateSlot(slot, from, to);
    assert.equal(cluster.primaryForSlot(slot), to);
    assert.equal(cluster.primaryForSlot(slot - 1), from, "neighbouring slots stay");
    assert.equal(await redisClient(to.url).cluster("COUNTKEYSINSLOT", slot), keys.length);
    assert.equal(await redisClient(from.url).cluster("COUNTKEYSINSLOT", slot), 0);
    await assert.rejects(redisClient(from.url).get(keys[0]), new RegExp(`MOVED ${slot} 127.0.0.1:${to.port}`));
    for (const n of cluster.nodes) assert.match(String(await redisClient(n.url).cluster("INFO")), /cluster_state:ok/);
    for (const k of [keys[0], keys[249]]) assert.equal(await clusterClient.get(k), k);
  });

  // A key (hash tag) in the slots of `primary`.
  const keyOn = (primary) =>
    Array.from({ length: 1000 }, (_, i) => `{k${i}}`).find((k) => cluster.primaryForSlot(cluster.slotOf(k)) === primary);

  test("failover(): the replica becomes primary of its primary's slots, the old primary its replica", async () => {
    const replica = cluster.nodes.find((n) => n.role === "replica");
    const info = String(await redisClient(replica.url).info("replication"));
    const old = cluster.nodes.find((n) => n.port === Number(info.match(/master_port:(\d+)/)[1]));
    const key = keyOn(old);
    await clusterClient.set(key, "before");
    await cluster.failover(replica);
    assert.equal(replica.role, "primary");
    assert.equal(old.role, "replica");
    assert.equal(cluster.primaryForSlot(cluster.slotOf(key)), replica);
    const direct = redisClient(replica.url);
    assert.equal((await direct.role())[0], "master");
    assert.equal(await direct.get(key), "before", "no write lost");
    assert.equal(await direct.set(key, "after"), "OK");
    assert.equal((await redisClient(old.url).role())[0], "slave");
  });

  test("kill(): a crashed primary's replica takes over; waitOk() waits for that", async () => {
    const victim = cluster.nodes.find((n) => n.role === "primary");
    const key = keyOn(victim);
    const direct = redisClient(victim.url);
    await direct.set(key, "survives");
    assert.equal(await direct.call("WAIT", 1, 2000), 1, "replicated before the crash");
    const t0 = Date.now();
    await cluster.kill(victim);
    await cluster.waitOk();
    assert.ok(Date.now() - t0 > 2000, `waitOk() took ${Date.now() - t0} ms: not before cluster-node-timeout`);
    const heir = cluster.primaryForSlot(cluster.slotOf(key));
    assert.notEqual(heir, victim);
    assert.equal(heir.role, "primary");
    assert.equal(await redisClient(heir.url).get(key), "survives");
    assert.equal(await clusterClient.get(key), "survives", "the cluster client finds the new primary");
  });
});

describe("valkey sentinel harness", { skip, timeout: 45000 }, () => {
  let sentinel;
  after(async () => {
    closeAllRedis();
    await sentinel?.stop();
  });

  test("killPrimary(): the sentinels promote the replica, currentPrimary() names it and it accepts writes", async () => {
    sentinel = await startValkeySentinel({ replicas: 1, sentinels: 3 });
    assert.equal(sentinel.sentinels.length, 3);
    assert.equal(await sentinel.currentPrimary(), sentinel.primary);
    const first = redisClient(sentinel.primary.url);
    await first.set("k", "v1");
    assert.equal(await first.call("WAIT", 1, 2000), 1, "replicated before the crash");
    const next = await sentinel.killPrimary();
    assert.equal(next, sentinel.replicas[0]);
    assert.equal(await sentinel.currentPrimary(), next);
    const promoted = redisClient(next.url);
    assert.equal(await promoted.get("k"), "v1");
    assert.equal(await promoted.set("k", "v2"), "OK");
    for (const s of sentinel.sentinels) {
      const [, port] = await redisClient(s.url).call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", sentinel.masterName);
      assert.equal(Number(port), next.port, `sentinel :${s.port}`);
    }
  });
});
