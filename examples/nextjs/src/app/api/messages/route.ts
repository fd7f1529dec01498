// GET /api/messages?channelId=…|conversationId=… : the last messages of a room the user is in.
// The page refetches this after each connect that did not recover its socket (recovered ===
// false), and after mounting a room, so nothing sent between the server render and the live
// subscription is missed.
import { history, isChannelMember, isParticipant } from "@/lib/chat";
import { HttpError, handle, idParam, json, requireUser } from "@/lib/http";

export async function GET(req: Request) {
  return handle("messages", async () => {
    const user = await requireUser(req);
    const q = new URL(req.url).searchParams;
    const channelId = q.get("channelId");
    const conversationId = q.get("conversationId");
    if ((channelId === null) === (conversationId === null)) throw new HttpError(400, "bad_payload", "exactly one of channelId, conversationId");
    if (channelId !== null) {
      if (!(await isChannelMember(idParam(channelId, "channelId"), user.id))) throw new HttpError(403, "not_member");
      return json({ messages: await history({ channelId }) });
    }
    const id = idParam(conversationId, "conversationId");
    if (!(await isParticipant(id, user.id))) throw new HttpError(403, "not_member");
    return json({ messages: await history({ conversationId: id }) });
  });
}
