// Runs once when the server starts (next start / next dev), before it serves a request.
export async function register() {
  if (process.env.NEXT_RUNTIME !== "nodejs") return;
  const { migrate, seedDemoUsers } = await import("./lib/db/migrate");
  await migrate();
  if (process.env.DEMO_USERS === "1") await seedDemoUsers();
}
