// Server-only emitter helpers: how the app's own code paths (route handlers, server actions,
// jobs) reach open sockets through the gateways, with @socket.io/redis-emitter over Valkey, in the
// wire format of @socket.io/redis-adapter that the gateways speak. Membership changes join or
// leave the user's sockets on every instance at once (the gateway also forgets its cached
// memberships for them), then tell the user's pages.
import "server-only";
import { Emitter } from "@socket.io/redis-emitter";
import type { ChannelRef, ChatMessage, ConversationRef, ServerToClientEvents } from "./socket-events";
import { gatewayPrefix, getValkey } from "./valkey";

const globalKey = Symbol.for("socket-gateway-example.emitter");
type Holder = { [globalKey]?: Emitter<ServerToClientEvents> };

function emitter(): Emitter<ServerToClientEvents> {
  const holder = globalThis as Holder;
  holder[globalKey] ??= new Emitter<ServerToClientEvents>(getValkey(), { key: gatewayPrefix() });
  return holder[globalKey];
}

export const rooms = {
  user: (id: string) => `user:${id}` as const,
  workspace: (id: string) => `workspace:${id}` as const,
  channel: (id: string) => `channel:${id}` as const,
  dm: (id: string) => `dm:${id}` as const,
};

/** The room a message belongs to. */
export function messageRoom(m: { channelId?: string; conversationId?: string }) {
  return m.channelId ? rooms.channel(m.channelId) : rooms.dm(m.conversationId as string);
}

/** Broadcasts a message saved outside message:send (an import, a bot, a job). */
export function broadcastMessage(message: ChatMessage): void {
  emitter().to(messageRoom(message)).emit("message:new", message);
}

/** After adding `userId` to a channel: their open sockets join its room, then their pages list it. */
export function addedToChannel(userId: string, channel: ChannelRef): void {
  const e = emitter();
  e.in(rooms.user(userId)).socketsJoin(rooms.channel(channel.id));
  e.to(rooms.user(userId)).emit("channel:joined", { channel });
}

/** After removing `userId` from a channel: their sockets leave its room at once, then their pages drop it. */
export function removedFromChannel(userId: string, channel: { id: string; workspaceId: string }, reason: "removed" | "left"): void {
  const e = emitter();
  e.in(rooms.user(userId)).socketsLeave(rooms.channel(channel.id));
  e.to(rooms.user(userId)).emit("channel:left", { channelId: channel.id, workspaceId: channel.workspaceId, reason });
}

/** After creating a direct conversation: each participant's sockets join it, then their pages list it. */
export function conversationStarted(conversation: ConversationRef): void {
  const e = emitter();
  for (const p of conversation.participants) {
    e.in(rooms.user(p.id)).socketsJoin(rooms.dm(conversation.id));
    e.to(rooms.user(p.id)).emit("conversation:joined", { conversation });
  }
}

/**
 * After a session ended (sign-out, revocation): every socket of the user is closed. Sockets of
 * the user's other, still valid sessions reconnect by themselves (socket-client.ts); the ended
 * session's cookie is refused.
 */
export async function disconnectUser(userId: string): Promise<void> {
  emitter().in(rooms.user(userId)).disconnectSockets();
}
