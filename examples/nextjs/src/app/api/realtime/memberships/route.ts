// GET /api/realtime/memberships (contract): the rooms the signed-in user's sockets join at connect.
// The gateway calls it with the browser's cookie on every connect (cached per user for
// app.session_cache_ttl_ms); three indexed lookups by user id (src/lib/chat.ts).
//   200 {userId, workspaces: [id], channels: [{id, workspaceId}], conversations: [{id, workspaceId}]}
//   401 {error: "unauthenticated"}
import { memberships } from "@/lib/chat";
import { handle, json, requireUser } from "@/lib/http";

export async function GET(req: Request) {
  return handle("memberships", async () => {
    const user = await requireUser(req);
    return json(await memberships(user.id));
  });
}
