// The app's own tables (better-auth keeps its user, session, account and verification tables in
// the same database). Column names are snake_case in SQL and camelCase here (CamelCasePlugin).
import type { Generated, Selectable } from "kysely";

export interface WorkspaceTable {
  id: string;
  name: string;
  createdAt: string;
}

export interface WorkspaceMemberTable {
  workspaceId: string;
  userId: string;
  /** "owner" may remove anyone from the workspace's channels; the first member is the owner. */
  role: "owner" | "member";
  joinedAt: string;
}

export interface ChannelTable {
  id: string;
  workspaceId: string;
  name: string;
  createdBy: string | null;
  createdAt: string;
}

export interface ChannelMemberTable {
  channelId: string;
  userId: string;
  addedAt: string;
}

export interface ConversationTable {
  id: string;
  workspaceId: string;
  createdAt: string;
}

export interface ConversationParticipantTable {
  conversationId: string;
  userId: string;
}

export interface MessageTable {
  /** Insertion order: what history is sorted by. */
  seq: Generated<number>;
  id: string;
  channelId: string | null;
  conversationId: string | null;
  authorId: string;
  content: string;
  clientId: string | null;
  createdAt: string;
  deletedAt: string | null;
}

/** better-auth's user table, read only (names, for messages and member lists). */
export interface AuthUserTable {
  id: string;
  name: string;
  email: string;
}

export interface AppDatabase {
  workspace: WorkspaceTable;
  workspaceMember: WorkspaceMemberTable;
  channel: ChannelTable;
  channelMember: ChannelMemberTable;
  conversation: ConversationTable;
  conversationParticipant: ConversationParticipantTable;
  message: MessageTable;
  user: AuthUserTable;
}

export type MessageRow = Selectable<MessageTable>;
