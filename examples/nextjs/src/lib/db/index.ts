// One database for better-auth and the app's tables, chosen by DATABASE_URL:
//   file:./data/chat.sqlite (the default) or file:/abs/path.sqlite  → SQLite through better-sqlite3
// Postgres is where a production deployment would go: give DATABASE_URL a postgres:// URL and add
// the `pg` package and a Kysely PostgresDialect in openDatabase() below (better-auth takes the
// same pg Pool); until then such a URL is refused with that explanation instead of half-working.
import "server-only";
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { CamelCasePlugin, Kysely, SqliteDialect } from "kysely";
import type { AppDatabase } from "./schema";

export interface Db {
  /** What better-auth is given (it builds its own Kysely over it, with its camelCase columns). */
  authDatabase: Database.Database;
  /** The app's queries: snake_case columns as camelCase properties. */
  app: Kysely<AppDatabase>;
}

export class DatabaseConfigError extends Error {}

export function databaseUrl(): string {
  return process.env.DATABASE_URL || "file:./data/chat.sqlite";
}

function openDatabase(url: string): Db {
  if (url.startsWith("file:")) {
    const file = path.resolve(url.slice("file:".length));
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const sqlite = new Database(file);
    // WAL: readers (every connect's memberships call) never wait for a writer.
    sqlite.pragma("journal_mode = WAL");
    sqlite.pragma("busy_timeout = 5000");
    sqlite.pragma("foreign_keys = ON");
    const app = new Kysely<AppDatabase>({ dialect: new SqliteDialect({ database: sqlite }), plugins: [new CamelCasePlugin()] });
    return { authDatabase: sqlite, app };
  }
  if (/^postgres(ql)?:\/\//.test(url)) {
    throw new DatabaseConfigError(
      "DATABASE_URL is a Postgres URL: this example ships SQLite only. Add the `pg` package, a Kysely PostgresDialect " +
        "over a pg Pool in src/lib/db/index.ts (pass the Pool to better-auth too), and use `serial` for message.seq.",
    );
  }
  throw new DatabaseConfigError(`DATABASE_URL must start with file: (SQLite) or postgres://, got ${JSON.stringify(url.split(":")[0])}:…`);
}

// One connection per process, shared by every bundle Next.js loads (route handlers, pages and
// instrumentation are compiled separately and would otherwise each open their own).
const globalKey = Symbol.for("socket-gateway-example.db");
type Holder = { [globalKey]?: Db };

export function getDb(): Db {
  const holder = globalThis as Holder;
  holder[globalKey] ??= openDatabase(databaseUrl());
  return holder[globalKey];
}
