// The app's data access: workspaces, channels, direct conversations and messages. Everything the
// route handlers, pages and the realtime contract read or write goes through here.
import "server-only";
import { randomUUID } from "node:crypto";
import { getDb } from "./db";
import type { MessageRow } from "./db/schema";
import type { ChannelRef, ChatMessage, ConversationRef, UserRef } from "./socket-events";

export const DEFAULT_WORKSPACE_ID = "acme";
const DEFAULT_CHANNELS = ["general", "random"];
export const HISTORY_LIMIT = 100;
export const CHANNEL_NAME = /^[a-z0-9][a-z0-9-]{0,39}$/;

const now = () => new Date().toISOString();
const app = () => getDb().app;

export interface Memberships {
  userId: string;
  workspaces: string[];
  channels: { id: string; workspaceId: string }[];
  conversations: { id: string; workspaceId: string }[];
}

/** The contract's memberships answer: three indexed lookups by user id. */
export async function memberships(userId: string): Promise<Memberships> {
  const db = app();
  const [workspaces, channels, conversations] = await Promise.all([
    db.selectFrom("workspaceMember").select("workspaceId").where("userId", "=", userId).orderBy("workspaceId").execute(),
    db
      .selectFrom("channelMember as m")
      .innerJoin("channel as c", "c.id", "m.channelId")
      .select(["c.id", "c.workspaceId"])
      .where("m.userId", "=", userId)
      .orderBy("c.id")
      .execute(),
    db
      .selectFrom("conversationParticipant as p")
      .innerJoin("conversation as c", "c.id", "p.conversationId")
      .select(["c.id", "c.workspaceId"])
      .where("p.userId", "=", userId)
      .orderBy("c.id")
      .execute(),
  ]);
  return { userId, workspaces: workspaces.map((w) => w.workspaceId), channels, conversations };
}

export async function isWorkspaceMember(workspaceId: string, userId: string): Promise<boolean> {
  const row = await app().selectFrom("workspaceMember").select("role").where("workspaceId", "=", workspaceId).where("userId", "=", userId).executeTakeFirst();
  return !!row;
}

export async function isChannelMember(channelId: string, userId: string): Promise<boolean> {
  const row = await app().selectFrom("channelMember").select("userId").where("channelId", "=", channelId).where("userId", "=", userId).executeTakeFirst();
  return !!row;
}

export async function isParticipant(conversationId: string, userId: string): Promise<boolean> {
  const row = await app()
    .selectFrom("conversationParticipant")
    .select("userId")
    .where("conversationId", "=", conversationId)
    .where("userId", "=", userId)
    .executeTakeFirst();
  return !!row;
}

// ---- workspaces

/** Adds a new user to the default workspace (created on first use) and its default channels. */
export async function joinDefaultWorkspace(userId: string): Promise<void> {
  await app()
    .transaction()
    .execute(async (tx) => {
      const ts = now();
      await tx
        .insertInto("workspace")
        .values({ id: DEFAULT_WORKSPACE_ID, name: process.env.DEFAULT_WORKSPACE_NAME || "Acme", createdAt: ts })
        .onConflict((oc) => oc.doNothing())
        .execute();
      const first = !(await tx.selectFrom("workspaceMember").select("userId").where("workspaceId", "=", DEFAULT_WORKSPACE_ID).limit(1).executeTakeFirst());
      await tx
        .insertInto("workspaceMember")
        .values({ workspaceId: DEFAULT_WORKSPACE_ID, userId, role: first ? "owner" : "member", joinedAt: ts })
        .onConflict((oc) => oc.doNothing())
        .execute();
      for (const name of DEFAULT_CHANNELS) {
        const id = `${DEFAULT_WORKSPACE_ID}-${name}`;
        await tx
          .insertInto("channel")
          .values({ id, workspaceId: DEFAULT_WORKSPACE_ID, name, createdBy: null, createdAt: ts })
          .onConflict((oc) => oc.doNothing())
          .execute();
        await tx.insertInto("channelMember").values({ channelId: id, userId, addedAt: ts }).onConflict((oc) => oc.doNothing()).execute();
      }
    });
}

export async function workspacesOf(userId: string) {
  return app()
    .selectFrom("workspaceMember as m")
    .innerJoin("workspace as w", "w.id", "m.workspaceId")
    .select(["w.id", "w.name"])
    .where("m.userId", "=", userId)
    .orderBy("w.name")
    .execute();
}

export interface WorkspaceMember extends UserRef {
  name: string;
  role: "owner" | "member";
}

export interface WorkspaceView {
  workspace: { id: string; name: string };
  role: "owner" | "member";
  channels: ChannelRef[];
  conversations: ConversationRef[];
  members: WorkspaceMember[];
}

/** Everything the workspace's sidebar shows to `userId`, or null when not a member. */
export async function workspaceView(workspaceId: string, userId: string): Promise<WorkspaceView | null> {
  const db = app();
  const me = await db
    .selectFrom("workspaceMember as m")
    .innerJoin("workspace as w", "w.id", "m.workspaceId")
    .select(["w.id", "w.name", "m.role"])
    .where("m.workspaceId", "=", workspaceId)
    .where("m.userId", "=", userId)
    .executeTakeFirst();
  if (!me) return null;
  const [channels, members, conversations] = await Promise.all([
    db
      .selectFrom("channelMember as m")
      .innerJoin("channel as c", "c.id", "m.channelId")
      .select(["c.id", "c.workspaceId", "c.name"])
      .where("m.userId", "=", userId)
      .where("c.workspaceId", "=", workspaceId)
      .orderBy("c.name")
      .execute(),
    db
      .selectFrom("workspaceMember as m")
      .innerJoin("user as u", "u.id", "m.userId")
      .select(["u.id", "u.name", "m.role"])
      .where("m.workspaceId", "=", workspaceId)
      .orderBy("u.name")
      .execute(),
    conversationsOf(workspaceId, userId),
  ]);
  return { workspace: { id: me.id, name: me.name }, role: me.role, channels, conversations, members };
}

async function conversationsOf(workspaceId: string, userId: string): Promise<ConversationRef[]> {
  const rows = await app()
    .selectFrom("conversationParticipant as mine")
    .innerJoin("conversation as c", "c.id", "mine.conversationId")
    .innerJoin("conversationParticipant as p", "p.conversationId", "c.id")
    .innerJoin("user as u", "u.id", "p.userId")
    .select(["c.id", "c.workspaceId", "u.id as userId", "u.name"])
    .where("mine.userId", "=", userId)
    .where("c.workspaceId", "=", workspaceId)
    .orderBy("c.createdAt")
    .orderBy("u.name")
    .execute();
  const byId = new Map<string, ConversationRef>();
  for (const r of rows) {
    const conv = byId.get(r.id) ?? { id: r.id, workspaceId: r.workspaceId, participants: [] };
    conv.participants.push({ id: r.userId, name: r.name });
    byId.set(r.id, conv);
  }
  return [...byId.values()];
}

// ---- channels

export async function channel(channelId: string): Promise<(ChannelRef & { createdBy: string | null }) | undefined> {
  return app().selectFrom("channel").select(["id", "workspaceId", "name", "createdBy"]).where("id", "=", channelId).executeTakeFirst();
}

export class ChatError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message?: string,
  ) {
    super(message ?? code);
  }
}

/** Creates a channel in a workspace the user belongs to, with the user as its first member. */
export async function createChannel(workspaceId: string, name: string, userId: string): Promise<ChannelRef> {
  if (!(await isWorkspaceMember(workspaceId, userId))) throw new ChatError(403, "not_member");
  const db = app();
  const taken = await db.selectFrom("channel").select("id").where("workspaceId", "=", workspaceId).where("name", "=", name).executeTakeFirst();
  if (taken) throw new ChatError(409, "name_taken", `#${name} exists already`);
  const ch = { id: randomUUID(), workspaceId, name };
  const ts = now();
  await db.transaction().execute(async (tx) => {
    await tx.insertInto("channel").values({ ...ch, createdBy: userId, createdAt: ts }).execute();
    await tx.insertInto("channelMember").values({ channelId: ch.id, userId, addedAt: ts }).execute();
  });
  return ch;
}

export async function channelMembers(channelId: string): Promise<UserRef[]> {
  return app()
    .selectFrom("channelMember as m")
    .innerJoin("user as u", "u.id", "m.userId")
    .select(["u.id", "u.name"])
    .where("m.channelId", "=", channelId)
    .orderBy("u.name")
    .execute();
}

/** Who may remove others from a channel: its creator and the workspace's owners. */
export async function canManageChannel(ch: { workspaceId: string; createdBy: string | null }, userId: string): Promise<boolean> {
  if (ch.createdBy === userId) return true;
  const row = await app().selectFrom("workspaceMember").select("role").where("workspaceId", "=", ch.workspaceId).where("userId", "=", userId).executeTakeFirst();
  return row?.role === "owner";
}

/** Adds a workspace member to a channel. Resolves to whether it changed anything. */
export async function addChannelMember(channelId: string, userId: string): Promise<boolean> {
  const r = await app().insertInto("channelMember").values({ channelId, userId, addedAt: now() }).onConflict((oc) => oc.doNothing()).executeTakeFirst();
  return Number(r.numInsertedOrUpdatedRows ?? 0) > 0;
}

export async function removeChannelMember(channelId: string, userId: string): Promise<boolean> {
  const r = await app().deleteFrom("channelMember").where("channelId", "=", channelId).where("userId", "=", userId).executeTakeFirst();
  return Number(r.numDeletedRows) > 0;
}

// ---- direct conversations

/** The two-person conversation of `userId` and `otherId` in a workspace, created on first use. */
export async function directConversation(workspaceId: string, userId: string, otherId: string): Promise<{ conversation: ConversationRef; created: boolean }> {
  if (userId === otherId) throw new ChatError(400, "bad_payload", "a conversation needs another member");
  const [mine, theirs] = await Promise.all([isWorkspaceMember(workspaceId, userId), isWorkspaceMember(workspaceId, otherId)]);
  if (!mine) throw new ChatError(403, "not_member");
  if (!theirs) throw new ChatError(404, "unknown_member");
  const db = app();
  const existing = await db
    .selectFrom("conversation as c")
    .innerJoin("conversationParticipant as a", "a.conversationId", "c.id")
    .innerJoin("conversationParticipant as b", "b.conversationId", "c.id")
    .select("c.id")
    .where("c.workspaceId", "=", workspaceId)
    .where("a.userId", "=", userId)
    .where("b.userId", "=", otherId)
    .where((eb) =>
      eb(eb.selectFrom("conversationParticipant as n").select((e) => e.fn.countAll<number>().as("n")).whereRef("n.conversationId", "=", "c.id"), "=", 2),
    )
    .executeTakeFirst();
  let id = existing?.id;
  const created = !id;
  if (!id) {
    id = randomUUID();
    const convId = id;
    await db.transaction().execute(async (tx) => {
      await tx.insertInto("conversation").values({ id: convId, workspaceId, createdAt: now() }).execute();
      await tx
        .insertInto("conversationParticipant")
        .values([
          { conversationId: convId, userId },
          { conversationId: convId, userId: otherId },
        ])
        .execute();
    });
  }
  const participants = await db
    .selectFrom("conversationParticipant as p")
    .innerJoin("user as u", "u.id", "p.userId")
    .select(["u.id", "u.name"])
    .where("p.conversationId", "=", id)
    .orderBy("u.name")
    .execute();
  return { conversation: { id, workspaceId, participants }, created };
}

export async function conversation(conversationId: string) {
  return app().selectFrom("conversation").select(["id", "workspaceId"]).where("id", "=", conversationId).executeTakeFirst();
}

// ---- messages

type Row = MessageRow & { authorName: string | null };

function toMessage(row: Row): ChatMessage {
  const base = { id: row.id, author: { id: row.authorId, name: row.authorName }, content: row.content, createdAt: row.createdAt };
  const extra = row.clientId != null ? { clientId: row.clientId } : {};
  return row.channelId != null
    ? { ...base, channelId: row.channelId, ...extra }
    : { ...base, conversationId: row.conversationId as string, ...extra };
}

function messagesQuery() {
  return app()
    .selectFrom("message as m")
    .leftJoin("user as u", "u.id", "m.authorId")
    .selectAll("m")
    .select("u.name as authorName")
    .where("m.deletedAt", "is", null);
}

export type Target = { channelId: string } | { conversationId: string };

/** The last HISTORY_LIMIT messages of a channel or conversation, oldest first. */
export async function history(target: Target): Promise<ChatMessage[]> {
  let q = messagesQuery();
  q = "channelId" in target ? q.where("m.channelId", "=", target.channelId) : q.where("m.conversationId", "=", target.conversationId);
  const rows = await q.orderBy("m.seq", "desc").limit(HISTORY_LIMIT).execute();
  return rows.reverse().map(toMessage);
}

export async function insertMessage(target: Target, authorId: string, content: string, clientId?: string): Promise<ChatMessage> {
  const id = randomUUID();
  await app()
    .insertInto("message")
    .values({
      id,
      channelId: "channelId" in target ? target.channelId : null,
      conversationId: "conversationId" in target ? target.conversationId : null,
      authorId,
      content,
      clientId: clientId ?? null,
      createdAt: now(),
      deletedAt: null,
    })
    .execute();
  const row = await messagesQuery().where("m.id", "=", id).executeTakeFirstOrThrow();
  return toMessage(row);
}

export async function findMessage(id: string): Promise<ChatMessage | undefined> {
  const row = await messagesQuery().where("m.id", "=", id).executeTakeFirst();
  return row ? toMessage(row) : undefined;
}

export async function softDeleteMessage(id: string): Promise<boolean> {
  const r = await app().updateTable("message").set({ deletedAt: now() }).where("id", "=", id).where("deletedAt", "is", null).executeTakeFirst();
  return Number(r.numUpdatedRows) > 0;
}
