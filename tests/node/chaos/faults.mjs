// The faults of the matrix (issue 13), each a step for run.mjs's runFault: what to do, what to
// undo, and what the checker's numbers must be for it. Run one after another on one stack, so
// between two faults the fleet is steady again (every socket connected, none reconnecting).
import { fault as appFault } from "../lib/app.mjs";
import { runAbuse } from "./abuse.mjs";
import { sleep } from "./run.mjs";

/** Every socket except a control group (one in ten) that must stay untouched. */
export const stormSlots = (ctx) => Array.from({ length: ctx.sockets }, (_, i) => i).filter((i) => i % 10 !== 9);

/** A fault that lasts `ms`: `begin(ctx)`, wait, `end(ctx)`. */
const lasting = (ms, begin, end) => async (ctx) => {
  await begin(ctx);
  await sleep(ms);
  await end(ctx);
  return { durationMs: ms };
};

/** A fault that is one action, timed. */
const timed = (act) => async (ctx) => {
  const t0 = Date.now();
  await act(ctx);
  return { durationMs: Date.now() - t0 };
};

/** Every socket but the control group drops its connection at once; all must recover. */
const reconnectStorm = (id, name) => ({
  id,
  name,
  inject: async (ctx) => {
    await ctx.fleet.drop(stormSlots(ctx));
  },
  expect: { lost: 0, duplicates: 0, fresh: 0, controlDisconnects: 0 },
  storm: true,
});

/** The app's fault set (retried: during a storm the app answers its control routes late). */
async function setAppFault(ctx, f) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await appFault(ctx.stack.app.url, f);
    } catch (err) {
      if (attempt >= 10) throw err;
      await sleep(1000);
    }
  }
}

/**
 * A reconnect storm while the app misbehaves: set the app's fault, drop every socket but the
 * control group at once, keep the fault for `holdMs` (connects meanwhile get Auth unavailable
 * and retry), then heal the app and let everyone back.
 */
function appStorm(name, fault, { holdMs }) {
  return {
    name,
    async inject(ctx) {
      await setAppFault(ctx, fault);
      const t0 = Date.now();
      await ctx.fleet.drop(stormSlots(ctx));
      await sleep(holdMs);
      await setAppFault(ctx, { mode: "ok" });
      return { durationMs: Date.now() - t0 };
    },
    expect: { lost: 0, duplicates: 0, controlDisconnects: 0, appInFlightMax: 1 },
    storm: true,
  };
}

/**
 * The faults by id, in the order the full matrix runs them (Valkey's last: losing its data
 * changes what every later fault measures). `small` shortens the waits.
 */
export function faults({ small = false } = {}) {
  const s = (full, reduced) => (small ? reduced : full);
  return [
    {
      id: "baseline",
      name: "baseline (no fault)",
      inject: lasting(s(30000, 8000), () => {}, () => {}),
      expect: { lost: 0, duplicates: 0, reconnects: 0 },
    },
    {
      id: "gateway-kill",
      name: "gateway SIGKILL",
      inject: async (ctx) => {
        await ctx.stack.gws[0].kill();
      },
      after: async (ctx) => {
        await sleep(1000);
        await ctx.stack.gws[0].start();
      },
      expect: { lost: 0, duplicates: 0, fresh: 0 },
    },
    reconnectStorm("reconnect-storm", "reconnect storm (90 % of sockets at once)"),
    {
      id: "gateway-freeze",
      name: `gateway SIGSTOP ${s(30, 10)} s, SIGCONT`,
      inject: lasting(
        s(30000, 10000),
        (ctx) => ctx.stack.gws[0].freeze(),
        (ctx) => ctx.stack.gws[0].thaw(),
      ),
      expect: { lost: 0, duplicates: 0 },
    },
    { id: "app-slow", ...appStorm("app slow (3 s answers) during a reconnect storm", { mode: "slow", delayMs: 3000 }, { holdMs: s(20000, 8000) }) },
    { id: "app-429", ...appStorm("app answering 429 during a reconnect storm", { mode: "error429" }, { holdMs: s(15000, 6000) }) },
    { id: "app-503", ...appStorm("app answering 503 during a reconnect storm", { mode: "error503" }, { holdMs: s(15000, 6000) }) },
    {
      id: "app-down",
      name: "app refusing connections during a reconnect storm",
      async inject(ctx) {
        await ctx.stack.app.stop();
        const t0 = Date.now();
        await ctx.fleet.drop(stormSlots(ctx));
        await sleep(s(15000, 6000));
        await ctx.stack.app.start();
        return { durationMs: Date.now() - t0 };
      },
      expect: { lost: 0, duplicates: 0, controlDisconnects: 0 },
      storm: true,
    },
    {
      id: "abuse",
      name: "abusive clients (slowloris, non-reader, handshake flood, oversized and malformed packets)",
      async inject(ctx) {
        const ms = s(40000, 12000);
        const victim = ctx.abuseVictim;
        const t0 = Date.now();
        const abuse = runAbuse({ gw: ctx.stack.gws[1].addr, edge: ctx.stack.target, victim, valkeyUrl: ctx.stack.valkey.url, ms, slowConns: s(100, 20), floodConcurrency: s(20, 5) });
        // Midway, a storm of the normal clients: they must get back despite the abusers.
        await sleep(ms / 3);
        await ctx.fleet.drop(stormSlots(ctx));
        const { counts } = await abuse;
        return { durationMs: Date.now() - t0, extra: { abuse: counts } };
      },
      expect: { lost: 0, duplicates: 0, controlDisconnects: 0 },
      storm: true,
    },
    {
      id: "valkey-freeze",
      name: "Valkey SIGSTOP 10 s, SIGCONT",
      inject: lasting(
        10000,
        (ctx) => ctx.stack.valkey.pause(),
        (ctx) => ctx.stack.valkey.resume(),
      ),
      expect: { lost: 0, duplicates: 0 },
    },
    {
      id: "valkey-restart",
      name: "Valkey restarted, data kept",
      inject: timed((ctx) => ctx.stack.valkey.restart({ keepData: true, downMs: 1000 })),
      expect: { lost: 0, duplicates: 0 },
    },
    {
      id: "valkey-wipe",
      name: "Valkey restarted empty",
      inject: timed((ctx) => ctx.stack.valkey.restart({ keepData: false, downMs: 1000 })),
      // Recovery must say recovered === false after the log is gone, never replay with a hole:
      // a hole is a loss for the checker.
      expect: { lost: 0, duplicates: 0 },
    },
    {
      id: "partition",
      name: `network partition gateway-Valkey ${s(20, 10)} s, healed`,
      needsNetns: true,
      inject: lasting(
        s(20000, 10000),
        (ctx) => ctx.stack.netns.cut(),
        (ctx) => ctx.stack.netns.heal(),
      ),
      expect: { lost: 0, duplicates: 0 },
    },
    // Sockets connected before the wipe must still be recoverable: their kept sessions were
    // lost with Valkey's data, and only the gateways can write them again.
    reconnectStorm("storm-after-wipe", "reconnect storm after Valkey restarted empty"),
  ];
}
