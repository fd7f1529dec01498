// Shared setup for the presence tests (tests/node/presence/*.test.mjs): short presence timings, recorders of
// `presence:update` per socket, and readers of the presence keys in Valkey.
// Listeners read the first argument only: with connection state recovery on, broadcasts carry an offset as a
// last extra argument. Never print cookie values: they are bearer secrets even in tests.
import { until, allKeys } from "../lib/valkey.mjs";
import { sleep } from "../lib/gateway.mjs";
import { checkServerEvent } from "../lib/schemas.mjs";

/** Presence timings for the tests (the defaults are 4000 / 2000 / 6000 / 250 ms). */
export const GRACE_MS = 1200;
export const HEARTBEAT_MS = 500;
export const TTL_MS = 1500;
/** Updates wait up to this long to go out together (presence.batch_ms, the default). */
export const BATCH_MS = 250;

export function presenceEnv({ graceMs = GRACE_MS, heartbeatMs = HEARTBEAT_MS, ttlMs = TTL_MS, batchMs = BATCH_MS } = {}) {
  return {
    GATEWAY_PRESENCE__GRACE_MS: String(graceMs),
    GATEWAY_PRESENCE__HEARTBEAT_MS: String(heartbeatMs),
    GATEWAY_PRESENCE__TTL_MS: String(ttlMs),
    GATEWAY_PRESENCE__BATCH_MS: String(batchMs),
  };
}

/** Key prefix of the presence keys for the default redis.prefix. */
export const P = "socket.io-presence";

/**
 * Records `presence:update` on each socket of `sockets` ({name: socket}), first argument only, with the time it
 * arrived. `.of(name, userId?)` → list of {userId, status, lastSeen, at}; `.stop()` removes the listeners.
 */
export function presenceRecorder(sockets) {
  const got = {};
  const handlers = [];
  // Every update must match schema/events; a mismatch fails the next read of the recording.
  const problems = [];
  for (const [name, sock] of Object.entries(sockets)) {
    got[name] = [];
    const h = (update) => {
      const problem = checkServerEvent("presence:update", update);
      if (problem) problems.push(problem);
      got[name].push({ ...update, at: Date.now() });
    };
    sock.on("presence:update", h);
    handlers.push([sock, h]);
  }
  return {
    of(name, userId) {
      if (problems.length) throw new Error(problems.join("\n"));
      return got[name].filter((u) => userId === undefined || u.userId === userId);
    },
    /** {name: ["online", "away", ...]} for one user. */
    statuses(userId) {
      return Object.fromEntries(Object.keys(got).map((n) => [n, this.of(n, userId).map((u) => u.status)]));
    },
    clear: () => Object.values(got).forEach((l) => l.splice(0)),
    stop: () => handlers.forEach(([s, h]) => s.off("presence:update", h)),
    /** Resolves once every name in `names` got `status` for `userId` (at least once); rejects after `ms`. */
    async waitAll(names, userId, status, ms = 5000) {
      await until(() => names.every((n) => this.of(n, userId).some((u) => u.status === status)), {
        ms,
        everyMs: 20,
        what: `presence:update ${status} for ${userId} on ${names.join(", ")}`,
      }).catch((err) => {
        throw new Error(`${err.message}; seen: ${JSON.stringify(this.statuses(userId))}`);
      });
      return Object.fromEntries(names.map((n) => [n, this.of(n, userId).find((u) => u.status === status)]));
    },
  };
}

/**
 * Waits until `names` got `status` for `userId`, then `settleMs` more, and checks that each got exactly the
 * statuses in `expected` (default: [status]) and that names in `none` got nothing for that user.
 */
export async function expectUpdates(rec, names, userId, status, { none = [], expected = [status], ms = 5000, settleMs = 400 } = {}) {
  const first = await rec.waitAll(names, userId, status, ms);
  await sleep(settleMs);
  const seen = rec.statuses(userId);
  for (const n of names) {
    if (JSON.stringify(seen[n]) !== JSON.stringify(expected)) {
      throw new Error(`${n}: expected ${JSON.stringify(expected)} for ${userId}, got ${JSON.stringify(seen)}`);
    }
  }
  for (const n of none) {
    if (seen[n].length) throw new Error(`${n}: expected no update for ${userId}, got ${JSON.stringify(seen)}`);
  }
  return first;
}

/** Asserts that no socket in `rec` got any update for `userId` for `ms`. */
export async function expectQuiet(rec, userId, ms) {
  const t0 = Date.now();
  await sleep(ms);
  const seen = rec.statuses(userId);
  if (Object.values(seen).some((l) => l.length)) {
    throw new Error(`expected no presence:update for ${userId} during ${Date.now() - t0} ms, got ${JSON.stringify(seen)}`);
  }
}

/** HGETALL of a workspace's presence hash → {userId: status}. */
export async function workspacePresence(redis, workspaceId, prefix = P) {
  return redis.hgetall(`${prefix}:ws:${workspaceId}`);
}

/**
 * The gateway instances' members registered in Valkey (`P:members`): `live` ones, and `claimed` ones (dead
 * or replaced, their entries being removed; their value names the claimer as a third word). Both sorted.
 */
export async function presenceMembers(redis, prefix = P) {
  const members = { live: [], claimed: [] };
  for (const [member, value] of Object.entries(await redis.hgetall(`${prefix}:members`))) {
    members[value.split(" ").length > 2 ? "claimed" : "live"].push(member);
  }
  members.live.sort();
  members.claimed.sort();
  return members;
}

/** Every presence key in Valkey (sorted). */
export async function presenceKeys(redis, prefix = P) {
  return allKeys(redis, `${prefix}:*`);
}
