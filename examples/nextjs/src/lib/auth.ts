// better-auth (email + password) on the app's database. The gateway calls this app's
// GET /api/auth/get-session?disableCookieCache=true&disableRefresh=true with the browser's cookie,
// so nothing here is gateway-specific except two things:
// - the rate limiter does not count get-session (every socket connect calls it, from the
//   gateway's address), and
// - a deleted session (sign-out, revocation, expiry) disconnects that user's sockets at once
//   (the gateway forgets its cached answer for them too); other sessions of the user reconnect
//   by themselves (socket-client.ts), the signed-out one is refused.
import "server-only";
import { betterAuth, type BetterAuthOptions } from "better-auth";
import { nextCookies } from "better-auth/next-js";
import { getDb } from "./db";
import { joinDefaultWorkspace } from "./chat";
import { disconnectUser } from "./realtime";

const DEV_SECRET = "socket-gateway-example-dev-secret-change-me-0123456789";

function secret(): string {
  const s = process.env.BETTER_AUTH_SECRET;
  if (s) return s;
  if (process.env.NODE_ENV === "production" && process.env.NEXT_PHASE !== "phase-production-build") {
    throw new Error("BETTER_AUTH_SECRET is not set (32+ random characters; e.g. `openssl rand -base64 32`)");
  }
  return DEV_SECRET;
}

function list(value: string | undefined): string[] {
  return (value ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

export function authOptions(): BetterAuthOptions {
  const baseURL = process.env.BETTER_AUTH_URL || process.env.NEXT_PUBLIC_APP_URL || undefined;
  return {
    baseURL,
    secret: secret(),
    database: getDb().authDatabase,
    emailAndPassword: { enabled: true, minPasswordLength: 8 },
    trustedOrigins: list(process.env.TRUSTED_ORIGINS),
    telemetry: { enabled: false },
    rateLimit: {
      // On in production by default; AUTH_RATE_LIMIT=off for test runs that sign many users up.
      enabled: process.env.AUTH_RATE_LIMIT === "off" ? false : undefined,
      customRules: { "/get-session": false },
    },
    databaseHooks: {
      user: {
        create: {
          after: async (user) => {
            await joinDefaultWorkspace(user.id);
          },
        },
      },
      session: {
        delete: {
          after: async (session) => {
            await disconnectUser(session.userId);
          },
        },
      },
    },
    // Last, as better-auth asks: Set-Cookie from server actions and server components.
    plugins: [nextCookies()],
  };
}

const globalKey = Symbol.for("socket-gateway-example.auth");
type Auth = ReturnType<typeof betterAuth>;
type Holder = { [globalKey]?: Auth };

/** The better-auth instance (one per process). */
export function getAuth(): Auth {
  const holder = globalThis as Holder;
  holder[globalKey] ??= betterAuth(authOptions());
  return holder[globalKey];
}
