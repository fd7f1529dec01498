// POST /api/conversations {workspaceId, userId}: the direct conversation with another workspace
// member, created on first use; both participants' sockets join dm:<id> and their pages list it.
import { directConversation } from "@/lib/chat";
import { HttpError, handle, idParam, isObject, json, readJson, requireUser } from "@/lib/http";
import { conversationStarted } from "@/lib/realtime";

export async function POST(req: Request) {
  return handle("start conversation", async () => {
    const user = await requireUser(req);
    const body = await readJson(req);
    if (!isObject(body)) throw new HttpError(400, "bad_payload", "the body must be {workspaceId, userId}");
    const { conversation, created } = await directConversation(idParam(body.workspaceId, "workspaceId"), user.id, idParam(body.userId, "userId"));
    if (created) conversationStarted(conversation);
    return json({ conversation, created }, created ? 201 : 200);
  });
}
