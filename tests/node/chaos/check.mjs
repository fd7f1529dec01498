// The checker of the fault matrix and the soak: compares what every client received (the
// loadgen's chaos records, bench/src/bin/loadgen/chaos.rs) with what the publishers sent
// (publisher.mjs's records and the clients' own acknowledged sends), and counts per phase:
//
// - lost: a message of a room the client is in, logged (it has an offset), that the client's
//   session skipped: its session received messages before and after it in that room, or it
//   was still connected at the end and never received it (the run ends with a "seal": one last
//   message per room, which every client must get).
// - lostEverywhere: a message the publisher had confirmed (Valkey counted receivers) that no
//   client ever received although a session of its room covered it (received that
//   publisher's messages before and after it); never logged, so no recovery could bring it.
//   Unowed (nobody's session covered it: no member, or all came back fresh) and unheard (no
//   receiver at all) messages are only counted.
// - duplicates: a message a client received twice (in any of its sessions).
// - reordered: a message received after a later one of the same room.
// - leaked: a message of a room the client is not in.
// - conflicts (offsetConflicts): one message seen at two offsets or in two rooms.
// - sessions: new (first connect), recovered, fresh (recovery asked for and not granted);
//   disconnects, and those of a control group (`control(slot)`) that no fault should touch.
// - steady: time from the phase's start to its last connect/disconnect or late (> lateMs)
//   delivery.
//
// A session chain is what a client received over its connections while each reconnect was
// recovered; a fresh session starts a new chain (what it missed was not recoverable, and is
// reported as fresh sessions, not as lost). Messages without an offset (delivered while the
// relay was down) are counted as unlogged and are not checked.
//
// CLI: node check.mjs DIR [--phases phases.json] [--sealed] → prints the report as JSON; exits
// 1 when anything was lost, duplicated, reordered or leaked.
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { logPartitionOf, parseOffset } from "../lib/recovery-log.mjs";

async function* lines(file) {
  const rl = readline.createInterface({ input: fs.createReadStream(file), crlfDelay: Infinity });
  for await (const line of rl) if (line) yield line;
}

/**
 * The id of a message in its log partition, from the offset a client got with it: the offset itself
 * (`<ms>-<seq>`) with one partition; with several (`recovery.log_partitions`), the client's offset is a
 * frontier over every partition (lib/recovery-log.mjs parseOffset) and the message's id is the component of
 * the partition of its room (it was sent to that room alone).
 */
export function messageId(offset, room) {
  if (offset === "-" || !offset.includes("~")) return offset;
  const frontier = parseOffset(offset);
  if (!frontier) return offset;
  const [ms, seq] = frontier[logPartitionOf(room, frontier.length)];
  return `${ms}-${seq}`;
}

/** Compares two offsets `<ms>-<seq>`. */
export function cmpOffset(a, b) {
  const [am, as] = a.split("-").map(Number);
  const [bm, bs] = b.split("-").map(Number);
  return am - bm || as - bs;
}

const BUCKETS = ["lost", "lostEverywhere", "duplicates", "reordered", "leaked", "unlogged", "offsetConflicts"];

function newPhaseStats(p) {
  return {
    name: p.name,
    start: p.start,
    end: p.end,
    sessions: { new: 0, recovered: 0, fresh: 0 },
    disconnects: 0,
    controlDisconnects: 0,
    delivered: 0,
    ...Object.fromEntries(BUCKETS.map((b) => [b, 0])),
    lastChurnAt: null,
    lastLateAt: null,
    maxLatencyMs: 0,
    examples: [],
  };
}

/**
 * `clientFiles`: record files of the workers; `publisherFiles`: publisher.mjs records; `phases`:
 * [{name, start, end}] (Unix ms; anything outside goes to "outside"); `sealed`: the run ended
 * with a seal (see above); `churnRoomPrefix`: rooms only checked for duplicates and order
 * (membership changes make their expected set unknown).
 */
export async function check({ clientFiles, publisherFiles = [], phases = [], sealed = false, lateMs = 1000, churnRoomPrefix = null, control = () => false }) {
  const stats = phases.map(newPhaseStats);
  const outside = newPhaseStats({ name: "outside", start: null, end: null });
  const phaseAt = (t) => stats.find((p) => t >= p.start && t < p.end) ?? outside;
  const note = (t, what, detail) => {
    const p = phaseAt(t);
    p[what] += 1;
    if (p.examples.length < 10) p.examples.push(`${what}: ${detail}`);
  };

  // ---- pass 1: every message's offset (from any client that got it) and what was sent
  const msgs = new Map(); // key -> {room, offset, sentAt, confirmed, receivers}
  const get = (key, room) => {
    let m = msgs.get(key);
    if (!m) {
      m = { room, offset: null, sentAt: null, confirmed: false, receivers: null, received: 0 };
      msgs.set(key, m);
    }
    return m;
  };
  for (const file of publisherFiles) {
    for await (const line of lines(file)) {
      const [tag, t, src, seq, room, result, receivers] = line.split(" ");
      if (tag !== "P") continue;
      const m = get(`${src}:${seq}`, room);
      m.sentAt = Number(t);
      m.confirmed = result === "ok";
      m.receivers = receivers === undefined ? null : Number(receivers);
    }
  }
  for (const file of clientFiles) {
    for await (const line of lines(file)) {
      const f = line.split(" ");
      if (f[0] === "M") {
        const [, , t, src, seq, room, stamp] = f;
        const offset = messageId(stamp, room);
        const m = get(`${src}:${seq}`, room);
        m.received += 1;
        if (offset === "-" || m.room !== room) continue;
        if (m.offset === null) m.offset = offset;
        else if (m.offset !== offset) note(Number(t), "offsetConflicts", `${src}:${seq} at ${m.offset} and ${offset}`);
      } else if (f[0] === "S") {
        const [, slot, t, seq, room, result] = f;
        const m = get(`c${slot}:${seq}`, room);
        m.sentAt = Number(t);
        m.confirmed = result === "ok";
      }
    }
  }
  // Each room's logged messages in offset order, and each message's place in it.
  const order = new Map(); // room -> [key]
  for (const [key, m] of msgs) {
    if (m.offset === null) continue;
    if (!order.has(m.room)) order.set(m.room, []);
    order.get(m.room).push(key);
  }
  const place = new Map(); // key -> index in its room's order
  for (const [, keys] of order) {
    keys.sort((a, b) => cmpOffset(msgs.get(a).offset, msgs.get(b).offset));
    keys.forEach((k, i) => place.set(k, i));
  }
  const offsetMs = (key) => Number(msgs.get(key).offset.split("-")[0]);

  // ---- pass 2: each client's chains
  const slots = new Map(); // slot -> state
  const slotOf = (slot) => {
    let s = slots.get(slot);
    if (!s) {
      s = { rooms: new Set(), chain: new Map(), got: new Map(), connected: false, left: false };
      slots.set(slot, s);
    }
    return s;
  };
  // What each chain covered, per room: the publishers' sequence numbers (per source) and the
  // times it received messages between. A message nobody received was owed only if a chain
  // of its room covered it (a room without members, or whose members all came back fresh,
  // owed it to nobody).
  const spans = new Map(); // room -> [{seqs: Map(src -> [min, max]), from, to}]
  // Messages a chain skipped; reported as lost when the chain ends without them.
  const endChain = (s) => {
    for (const [, c] of s.chain) {
      for (const idx of c.missing) {
        const key = order.get(c.room)[idx];
        note(offsetMs(key), "lost", `${key} (${c.room}) skipped by slot ${s.id}`);
      }
      if (!spans.has(c.room)) spans.set(c.room, []);
      spans.get(c.room).push({ seqs: c.seqs, from: c.from, to: c.to });
    }
    s.chain = new Map();
  };
  const covered = (key, m) => {
    const [src, seqStr] = key.split(":");
    const seq = Number(seqStr);
    return (spans.get(m.room) ?? []).some((sp) => {
      const r = sp.seqs.get(src);
      // Its own publisher's sequence for emitter messages; a client's sends are timed by
      // their ack, so the chain must have received messages well before and after it.
      if (src.startsWith("e")) return r !== undefined && r[0] < seq && seq < r[1];
      return m.sentAt !== null && sp.from < m.sentAt - 3000 && sp.to > m.sentAt + 3000;
    });
  };
  for (const file of clientFiles) {
    for await (const line of lines(file)) {
      const f = line.split(" ");
      const slot = Number(f[1]);
      const s = slotOf(slot);
      s.id = slot;
      switch (f[0]) {
        case "R":
          s.rooms = new Set((f[2] ?? "").split(",").filter(Boolean));
          break;
        case "C": {
          const t = Number(f[2]);
          const kind = f[3];
          const p = phaseAt(t);
          p.sessions[kind] = (p.sessions[kind] ?? 0) + 1;
          p.lastChurnAt = Math.max(p.lastChurnAt ?? 0, t);
          if (kind !== "recovered") endChain(s);
          s.connected = true;
          s.left = false;
          break;
        }
        case "D": {
          const t = Number(f[2]);
          const p = phaseAt(t);
          p.disconnects += 1;
          if (control(slot)) p.controlDisconnects += 1;
          p.lastChurnAt = Math.max(p.lastChurnAt ?? 0, t);
          s.connected = false;
          if (f[3] === "left") s.left = true;
          break;
        }
        case "M": {
          const [, , tStr, src, seq, room, offset] = f;
          const t = Number(tStr);
          const key = `${src}:${seq}`;
          const p = phaseAt(t);
          p.delivered += 1;
          const sent = Number(key.startsWith("e") ? msgs.get(key)?.sentAt : NaN);
          const latency = t - (Number.isFinite(sent) ? sent : t);
          if (latency > p.maxLatencyMs) p.maxLatencyMs = latency;
          if (latency > lateMs) p.lastLateAt = Math.max(p.lastLateAt ?? 0, t);
          if (offset === "-") {
            p.unlogged += 1;
            break;
          }
          const churn = churnRoomPrefix && room.startsWith(churnRoomPrefix);
          if (!s.rooms.has(room) && !churn) {
            note(t, "leaked", `${key} (${room}) reached slot ${slot}`);
            break;
          }
          const idx = place.get(key);
          if (msgs.get(key).room !== room) {
            note(t, "offsetConflicts", `${key} seen in ${msgs.get(key).room} and ${room}`);
            break;
          }
          let got = s.got.get(room);
          if (!got) {
            got = new Uint8Array(order.get(room).length);
            s.got.set(room, got);
          }
          if (got[idx]) {
            note(t, "duplicates", `${key} (${room}) twice on slot ${slot}`);
            break;
          }
          got[idx] = 1;
          let c = s.chain.get(room);
          if (!c) {
            c = { room, last: idx, missing: new Set(), seqs: new Map(), from: t, to: t };
            s.chain.set(room, c);
          }
          c.to = t;
          const r = c.seqs.get(src);
          const n = Number(seq);
          if (!r) c.seqs.set(src, [n, n]);
          else {
            if (n < r[0]) r[0] = n;
            if (n > r[1]) r[1] = n;
          }
          if (idx === c.last) break; // the chain's first message
          if (idx > c.last) {
            // Everything between is missing unless it arrives later (then it is reordered).
            if (!churn) for (let j = c.last + 1; j < idx; j++) c.missing.add(j);
            c.last = idx;
          } else {
            c.missing.delete(idx);
            note(t, "reordered", `${key} (${room}) after a later one on slot ${slot}`);
          }
          break;
        }
        default:
          break;
      }
    }
  }
  // The seal: a client connected at the end must have every room's last message.
  for (const [, s] of slots) {
    if (sealed && s.connected && !s.left) {
      for (const room of s.rooms) {
        const keys = order.get(room);
        if (!keys) continue;
        const c = s.chain.get(room);
        const from = c ? c.last + 1 : keys.length; // a chain that never got anything: only fresh tails count
        for (let j = from; j < keys.length; j++) note(offsetMs(keys[j]), "lost", `${keys[j]} (${room}) never reached slot ${s.id} (connected at the end)`);
      }
    }
    endChain(s);
  }
  // Confirmed by the publisher, heard by someone (receivers > 0), received by no client,
  // although a session in its room covered it.
  let unheard = 0;
  let unowed = 0;
  for (const [key, m] of msgs) {
    if (!m.confirmed || m.received > 0) continue;
    if (m.receivers === 0) {
      unheard += 1;
      continue;
    }
    if (!covered(key, m)) {
      unowed += 1;
      continue;
    }
    note(m.sentAt, "lostEverywhere", `${key} (${m.room}) confirmed, received by nobody, although a session of its room covered it`);
  }

  const all = [...stats, outside];
  const total = Object.fromEntries(BUCKETS.map((b) => [b, all.reduce((a, p) => a + p[b], 0)]));
  total.delivered = all.reduce((a, p) => a + p.delivered, 0);
  total.messages = msgs.size;
  total.logged = place.size;
  total.unheard = unheard;
  total.unowed = unowed;
  total.slots = slots.size;
  total.connectedAtEnd = [...slots.values()].filter((s) => s.connected).length;
  for (const p of all) {
    const last = Math.max(p.lastChurnAt ?? 0, p.lastLateAt ?? 0);
    p.steadyAfterMs = p.start === null ? null : last > p.start ? last - p.start : 0;
  }
  const ok = BUCKETS.filter((b) => b !== "unlogged").every((b) => total[b] === 0);
  return { ok, total, phases: all };
}

// ---- CLI
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [dir, ...rest] = process.argv.slice(2);
  if (!dir) {
    process.stderr.write("usage: node check.mjs DIR [--phases FILE] [--sealed] [--churn-prefix P]\n");
    process.exit(2);
  }
  const opt = (k) => {
    const i = rest.indexOf(k);
    return i >= 0 ? rest[i + 1] : undefined;
  };
  const files = fs.readdirSync(dir);
  const report = await check({
    clientFiles: files.filter((f) => /^records-\d+\.txt$/.test(f)).map((f) => path.join(dir, f)),
    publisherFiles: files.filter((f) => /^published-\d+\.txt$/.test(f)).map((f) => path.join(dir, f)),
    phases: opt("--phases") ? JSON.parse(fs.readFileSync(opt("--phases"), "utf8")) : [],
    sealed: rest.includes("--sealed"),
    churnRoomPrefix: opt("--churn-prefix") ?? null,
  });
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  process.exit(report.ok ? 0 : 1);
}
