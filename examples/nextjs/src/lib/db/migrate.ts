// Creates or updates the schema on start (called from src/instrumentation.ts, before the first
// request): better-auth's tables through its own migration planner, then the app's through
// Kysely's migrator. Both are idempotent. DEMO_USERS=1 also signs the demo users up.
import "server-only";
import { Migrator } from "kysely";
import { getMigrations } from "better-auth/db/migration";
import { authOptions, getAuth } from "../auth";
import { appMigrations } from "./migrations";
import { getDb } from ".";
import demoUsers from "../../../demo-users.json";

/** scripts/stack.sh prints the same file's list. */
export const DEMO_USERS: { name: string; email: string; password: string }[] = demoUsers;

export async function migrate(): Promise<void> {
  const { toBeCreated, toBeAdded, runMigrations } = await getMigrations(authOptions());
  if (toBeCreated.length || toBeAdded.length) await runMigrations();
  const { error, results } = await new Migrator({ db: getDb().app, provider: appMigrations }).migrateToLatest();
  for (const r of results ?? []) {
    if (r.status === "Error") console.error(`migration ${r.migrationName} failed`);
    else console.log(`migration ${r.migrationName}: ${r.status}`);
  }
  if (error) throw error;
}

/** Signs the demo users up when they do not exist yet (which also puts them in the default workspace). */
export async function seedDemoUsers(): Promise<void> {
  const auth = getAuth();
  for (const u of DEMO_USERS) {
    const exists = await getDb().app.selectFrom("user").select("id").where("email", "=", u.email).executeTakeFirst();
    if (!exists) await auth.api.signUpEmail({ body: u });
  }
}
