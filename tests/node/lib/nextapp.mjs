// The Next.js example (examples/nextjs) as a test server: `next start` of its production build on a
// free 127.0.0.1 port, with a fresh SQLite file, pointed at a given Valkey, plus helpers to sign
// users up and call its routes over real HTTP. The build comes first: `bash scripts/nextjs.sh build`
// (scripts/test.sh runs it); without it the tests fail with that instruction rather than skip.
// Never print cookie values: they are bearer secrets even in tests.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { appRequest, cookieHeaderFrom } from "./app.mjs";
import { freePort, repoRoot, startProcess, stopProcess } from "./procs.mjs";

export const nextAppDir = path.join(repoRoot, "examples/nextjs");
const nextBin = path.join(nextAppDir, "node_modules/next/dist/bin/next");
export const TEST_SECRET = "socket-gateway-nextjs-test-secret-0123456789abcdef";

/** Throws a clear error unless examples/nextjs is installed and built. */
export function assertBuilt() {
  if (!fs.existsSync(nextBin)) throw new Error(`${nextBin} missing: run \`bash scripts/setup.sh\` (npm ci in examples/nextjs)`);
  if (!fs.existsSync(path.join(nextAppDir, ".next/BUILD_ID"))) {
    throw new Error("examples/nextjs has no production build: run `bash scripts/nextjs.sh build` first");
  }
}

/**
 * Starts `next start` for examples/nextjs. `publicUrl` is the origin browsers use (nginx's in the
 * end-to-end tests; default the app's own). Resolves, once the app answers (its schema migrated),
 * to {url, publicUrl, port, proc, dbFile, output(), stop()}.
 */
export async function startNextApp({ redisUrl, publicUrl, env = {}, timeoutMs = 60000 } = {}) {
  assertBuilt();
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "nextjs-app-test-"));
  const dbFile = path.join(tmp, "chat.sqlite");
  const base = publicUrl ?? url;
  const proc = await startProcess(process.execPath, [nextBin, "start", "-p", String(port), "-H", "127.0.0.1"], {
    cwd: nextAppDir,
    env: {
      NODE_ENV: "production",
      NEXT_TELEMETRY_DISABLED: "1",
      DATABASE_URL: `file:${dbFile}`,
      REDIS_URL: redisUrl ?? "redis://127.0.0.1:9",
      BETTER_AUTH_SECRET: TEST_SECRET,
      BETTER_AUTH_URL: base,
      TRUSTED_ORIGINS: [...new Set([new URL(base).origin, new URL(url).origin])].join(","),
      // The tests sign many users up from one address within seconds.
      AUTH_RATE_LIMIT: "off",
      ...env,
    },
    ready: /Ready in/,
    timeoutMs,
    name: "next",
  });
  const stop = async () => {
    await stopProcess(proc);
    fs.rmSync(tmp, { recursive: true, force: true });
  };
  try {
    // The first request runs instrumentation (the migrations): wait until a contract route answers.
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await appRequest(url, "/api/realtime/memberships").catch((e) => ({ status: 0, text: e.message }));
      if (r.status === 401) break;
      if (Date.now() > deadline || proc.exited) throw new Error(`next start did not answer 401 on memberships (last: ${r.status} ${r.text?.slice(0, 200)}):\n${proc.output.join("").slice(-3000)}`);
      await new Promise((res) => setTimeout(res, 200));
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, publicUrl: base, port, proc, dbFile, output: () => proc.output.join(""), stop };
}

/**
 * Signs a new user up through better-auth's HTTP API at `baseUrl`; resolves to {cookie, user}.
 * `origin` is sent as Origin (better-auth checks it on POSTs that carry cookies).
 */
export async function signUp(baseUrl, { name, email, password = "correct-horse-battery" }, { origin } = {}) {
  const r = await appRequest(baseUrl, "/api/auth/sign-up/email", { method: "POST", body: { name, email, password }, origin: origin ?? new URL(baseUrl).origin });
  const cookie = cookieHeaderFrom(r.headers);
  if (r.status !== 200 || !cookie) throw new Error(`sign-up of ${email}: ${r.status} ${r.text.slice(0, 200)}`);
  return { cookie, user: r.body.user };
}

/** A JSON call to the app with a cookie: {status, body}. POSTs and DELETEs carry the app's Origin. */
export function call(baseUrl, method, pathAndQuery, { cookie, body } = {}) {
  return appRequest(baseUrl, pathAndQuery, { method, cookie, body, origin: method === "GET" ? null : new URL(baseUrl).origin });
}
