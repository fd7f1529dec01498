// POST /api/realtime/events/<event> (contract): the gateway forwards message:send and
// message:delete here with the socket's cookie, as {event, args, socketId, userId}. The answer's
// `ack` goes back to the sender and its `emit` list is broadcast by the gateway.
//   200 {ack, emit: [{room, event, data}]}
//   400 {error: "bad_payload", detail}   401 {error: "unauthenticated"}   403 {error: "not_member" |
//   "not_author" | "user_mismatch"}   404 {error: "unknown_event" | "not_found"}   413 {error: "too_large"}
import { findMessage, insertMessage, isChannelMember, isParticipant, softDeleteMessage, type Target } from "@/lib/chat";
import { HttpError, handle, idParam, isObject, json, readJson, requireUser } from "@/lib/http";
import { messageRoom } from "@/lib/realtime";
import { checkPayload } from "@/lib/validate";

type Handler = (userId: string, payload: unknown) => Promise<{ ack: unknown; emit: { room: string; event: string; data: unknown }[] }>;

const handlers: Record<string, Handler> = {
  async "message:send"(userId, payload) {
    const p = checkPayload("message:send", payload);
    if (!p.ok) throw new HttpError(400, "bad_payload", p.detail);
    const { content, clientId } = p.value;
    if (content.trim().length === 0) throw new HttpError(400, "bad_payload", "content is blank");
    // The schema let exactly one of the two through.
    const target: Target = typeof p.value.channelId === "string" ? { channelId: p.value.channelId } : { conversationId: p.value.conversationId as string };
    const member = "channelId" in target ? await isChannelMember(target.channelId, userId) : await isParticipant(target.conversationId, userId);
    if (!member) throw new HttpError(403, "not_member");
    const message = await insertMessage(target, userId, content, clientId);
    return { ack: { ok: true, message }, emit: [{ room: messageRoom(message), event: "message:new", data: message }] };
  },

  async "message:delete"(userId, payload) {
    const p = checkPayload("message:delete", payload);
    if (!p.ok) throw new HttpError(400, "bad_payload", p.detail);
    const message = await findMessage(p.value.messageId);
    if (!message) throw new HttpError(404, "not_found");
    if (message.author.id !== userId) throw new HttpError(403, "not_author");
    await softDeleteMessage(message.id);
    const data = message.channelId ? { messageId: message.id, channelId: message.channelId } : { messageId: message.id, conversationId: message.conversationId };
    return { ack: { ok: true }, emit: [{ room: messageRoom(message), event: "message:deleted", data }] };
  },
};

export async function POST(req: Request, ctx: { params: Promise<{ event: string }> }) {
  return handle("events", async () => {
    const { event } = await ctx.params;
    const handler = Object.hasOwn(handlers, event) ? handlers[event] : undefined;
    if (!handler) throw new HttpError(404, "unknown_event");
    const user = await requireUser(req);
    const body = await readJson(req);
    if (!isObject(body)) throw new HttpError(400, "bad_payload", "the body must be {event, args, socketId, userId}");
    if (body.event !== undefined && body.event !== event) throw new HttpError(400, "bad_payload", "body.event differs from the path");
    if (idParam(body.userId, "userId") !== user.id) throw new HttpError(403, "user_mismatch");
    if (!Array.isArray(body.args)) throw new HttpError(400, "bad_payload", "args must be an array");
    return json(await handler(user.id, body.args[0]));
  });
}
