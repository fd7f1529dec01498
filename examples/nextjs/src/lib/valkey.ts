// The app's one Valkey client (REDIS_URL, the same Valkey the gateways share), used by the
// emitter (realtime.ts) and to read presence (presence-store.ts).
import "server-only";
import { Redis } from "ioredis";

const globalKey = Symbol.for("socket-gateway-example.valkey");
type Holder = { [globalKey]?: Redis };

export function valkeyUrl(): string {
  return process.env.REDIS_URL || "redis://127.0.0.1:6379";
}

export function getValkey(): Redis {
  const holder = globalThis as Holder;
  holder[globalKey] ??= new Redis(valkeyUrl(), {
    // A request that needs Valkey fails fast rather than hanging while it is down; emits made
    // meanwhile are queued and sent on reconnect (ioredis' offline queue).
    maxRetriesPerRequest: 2,
    commandTimeout: 2000,
    connectionName: "nextjs-app",
    lazyConnect: false,
  });
  return holder[globalKey];
}

/** The gateway's `redis.prefix` (default socket.io): the emitter's channels and presence keys use it. */
export function gatewayPrefix(): string {
  return process.env.GATEWAY_REDIS_PREFIX || "socket.io";
}
