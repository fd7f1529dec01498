// Baseline (a) of the benchmarks: the seed's own design, written fresh from its plan. A Node
// socket.io 4.8 server with @socket.io/redis-adapter (ioredis pub + duplicated sub client),
// connection state recovery on (2 min), CORS from NEXT_PUBLIC_APP_URL, an auth middleware that
// checks the browser's cookie, and the contract's rooms (user:, workspace:, channel:, dm:).
//
// Where the seed called better-auth and the database in-process, this server makes the same
// HTTP calls to the app as the gateway (app contract): get-session, then memberships. Both run
// in the middleware, and the rooms are joined synchronously in the "connection" handler, so a
// client that got its CONNECT answer is in its rooms (as with the gateway); the seed's
// joinUserRooms queried the database after "connection" instead. The chat events forward to
// the app's event route like the gateway does (unused by the benchmarks, kept for a fair
// shape).
//
// Environment: PORT (0 = any), HOST (default 127.0.0.1), APP_URL, REDIS_URL,
// NEXT_PUBLIC_APP_URL. Prints `listening on http://HOST:PORT` when ready. With --expose-gc,
// GET /bench/gc runs a full garbage collection (the benchmark calls it before reading RSS).
import http from "node:http";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-adapter";
import { Redis } from "ioredis";

const env = process.env;
const PORT = Number(env.PORT ?? 3000);
const HOST = env.HOST || "127.0.0.1";
const APP_URL = (env.APP_URL || "http://127.0.0.1:3000").replace(/\/$/, "");
const REDIS_URL = env.REDIS_URL || "redis://localhost:6379";
const APP_TIMEOUT_MS = 3000;

// ---- Redis adapter (src/server/socket/adapter.ts of the plan): null when Valkey is unreachable.
async function createRedisAdapter() {
  const pubClient = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 3 });
  const subClient = pubClient.duplicate();
  try {
    await Promise.all([pubClient.connect(), subClient.connect()]);
    return createAdapter(pubClient, subClient);
  } catch (err) {
    console.warn(`Redis not available (${err.message}): in-memory adapter`);
    pubClient.disconnect();
    subClient.disconnect();
    return null;
  }
}

// ---- app calls (the app contract), with the browser's cookie
async function appCall(socketOrHeaders, path, { method = "GET", body } = {}) {
  const h = socketOrHeaders.handshake?.headers ?? socketOrHeaders;
  const headers = { cookie: h.cookie ?? "" };
  const addr = socketOrHeaders.handshake?.address;
  if (addr) headers["x-forwarded-for"] = addr;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(APP_URL + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    redirect: "manual",
    signal: AbortSignal.timeout(APP_TIMEOUT_MS),
  });
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {}
  return { status: res.status, body: json };
}

function connectError(message, data) {
  const err = new Error(message);
  err.data = data;
  return err;
}
const invalidSession = () => connectError("Invalid session", { code: "INVALID_SESSION" });
const authUnavailable = () => connectError("Auth unavailable", { code: "AUTH_UNAVAILABLE", retryable: true });

// ---- rooms (src/server/socket/rooms.ts of the plan)
export const getRoomName = {
  channel: (id) => `channel:${id}`,
  conversation: (id) => `dm:${id}`,
  workspace: (id) => `workspace:${id}`,
  user: (id) => `user:${id}`,
};

function roomsFromMemberships(m) {
  return [
    getRoomName.user(m.userId),
    ...m.workspaces.map(getRoomName.workspace),
    ...m.channels.map((c) => getRoomName.channel(c.id)),
    ...m.conversations.map((c) => getRoomName.conversation(c.id)),
  ];
}

// ---- auth middleware (src/server/socket/middleware/auth.ts of the plan)
async function authMiddleware(socket, next) {
  const cookie = socket.handshake.headers.cookie;
  if (!cookie) return next(invalidSession());
  try {
    const s = await appCall(socket, "/api/auth/get-session?disableCookieCache=true&disableRefresh=true");
    if (s.status !== 200) return next(authUnavailable());
    if (!s.body?.user?.id) return next(invalidSession());
    socket.data.userId = s.body.user.id;
    socket.data.user = s.body.user;
    const m = await appCall(socket, "/api/realtime/memberships");
    if (m.status === 401) return next(invalidSession());
    if (m.status !== 200 || m.body?.userId !== socket.data.userId) return next(authUnavailable());
    socket.data.rooms = roomsFromMemberships(m.body);
    next();
  } catch {
    next(authUnavailable());
  }
}

const ROOM_RE = /^(user|workspace|channel|dm):.+$/s;

// ---- handlers (src/server/socket/index.ts of the plan)
function setupSocketHandlers(io) {
  io.use(authMiddleware);
  io.on("connection", (socket) => {
    socket.join(socket.data.rooms);

    const forward = (event) => async (payload, ack) => {
      try {
        const r = await appCall(socket, `/api/realtime/events/${encodeURIComponent(event)}`, {
          method: "POST",
          body: { event, args: [payload], socketId: socket.id, userId: socket.data.userId },
        });
        if (r.status !== 200) {
          const error = { code: "APP_REFUSED", message: r.body?.error ?? `status ${r.status}` };
          if (typeof ack === "function") ack({ ok: false, error });
          else socket.emit("error", error);
          return;
        }
        for (const e of r.body?.emit ?? []) io.to(e.room).emit(e.event, e.data);
        if (typeof ack === "function") ack(r.body?.ack);
      } catch {
        if (typeof ack === "function") ack({ ok: false, error: { code: "AUTH_UNAVAILABLE" } });
      }
    };
    socket.on("message:send", forward("message:send"));
    socket.on("message:delete", forward("message:delete"));

    const typing = (isTyping) => (payload) => {
      const room = payload?.channelId
        ? getRoomName.channel(payload.channelId)
        : payload?.conversationId
          ? getRoomName.conversation(payload.conversationId)
          : null;
      if (!room || !socket.rooms.has(room)) return;
      socket.to(room).emit("typing:update", {
        room,
        userId: socket.data.userId,
        user: { id: socket.data.userId, name: socket.data.user?.name },
        isTyping,
      });
    };
    socket.on("typing:start", typing(true));
    socket.on("typing:stop", typing(false));

    socket.on("room:join", async (payload, ack) => {
      const room = payload?.room;
      const reply = typeof ack === "function" ? ack : () => {};
      if (typeof room !== "string" || !ROOM_RE.test(room)) return reply({ ok: false, error: "bad_payload" });
      try {
        const r = await appCall(socket, `/api/realtime/authorize?room=${encodeURIComponent(room)}`);
        if (r.status === 200 && r.body?.allowed) {
          socket.join(room);
          return reply({ ok: true });
        }
        reply({ ok: false, error: r.body?.reason ?? "not_allowed" });
      } catch {
        reply({ ok: false, error: "unavailable" });
      }
    });
    socket.on("room:leave", (payload, ack) => {
      const room = payload?.room;
      if (typeof room === "string") socket.leave(room);
      if (typeof ack === "function") ack({ ok: true });
    });
    socket.on("disconnect", () => {
      // Presence would clean up here (a later plan of the seed).
    });
  });
}

// ---- custom server (src/server/index.ts of the plan, without Next.js)
const httpServer = http.createServer((req, res) => {
  if (req.url === "/bench/gc" && typeof global.gc === "function") {
    global.gc();
    res.writeHead(200, { "content-type": "text/plain" });
    return res.end("ok");
  }
  res.writeHead(404);
  res.end();
});
const io = new Server(httpServer, {
  cors: { origin: env.NEXT_PUBLIC_APP_URL || false, credentials: true },
  connectionStateRecovery: { maxDisconnectionDuration: 2 * 60 * 1000 },
});
const adapter = await createRedisAdapter();
if (adapter) io.adapter(adapter);
setupSocketHandlers(io);
httpServer.listen(PORT, HOST, () => {
  const { port } = httpServer.address();
  process.stdout.write(`listening on http://${HOST}:${port}\n`);
});
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    io.close();
    process.exit(0);
  });
}
