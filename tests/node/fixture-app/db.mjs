// The fixture app's own tables (workspaces, channels, conversations, messages) and the seed.
// better-auth's tables (user, session, account, verification) live in the same SQLite file and are
// created by better-auth's getMigrations; this module only reads `user` and deletes from `session`.

export const SEED_USERS = ["alice", "bob", "carol", "dave"].map((name) => ({
  key: name,
  email: `${name}@example.com`,
  password: `password-${name}-123`,
  name: name[0].toUpperCase() + name.slice(1),
}));

// Stable ids for everything that is not a user; members are referred to by user key.
export const SEED_WORKSPACES = [
  { id: "w1", name: "Workspace One", members: ["alice", "bob", "carol"] },
  { id: "w2", name: "Workspace Two", members: ["alice", "dave"] },
];
export const SEED_CHANNELS = [
  { id: "c1", workspaceId: "w1", name: "general", members: ["alice", "bob"] },
  { id: "c2", workspaceId: "w1", name: "random", members: ["alice", "carol"] },
  { id: "c3", workspaceId: "w1", name: "dev", members: ["bob", "carol"] },
  { id: "c4", workspaceId: "w2", name: "general", members: ["alice", "dave"] },
];
export const SEED_CONVERSATIONS = [
  { id: "d1", workspaceId: "w1", members: ["alice", "bob"] },
  { id: "d2", workspaceId: "w2", members: ["alice", "dave"] },
];

const SCHEMA = `
CREATE TABLE IF NOT EXISTS workspaces (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS workspace_members (
  workspace_id TEXT NOT NULL REFERENCES workspaces(id),
  user_id TEXT NOT NULL,
  PRIMARY KEY (workspace_id, user_id)
);
CREATE TABLE IF NOT EXISTS channels (
  id TEXT PRIMARY KEY,
  workspace_id TEXT NOT NULL REFERENCES workspaces(id),
  name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS channel_members (
  channel_id TEXT NOT NULL REFERENCES channels(id),
  user_id TEXT NOT NULL,
  PRIMARY KEY (channel_id, user_id)
);
CREATE TABLE IF NOT EXISTS conversations (
  id TEXT PRIMARY KEY,
  workspace_id TEXT NOT NULL REFERENCES workspaces(id)
);
CREATE TABLE IF NOT EXISTS conversation_participants (
  conversation_id TEXT NOT NULL REFERENCES conversations(id),
  user_id TEXT NOT NULL,
  PRIMARY KEY (conversation_id, user_id)
);
CREATE TABLE IF NOT EXISTS messages (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  channel_id TEXT REFERENCES channels(id),
  conversation_id TEXT REFERENCES conversations(id),
  author_id TEXT NOT NULL,
  content TEXT NOT NULL,
  client_id TEXT,
  created_at TEXT NOT NULL,
  deleted_at TEXT
);
CREATE INDEX IF NOT EXISTS messages_channel_idx ON messages(channel_id, seq);
CREATE INDEX IF NOT EXISTS messages_conversation_idx ON messages(conversation_id, seq);
-- The memberships route looks members up by user; the primary keys lead with the room id.
CREATE INDEX IF NOT EXISTS workspace_members_user_idx ON workspace_members(user_id);
CREATE INDEX IF NOT EXISTS channel_members_user_idx ON channel_members(user_id);
CREATE INDEX IF NOT EXISTS conversation_participants_user_idx ON conversation_participants(user_id);
`;

/** Creates the app tables (idempotent). */
export function createAppSchema(db) {
  db.exec(SCHEMA);
}

/** Seeds workspaces, channels, conversations and memberships (idempotent). `ids` maps user key → user id. */
export function seedApp(db, ids) {
  const tx = db.transaction(() => {
    const ws = db.prepare("INSERT OR IGNORE INTO workspaces (id, name) VALUES (?, ?)");
    const wsm = db.prepare("INSERT OR IGNORE INTO workspace_members (workspace_id, user_id) VALUES (?, ?)");
    for (const w of SEED_WORKSPACES) {
      ws.run(w.id, w.name);
      for (const m of w.members) wsm.run(w.id, ids[m]);
    }
    const ch = db.prepare("INSERT OR IGNORE INTO channels (id, workspace_id, name) VALUES (?, ?, ?)");
    const chm = db.prepare("INSERT OR IGNORE INTO channel_members (channel_id, user_id) VALUES (?, ?)");
    for (const c of SEED_CHANNELS) {
      ch.run(c.id, c.workspaceId, c.name);
      for (const m of c.members) chm.run(c.id, ids[m]);
    }
    const cv = db.prepare("INSERT OR IGNORE INTO conversations (id, workspace_id) VALUES (?, ?)");
    const cvp = db.prepare("INSERT OR IGNORE INTO conversation_participants (conversation_id, user_id) VALUES (?, ?)");
    for (const c of SEED_CONVERSATIONS) {
      cv.run(c.id, c.workspaceId);
      for (const m of c.members) cvp.run(c.id, ids[m]);
    }
  });
  tx();
}

/** Data access used by the routes. All synchronous (better-sqlite3). */
export function makeStore(db) {
  const q = {
    userById: db.prepare('SELECT id, name, email FROM "user" WHERE id = ?'),
    userIdByEmail: db.prepare('SELECT id FROM "user" WHERE email = ?'),
    workspacesOf: db.prepare("SELECT workspace_id AS id FROM workspace_members WHERE user_id = ? ORDER BY workspace_id"),
    channelsOf: db.prepare(
      `SELECT c.id AS id, c.workspace_id AS workspaceId FROM channel_members m
       JOIN channels c ON c.id = m.channel_id WHERE m.user_id = ? ORDER BY c.id`,
    ),
    conversationsOf: db.prepare(
      `SELECT c.id AS id, c.workspace_id AS workspaceId FROM conversation_participants p
       JOIN conversations c ON c.id = p.conversation_id WHERE p.user_id = ? ORDER BY c.id`,
    ),
    isWorkspaceMember: db.prepare("SELECT 1 FROM workspace_members WHERE workspace_id = ? AND user_id = ?"),
    isChannelMember: db.prepare("SELECT 1 FROM channel_members WHERE channel_id = ? AND user_id = ?"),
    isParticipant: db.prepare("SELECT 1 FROM conversation_participants WHERE conversation_id = ? AND user_id = ?"),
    workspace: db.prepare("SELECT id FROM workspaces WHERE id = ?"),
    channel: db.prepare("SELECT id, workspace_id AS workspaceId FROM channels WHERE id = ?"),
    conversation: db.prepare("SELECT id, workspace_id AS workspaceId FROM conversations WHERE id = ?"),
    insertMessage: db.prepare(
      `INSERT INTO messages (id, channel_id, conversation_id, author_id, content, client_id, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ),
    message: db.prepare(
      `SELECT m.*, u.name AS author_name FROM messages m LEFT JOIN "user" u ON u.id = m.author_id
       WHERE m.id = ? AND m.deleted_at IS NULL`,
    ),
    softDelete: db.prepare("UPDATE messages SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL"),
    channelMessages: db.prepare(
      `SELECT m.*, u.name AS author_name FROM messages m LEFT JOIN "user" u ON u.id = m.author_id
       WHERE m.channel_id = ? AND m.deleted_at IS NULL ORDER BY m.seq`,
    ),
    conversationMessages: db.prepare(
      `SELECT m.*, u.name AS author_name FROM messages m LEFT JOIN "user" u ON u.id = m.author_id
       WHERE m.conversation_id = ? AND m.deleted_at IS NULL ORDER BY m.seq`,
    ),
    deleteSessions: db.prepare('DELETE FROM "session" WHERE "userId" = ?'),
  };

  const toMessage = (row) => {
    const msg = { id: row.id };
    if (row.channel_id != null) msg.channelId = row.channel_id;
    if (row.conversation_id != null) msg.conversationId = row.conversation_id;
    msg.author = { id: row.author_id, name: row.author_name ?? null };
    msg.content = row.content;
    if (row.client_id != null) msg.clientId = row.client_id;
    msg.createdAt = row.created_at;
    return msg;
  };

  const membershipTables = {
    workspace: { exists: q.workspace, table: "workspace_members", col: "workspace_id", parent: null },
    channel: { exists: q.channel, table: "channel_members", col: "channel_id", parent: "channels" },
    conversation: { exists: q.conversation, table: "conversation_participants", col: "conversation_id", parent: "conversations" },
  };

  return {
    user: (id) => q.userById.get(id),
    userIdByEmail: (email) => q.userIdByEmail.get(email)?.id,
    memberships(userId) {
      return {
        userId,
        workspaces: q.workspacesOf.all(userId).map((r) => r.id),
        channels: q.channelsOf.all(userId),
        conversations: q.conversationsOf.all(userId),
      };
    },
    isWorkspaceMember: (id, userId) => !!q.isWorkspaceMember.get(id, userId),
    isChannelMember: (id, userId) => !!q.isChannelMember.get(id, userId),
    isParticipant: (id, userId) => !!q.isParticipant.get(id, userId),
    insertMessage({ id, channelId, conversationId, authorId, content, clientId, createdAt }) {
      q.insertMessage.run(id, channelId ?? null, conversationId ?? null, authorId, content, clientId ?? null, createdAt);
      return toMessage(q.message.get(id));
    },
    message(id) {
      const row = q.message.get(id);
      return row ? { ...toMessage(row), authorId: row.author_id } : null;
    },
    softDelete: (id) => q.softDelete.run(new Date().toISOString(), id).changes > 0,
    channelMessages: (id) => q.channelMessages.all(id).map(toMessage),
    conversationMessages: (id) => q.conversationMessages.all(id).map(toMessage),
    revokeUserSessions: (userId) => q.deleteSessions.run(userId).changes,

    /**
     * Adds or removes a membership. For op "add" on an unknown channel/conversation id, creates it when
     * `workspaceId` is given. Returns {status, body}.
     */
    setMembership({ op, kind, id, userId, workspaceId, name }) {
      const t = membershipTables[kind];
      if (!t || (op !== "add" && op !== "remove") || typeof id !== "string" || !id || typeof userId !== "string") {
        return { status: 400, body: { error: "bad_payload", detail: "need op add|remove, kind workspace|channel|conversation, id, userId" } };
      }
      if (!q.userById.get(userId)) return { status: 404, body: { error: "unknown_user" } };
      let created = false;
      if (!t.exists.get(id)) {
        if (op === "add" && t.parent && typeof workspaceId === "string" && q.workspace.get(workspaceId)) {
          if (kind === "channel") db.prepare("INSERT INTO channels (id, workspace_id, name) VALUES (?, ?, ?)").run(id, workspaceId, name ?? id);
          else db.prepare("INSERT INTO conversations (id, workspace_id) VALUES (?, ?)").run(id, workspaceId);
          created = true;
        } else {
          return { status: 404, body: { error: "not_found", kind, id } };
        }
      }
      const sql =
        op === "add"
          ? `INSERT OR IGNORE INTO ${t.table} (${t.col}, user_id) VALUES (?, ?)`
          : `DELETE FROM ${t.table} WHERE ${t.col} = ? AND user_id = ?`;
      const changed = db.prepare(sql).run(id, userId).changes > 0;
      return { status: 200, body: { ok: true, changed, created } };
    },
  };
}
