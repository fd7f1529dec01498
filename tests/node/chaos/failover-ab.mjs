// Side-by-side failovers under different gateway settings (RELIABILITY.md, "The failover
// storm"): for each round and each arm (gateway environment), a fresh stack and fleet, a short
// baseline, one gateway SIGKILLed, and the time until every client is back. Arms alternate, so
// a busy machine slows each about as much; the table gives each arm's figures and the ratio of
// its time to the first arm's.
//
//   node tests/node/chaos/failover-ab.mjs [--sockets 1000] [--rounds 2]
//     [--arms '{"unbounded":{"GATEWAY_APP__MAX_AUTH_CALLS_IN_FLIGHT":"100000"},"defaults":{}}']
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { repoRoot } from "../lib/procs.mjs";
import { faults } from "./faults.mjs";
import { finishRun, runFault, runQuiet, startRun, stopRun } from "./run.mjs";

export async function failoverOnce({ dir, sockets, env, limitMs = 90000 }) {
  const ctx = await startRun({ dir, sockets, gatewayEnv: env, log: () => {} });
  try {
    await runQuiet(ctx, "baseline", 3000);
    const row = await runFault(ctx, { ...faults().find((f) => f.id === "gateway-kill"), limitMs });
    const { check } = await finishRun(ctx);
    const p = check.phases.find((x) => x.name === row.name);
    return {
      allBackMs: row.ok ? row.allBackMs : null,
      notBack: row.notBack,
      reconnected: row.reconnected,
      recovered: p.sessions.recovered,
      fresh: p.sessions.fresh,
      authUnavailable: row.failures["connect_error: Auth unavailable"] ?? 0,
      lost: check.total.lost + check.total.lostEverywhere,
      duplicates: check.total.duplicates,
      load: fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" "),
    };
  } finally {
    await stopRun(ctx);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const argv = process.argv.slice(2);
  const opt = (k, d) => {
    const i = argv.indexOf(k);
    return i >= 0 ? argv[i + 1] : d;
  };
  const sockets = Number(opt("--sockets", 1000));
  const rounds = Number(opt("--rounds", 2));
  const arms = JSON.parse(opt("--arms", '{"unbounded":{"GATEWAY_APP__MAX_AUTH_CALLS_IN_FLIGHT":"100000"},"defaults":{}}'));
  const out = path.join(repoRoot, "target/chaos/failover-ab");
  const rows = [];
  for (let r = 1; r <= rounds; r++) {
    for (const [arm, env] of Object.entries(arms)) {
      const res = await failoverOnce({ dir: path.join(out, `${arm}-${r}`), sockets, env });
      rows.push({ round: r, arm, ...res });
      process.stderr.write(`${JSON.stringify(rows.at(-1))}\n`);
    }
  }
  const first = Object.keys(arms)[0];
  const base = (r) => rows.find((x) => x.round === r && x.arm === first)?.allBackMs;
  process.stdout.write(
    "| round | arm | all back after (s) | vs first arm | not back | recovered / fresh | Auth unavailable answers | lost | duplicates | load |\n|---|---|---|---|---|---|---|---|---|---|\n" +
      rows
        .map((x) => {
          const b = base(x.round);
          const ratio = x.allBackMs !== null && b ? `${(x.allBackMs / b).toFixed(2)}×` : "-";
          return `| ${x.round} | ${x.arm} | ${x.allBackMs === null ? "not all" : (x.allBackMs / 1000).toFixed(1)} | ${ratio} | ${x.notBack} | ${x.recovered} / ${x.fresh} | ${x.authUnavailable} | ${x.lost} | ${x.duplicates} | ${x.load} |`;
        })
        .join("\n") +
      "\n",
  );
  process.exit(0);
}
