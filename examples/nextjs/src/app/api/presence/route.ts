// GET /api/presence?workspaceId=… : who in the workspace is online now, with the time of each
// member's last change (lastSeen, ms). The page asks once its socket is connected and in its
// workspace room, and merges the answer with the live presence:update events by lastSeen
// (src/lib/presence.ts), so a change between the two is never lost.
//   200 {members: [{userId, status, lastSeen}]}   503 {error: "presence_unavailable"} (Valkey down)
import { workspaceView } from "@/lib/chat";
import { HttpError, handle, idParam, json, requireUser } from "@/lib/http";
import { PresenceUnavailable, workspacePresence } from "@/lib/presence-store";

export async function GET(req: Request) {
  return handle("presence", async () => {
    const user = await requireUser(req);
    const workspaceId = idParam(new URL(req.url).searchParams.get("workspaceId"), "workspaceId");
    const view = await workspaceView(workspaceId, user.id);
    if (!view) throw new HttpError(403, "not_member");
    try {
      return json({ members: await workspacePresence(workspaceId, view.members.map((m) => m.id)) });
    } catch (err) {
      if (err instanceof PresenceUnavailable) return json({ error: "presence_unavailable" }, 503);
      throw err;
    }
  });
}
