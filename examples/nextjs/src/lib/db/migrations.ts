// The app's schema as Kysely migrations (dialect-neutral schema builder), run by migrate.ts on
// start. Indexed for the memberships route (called by the gateway on every connect): each
// membership table has an index leading with user_id, since its primary key leads with the room.
import { sql, type Kysely, type Migration, type MigrationProvider } from "kysely";

const migrations: Record<string, Migration> = {
  "0001_chat": {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("workspace")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("name", "text", (c) => c.notNull())
        .addColumn("created_at", "text", (c) => c.notNull())
        .execute();
      await db.schema
        .createTable("workspace_member")
        .addColumn("workspace_id", "text", (c) => c.notNull().references("workspace.id").onDelete("cascade"))
        .addColumn("user_id", "text", (c) => c.notNull().references("user.id").onDelete("cascade"))
        .addColumn("role", "text", (c) => c.notNull().defaultTo("member"))
        .addColumn("joined_at", "text", (c) => c.notNull())
        .addPrimaryKeyConstraint("workspace_member_pk", ["workspace_id", "user_id"])
        .execute();
      await db.schema.createIndex("workspace_member_user_idx").on("workspace_member").column("user_id").execute();

      await db.schema
        .createTable("channel")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("workspace_id", "text", (c) => c.notNull().references("workspace.id").onDelete("cascade"))
        .addColumn("name", "text", (c) => c.notNull())
        .addColumn("created_by", "text", (c) => c.references("user.id").onDelete("set null"))
        .addColumn("created_at", "text", (c) => c.notNull())
        .addUniqueConstraint("channel_workspace_name_unique", ["workspace_id", "name"])
        .execute();
      await db.schema
        .createTable("channel_member")
        .addColumn("channel_id", "text", (c) => c.notNull().references("channel.id").onDelete("cascade"))
        .addColumn("user_id", "text", (c) => c.notNull().references("user.id").onDelete("cascade"))
        .addColumn("added_at", "text", (c) => c.notNull())
        .addPrimaryKeyConstraint("channel_member_pk", ["channel_id", "user_id"])
        .execute();
      await db.schema.createIndex("channel_member_user_idx").on("channel_member").column("user_id").execute();

      await db.schema
        .createTable("conversation")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("workspace_id", "text", (c) => c.notNull().references("workspace.id").onDelete("cascade"))
        .addColumn("created_at", "text", (c) => c.notNull())
        .execute();
      await db.schema
        .createTable("conversation_participant")
        .addColumn("conversation_id", "text", (c) => c.notNull().references("conversation.id").onDelete("cascade"))
        .addColumn("user_id", "text", (c) => c.notNull().references("user.id").onDelete("cascade"))
        .addPrimaryKeyConstraint("conversation_participant_pk", ["conversation_id", "user_id"])
        .execute();
      await db.schema
        .createIndex("conversation_participant_user_idx")
        .on("conversation_participant")
        .column("user_id")
        .execute();

      await db.schema
        .createTable("message")
        .addColumn("seq", "integer", (c) => c.primaryKey().autoIncrement())
        .addColumn("id", "text", (c) => c.notNull().unique())
        .addColumn("channel_id", "text", (c) => c.references("channel.id").onDelete("cascade"))
        .addColumn("conversation_id", "text", (c) => c.references("conversation.id").onDelete("cascade"))
        .addColumn("author_id", "text", (c) => c.notNull().references("user.id").onDelete("cascade"))
        .addColumn("content", "text", (c) => c.notNull())
        .addColumn("client_id", "text")
        .addColumn("created_at", "text", (c) => c.notNull())
        .addColumn("deleted_at", "text")
        .addCheckConstraint("message_one_target", sql`(channel_id IS NULL) <> (conversation_id IS NULL)`)
        .execute();
      await db.schema.createIndex("message_channel_idx").on("message").columns(["channel_id", "seq"]).execute();
      await db.schema.createIndex("message_conversation_idx").on("message").columns(["conversation_id", "seq"]).execute();
    },
  },
};

export const appMigrations: MigrationProvider = {
  getMigrations: async () => migrations,
};
