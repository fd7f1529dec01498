// The fault matrix's checker must be able to fail: records with a gap, a duplicate, a late
// arrival, a leak, a missing tail, a message nobody got, and the same situations made harmless
// (a fresh session's gap, a publish nobody was subscribed to) each give exactly the right counts.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { check, cmpOffset, messageId } from "./check.mjs";
import { logPartitionOf } from "../lib/recovery-log.mjs";

const T = 1_700_000_000_000;
/** Message n of room `r` from emitter e0: offset `<T+n*10>-0`. */
const M = (slot, n, room = "channel:a", { t = T + n * 10 + 5, src = "e0" } = {}) => `M ${slot} ${t} ${src} ${n} ${room} ${T + n * 10}-0`;
const C = (slot, kind, t = T) => `C ${slot} ${t} ${kind} sid${slot}`;
const D = (slot, t) => `D ${slot} ${t} dropped`;
const P = (n, room = "channel:a", receivers = 2, result = "ok") => `P ${T + n * 10 - 1} e0 ${n} ${room} ${result} ${receivers}`;

async function run(clientLines, { published = [], sealed = false, phases = [] } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "chaos-check-"));
  try {
    const client = path.join(dir, "records-0.txt");
    fs.writeFileSync(client, `${clientLines.join("\n")}\n`);
    const pub = path.join(dir, "published-0.txt");
    fs.writeFileSync(pub, published.length ? `${published.join("\n")}\n` : "");
    return await check({ clientFiles: [client], publisherFiles: [pub], sealed, phases });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Slot 0 and a reference slot 1 that receives everything (so every message has an offset). */
const reference = (n) => ["R 1 channel:a", C(1, "new"), ...Array.from({ length: n }, (_, i) => M(1, i + 1))];

test("offsets compare by time then sequence", () => {
  assert.ok(cmpOffset("10-2", "9-5") > 0);
  assert.ok(cmpOffset("10-2", "10-10") < 0);
  assert.equal(cmpOffset("10-2", "10-2"), 0);
});
test("with the log split, a message's id is its room's partition in the client's offset", () => {
  assert.equal(messageId("1733480000123-4", "channel:f1"), "1733480000123-4");
  assert.equal(messageId("-", "channel:f1"), "-");
  // A frontier over 4 partitions: newest 1000 ms (base 36 "rs"); partition k holds (1000 - 10k)-k.
  const frontier = "rs~0_a.1_k.2_u.3";
  const p = logPartitionOf("channel:f7", 4);
  assert.equal(messageId(frontier, "channel:f7"), `${1000 - 10 * p}-${p}`);
});


test("everything received once, in order: ok", async () => {
  const r = await run([...reference(5), "R 0 channel:a", C(0, "new"), M(0, 1), M(0, 2), M(0, 3), M(0, 4), M(0, 5)], { sealed: true });
  assert.equal(r.ok, true, JSON.stringify(r.total));
  assert.equal(r.total.delivered, 10);
});

test("a gap inside a session is lost; the same gap across a fresh session is not", async () => {
  const gap = await run([...reference(5), "R 0 channel:a", C(0, "new"), M(0, 1), M(0, 2), M(0, 4), M(0, 5)]);
  assert.equal(gap.ok, false);
  assert.equal(gap.total.lost, 1);
  assert.match(gap.phases.at(-1).examples[0], /e0:3/);

  const recovered = await run([...reference(5), "R 0 channel:a", C(0, "new"), M(0, 1), M(0, 2), D(0, T + 25), C(0, "recovered", T + 45), M(0, 5)]);
  assert.equal(recovered.total.lost, 2, "a recovered session must have had 3 and 4");
  assert.equal(recovered.phases.at(-1).sessions.recovered, 1);

  const fresh = await run([...reference(5), "R 0 channel:a", C(0, "new"), M(0, 1), M(0, 2), D(0, T + 25), C(0, "fresh", T + 45), M(0, 5)]);
  assert.equal(fresh.ok, true, "a fresh session owes nothing from before it");
  assert.equal(fresh.phases.at(-1).sessions.fresh, 1);
});

test("the seal: a client connected at the end must have every room's last message", async () => {
  const r = await run([...reference(5), "R 0 channel:a", C(0, "new"), M(0, 1), M(0, 2), M(0, 3)], { sealed: true });
  assert.equal(r.total.lost, 2);
  const unsealed = await run([...reference(5), "R 0 channel:a", C(0, "new"), M(0, 1), M(0, 2), M(0, 3)]);
  assert.equal(unsealed.total.lost, 0, "without a seal the tail is unknown");
  const left = await run([...reference(5), "R 0 channel:a", C(0, "new"), M(0, 1), "D 0 100 left"], { sealed: true });
  assert.equal(left.total.lost, 0, "a client that left owes nothing");
});

test("duplicates, late arrivals and leaks are counted", async () => {
  const dup = await run([...reference(3), "R 0 channel:a", C(0, "new"), M(0, 1), M(0, 2), M(0, 2), M(0, 3)]);
  assert.equal(dup.total.duplicates, 1);
  assert.equal(dup.total.lost, 0);
  // A duplicate across sessions counts too (a replay of something already received).
  const dup2 = await run([...reference(3), "R 0 channel:a", C(0, "new"), M(0, 1), M(0, 2), C(0, "recovered", T + 30), M(0, 2), M(0, 3)]);
  assert.equal(dup2.total.duplicates, 1);

  const late = await run([...reference(4), "R 0 channel:a", C(0, "new"), M(0, 1), M(0, 3), M(0, 2), M(0, 4)]);
  assert.equal(late.total.reordered, 1);
  assert.equal(late.total.lost, 0, "it did arrive");

  const b = { src: "e1" };
  const leak = await run([...reference(2), "R 2 channel:b", C(2, "new"), M(2, 1, "channel:b", b), "R 0 channel:a", C(0, "new"), M(0, 1), M(0, 1, "channel:b", b), M(0, 2)]);
  assert.equal(leak.total.leaked, 1);
});

test("a confirmed publish nobody received is lost when a session of its room covered it", async () => {
  // Slot 1 received e0:1, e0:2 and e0:6: it was there for e0:3, e0:4 and e0:5.
  const lines = ["R 1 channel:a", C(1, "new"), M(1, 1), M(1, 2), M(1, 6)];
  const published = [P(1), P(2), P(3), P(4, "channel:a", 0), P(5, "channel:a", 2, "err"), P(6), P(7, "channel:z")];
  const r = await run(lines, { published });
  assert.equal(r.total.lostEverywhere, 1, "e0:3 was confirmed with 2 receivers and never seen");
  assert.equal(r.total.unheard, 1, "e0:4 had no receiver at all");
  assert.equal(r.total.unowed, 1, "e0:7 went to a room without members");
  assert.equal(r.ok, false);
  // The same gap across a fresh session is owed to nobody.
  const fresh = await run(["R 1 channel:a", C(1, "new"), M(1, 1), M(1, 2), D(1, T + 25), C(1, "fresh", T + 55), M(1, 6)], { published });
  assert.equal(fresh.total.lostEverywhere, 0);
  assert.equal(fresh.ok, true);
});

test("the same message at two offsets is a conflict; messages without one are only counted", async () => {
  const conflict = await run([...reference(2), "R 0 channel:a", C(0, "new"), M(0, 1), `M 0 ${T + 25} e0 2 channel:a ${T + 21}-0`]);
  assert.equal(conflict.total.offsetConflicts, 1);
  const unlogged = await run([...reference(2), "R 0 channel:a", C(0, "new"), M(0, 1), `M 0 ${T + 30} c9 1 channel:a -`, M(0, 2)]);
  assert.equal(unlogged.total.unlogged, 1);
  assert.equal(unlogged.ok, true);
});

test("findings are attributed to the phase the message was published in", async () => {
  const phases = [
    { name: "before", start: T, end: T + 25 },
    { name: "fault", start: T + 25, end: T + 100 },
  ];
  const r = await run([...reference(5), "R 0 channel:a", C(0, "new"), M(0, 1), M(0, 2), M(0, 4), M(0, 5)], { phases });
  assert.equal(r.phases.find((p) => p.name === "fault").lost, 1);
  assert.equal(r.phases.find((p) => p.name === "before").lost, 0);
});
