// The app side of the gateway contract (/api/realtime/*), the message list (/api/messages) and the
// test-only routes (/test/*). Every contract route authenticates the forwarded Cookie with better-auth
// (cookie cache and refresh disabled), exactly like the gateway's own get-session call.
import { randomUUID } from "node:crypto";
import { fromNodeHeaders } from "better-auth/node";

export const MAX_CONTENT = 4000;
const MAX_BODY = 1 << 20;

export function sendJson(res, status, body, headers = {}) {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "cache-control": "no-store",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

export class HttpError extends Error {
  constructor(status, body) {
    super(body?.error ?? `http ${status}`);
    this.status = status;
    this.body = body;
  }
}

export function readJson(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on("data", (c) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new HttpError(413, { error: "too_large" }));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      if (!text.trim()) return resolve(undefined);
      try {
        resolve(JSON.parse(text));
      } catch {
        reject(new HttpError(400, { error: "bad_payload", detail: "body is not JSON" }));
      }
    });
    req.on("error", reject);
  });
}

const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const nonEmptyString = (v) => typeof v === "string" && v.length > 0;

/** Builds the route table. `auth` is the better-auth instance, `store` from db.mjs, `ctl` the fault/stats state. */
export function makeRoutes({ auth, store, ctl, users }) {
  /** The session's user id, or null. Never logs anything. */
  async function sessionUserId(req) {
    const session = await auth.api.getSession({
      headers: fromNodeHeaders(req.headers),
      query: { disableCookieCache: true, disableRefresh: true },
    });
    return session?.user?.id ?? null;
  }

  async function requireUser(req) {
    const userId = await sessionUserId(req);
    if (!userId) throw new HttpError(401, { error: "unauthenticated" });
    return userId;
  }

  // ---- /api/realtime/memberships
  async function memberships(req, res) {
    const userId = await requireUser(req);
    sendJson(res, 200, store.memberships(userId));
  }

  // ---- /api/realtime/authorize?room=
  async function authorize(req, res, url) {
    const userId = await requireUser(req);
    const room = url.searchParams.get("room");
    const m = typeof room === "string" ? /^(user|workspace|channel|dm):(.+)$/s.exec(room) : null;
    if (!m) return sendJson(res, 400, { error: "bad_room", room });
    const [, kind, id] = m;
    let allowed;
    let reason;
    switch (kind) {
      case "user":
        allowed = id === userId;
        reason = "not_self";
        break;
      case "workspace":
        allowed = store.isWorkspaceMember(id, userId);
        reason = "not_member";
        break;
      case "channel":
        allowed = store.isChannelMember(id, userId);
        reason = "not_member";
        break;
      case "dm":
        allowed = store.isParticipant(id, userId);
        reason = "not_member";
        break;
    }
    sendJson(res, 200, allowed ? { userId, room, allowed } : { userId, room, allowed, reason });
  }

  // ---- /api/realtime/events/<name>
  const eventHandlers = {
    "message:send": (userId, args) => {
      const p = args[0];
      if (!isObj(p)) throw new HttpError(400, { error: "bad_payload", detail: "args[0] must be an object" });
      const hasChannel = p.channelId !== undefined && p.channelId !== null;
      const hasConv = p.conversationId !== undefined && p.conversationId !== null;
      if (hasChannel === hasConv) {
        throw new HttpError(400, { error: "bad_payload", detail: "exactly one of channelId, conversationId" });
      }
      const target = hasChannel ? p.channelId : p.conversationId;
      if (!nonEmptyString(target)) throw new HttpError(400, { error: "bad_payload", detail: "target id must be a non-empty string" });
      if (typeof p.content !== "string" || p.content.trim().length === 0) {
        throw new HttpError(400, { error: "bad_payload", detail: "content must be a non-empty string" });
      }
      if (p.content.length > MAX_CONTENT) {
        throw new HttpError(400, { error: "bad_payload", detail: `content longer than ${MAX_CONTENT} characters` });
      }
      if (p.clientId !== undefined && p.clientId !== null && (typeof p.clientId !== "string" || p.clientId.length > 200)) {
        throw new HttpError(400, { error: "bad_payload", detail: "clientId must be a string of at most 200 characters" });
      }
      const member = hasChannel ? store.isChannelMember(target, userId) : store.isParticipant(target, userId);
      if (!member) throw new HttpError(403, { error: "not_member" });
      const message = store.insertMessage({
        id: randomUUID(),
        channelId: hasChannel ? target : null,
        conversationId: hasConv ? target : null,
        authorId: userId,
        content: p.content,
        clientId: p.clientId ?? null,
        createdAt: new Date().toISOString(),
      });
      const room = hasChannel ? `channel:${target}` : `dm:${target}`;
      return { ack: { ok: true, message }, emit: [{ room, event: "message:new", data: message }] };
    },
    "message:delete": (userId, args) => {
      const p = args[0];
      if (!isObj(p) || !nonEmptyString(p.messageId)) {
        throw new HttpError(400, { error: "bad_payload", detail: "args[0] must be {messageId}" });
      }
      const msg = store.message(p.messageId);
      if (!msg) throw new HttpError(404, { error: "not_found" });
      if (msg.authorId !== userId) throw new HttpError(403, { error: "not_author" });
      store.softDelete(msg.id);
      const data = { messageId: msg.id };
      let room;
      if (msg.channelId) {
        data.channelId = msg.channelId;
        room = `channel:${msg.channelId}`;
      } else {
        data.conversationId = msg.conversationId;
        room = `dm:${msg.conversationId}`;
      }
      return { ack: { ok: true }, emit: [{ room, event: "message:deleted", data }] };
    },
  };

  async function events(req, res, url) {
    let name;
    try {
      name = decodeURIComponent(url.pathname.slice("/api/realtime/events/".length));
    } catch {
      throw new HttpError(400, { error: "bad_payload", detail: "bad event name" });
    }
    const body = await readJson(req);
    const userId = await requireUser(req);
    if (!isObj(body)) throw new HttpError(400, { error: "bad_payload", detail: "body must be {event, args, socketId, userId}" });
    if (body.userId !== userId) throw new HttpError(401, { error: "user_mismatch" });
    if (body.event !== undefined && body.event !== name) {
      throw new HttpError(400, { error: "bad_payload", detail: "body.event differs from the path" });
    }
    const handler = Object.hasOwn(eventHandlers, name) ? eventHandlers[name] : null;
    if (!handler) throw new HttpError(404, { error: "unknown_event", event: name });
    const args = body.args === undefined ? [] : body.args;
    if (!Array.isArray(args)) throw new HttpError(400, { error: "bad_payload", detail: "args must be an array" });
    sendJson(res, 200, handler(userId, args));
  }

  // ---- /api/messages?channelId=|conversationId=
  async function messages(req, res, url) {
    const userId = await requireUser(req);
    const channelId = url.searchParams.get("channelId");
    const conversationId = url.searchParams.get("conversationId");
    if (!!channelId === !!conversationId) {
      throw new HttpError(400, { error: "bad_payload", detail: "exactly one of channelId, conversationId" });
    }
    if (channelId) {
      if (!store.isChannelMember(channelId, userId)) throw new HttpError(403, { error: "not_member" });
      return sendJson(res, 200, { messages: store.channelMessages(channelId) });
    }
    if (!store.isParticipant(conversationId, userId)) throw new HttpError(403, { error: "not_member" });
    sendJson(res, 200, { messages: store.conversationMessages(conversationId) });
  }

  // ---- /test/*
  const testRoutes = {
    "GET /test/users": (req, res) => sendJson(res, 200, users),
    "POST /test/memberships": async (req, res) => {
      const body = await readJson(req);
      const r = store.setMembership(isObj(body) ? body : {});
      sendJson(res, r.status, r.body);
    },
    "POST /test/revoke-user-sessions": async (req, res) => {
      const body = await readJson(req);
      if (!isObj(body) || !nonEmptyString(body.userId)) throw new HttpError(400, { error: "bad_payload", detail: "need {userId}" });
      sendJson(res, 200, { ok: true, revoked: store.revokeUserSessions(body.userId) });
    },
    "GET /test/fault": (req, res) => sendJson(res, 200, ctl.describeFault()),
    "GET /test/forwarded-for": (req, res) => sendJson(res, 200, ctl.forwardedFor()),
    "GET /test/max-in-flight": (req, res) => sendJson(res, 200, ctl.maxInFlight()),
    "POST /test/fault": async (req, res) => {
      const body = await readJson(req);
      const r = ctl.setFault(isObj(body) ? body : {});
      sendJson(res, r.status, r.body);
    },
    "GET /test/stats": (req, res) => sendJson(res, 200, ctl.stats()),
    "GET /test/inflight": (req, res) => sendJson(res, 200, ctl.inFlight()),
    "POST /test/stats/reset": (req, res) => {
      ctl.resetStats();
      sendJson(res, 200, { ok: true });
    },
  };

  return { memberships, authorize, events, messages, testRoutes };
}
