// The reduced fault matrix that CI runs (the full one: scripts/chaos.sh, RELIABILITY.md): 300
// recovering clients through nginx and two gateways under the emitter's traffic and their own
// sends; a gateway SIGKILLed, a reconnect storm while the app answers slowly (3 s), abusive
// clients during a storm, Valkey restarted with its data; the checker over every client's
// records after the final seal. Each fault: every client back, no logged message skipped,
// nothing delivered twice or out of order, no panic, the control group (one client in ten,
// never dropped) untouched, the client that stopped reading cut off. Known failures are
// todo tests below.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { runMatrix } from "./matrix.mjs";

const SOCKETS = Number(process.env.CHAOS_CI_SOCKETS || 300);
const FAULTS = ["baseline", "gateway-kill", "app-slow", "abuse", "valkey-restart"];
let result;

test(`reduced fault matrix: ${SOCKETS} sockets, ${FAULTS.join(", ")}`, { timeout: 900000 }, async (t) => {
  result = await runMatrix({
    sockets: SOCKETS,
    small: true,
    ids: FAULTS,
    dir: path.join(process.env.TEST_OUTPUT_DIR || "/tmp", "chaos", "matrix"),
    log: (m) => t.diagnostic(m),
  });
  for (const row of result.rows) {
    const c = row.check;
    t.diagnostic(
      `${row.name}: back ${row.ok ? "all" : `missing ${row.notBack}`} after ${row.allBackMs} ms, recovered ${c.sessions.recovered} fresh ${c.sessions.fresh}, ` +
        `lost ${c.lost}+${c.lostEverywhere}, dup ${c.duplicates}, control disconnects ${c.controlDisconnects}, app in flight ${JSON.stringify(row.appInFlightMax)}` +
        `${row.abuse ? `, abusers ${JSON.stringify(row.abuse)}` : ""}`,
    );
  }
  for (const row of result.rows) {
    const c = row.check;
    assert.ok(row.ok, `${row.name}: every client back (missing ${row.notBack})`);
    assert.equal(c.lost, 0, `${row.name}: no logged message skipped: ${c.examples.join("; ")}`);
    assert.equal(c.duplicates + c.reordered + c.leaked + c.offsetConflicts, 0, `${row.name}: once, in order, to members only`);
    assert.equal(row.panics, 0, `${row.name}: no panic`);
    if (row.storm) assert.equal(c.controlDisconnects, 0, `${row.name}: the control group was not touched`);
  }
  const kill = result.rows.find((r) => r.id === "gateway-kill");
  assert.ok(kill.check.sessions.recovered > 0, "clients of the killed gateway recovered on the other");
  const abuse = result.rows.find((r) => r.id === "abuse").abuse;
  assert.ok(abuse["non-reader: disconnected by the server"] === 1, `the client that stopped reading was cut off: ${JSON.stringify(abuse)}`);
  assert.equal(result.check.total.connectedAtEnd, SOCKETS, "every client connected at the end");
});

// Known failures (RELIABILITY.md, "Open findings"): they run and report, and turn into plain
// tests once fixed.
test("no confirmed message is lost anywhere across the reduced matrix", { todo: "emitter messages Valkey sent to dead subscriber connections (restart, abuse flood) reach nobody" }, () => {
  assert.ok(result);
  assert.equal(result.check.total.lostEverywhere, 0);
});

test("every client of the killed gateway was recovered", () => {
  assert.equal(result.rows.find((r) => r.id === "gateway-kill").check.sessions.fresh, 0);
});

test("at most one app call in flight per session and per user on an instance", { todo: "fixed in src/app/single_flight.rs (a lookup after a forget waits for the call in flight); a todo until the full matrix confirms it" }, () => {
  for (const row of result.rows.filter((r) => r.appInFlightMax)) {
    assert.ok(row.appInFlightMax.session <= 1 && row.appInFlightMax.memberships <= 1, `${row.name}: ${JSON.stringify(row.appInFlightMax)} ${JSON.stringify(row.appOverlaps)}`);
  }
});
