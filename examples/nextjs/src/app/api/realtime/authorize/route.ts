// GET /api/realtime/authorize?room=<room> (contract): may the signed-in user join this room now
// (the gateway asks before a client's room:join)?
//   200 {userId, room, allowed: true} | {userId, room, allowed: false, reason}
//   400 {error: "bad_room"}   401 {error: "unauthenticated"}
import { isChannelMember, isParticipant, isWorkspaceMember } from "@/lib/chat";
import { HttpError, handle, json, requireUser } from "@/lib/http";

const ROOM = /^(user|workspace|channel|dm):([^\s]{1,200})$/;

export async function GET(req: Request) {
  return handle("authorize", async () => {
    const user = await requireUser(req);
    const room = new URL(req.url).searchParams.get("room") ?? "";
    const m = ROOM.exec(room);
    if (!m) throw new HttpError(400, "bad_room", "room must be user:<id>, workspace:<id>, channel:<id> or dm:<id>");
    const [, kind, id] = m;
    const checks: Record<string, () => Promise<boolean> | boolean> = {
      user: () => id === user.id,
      workspace: () => isWorkspaceMember(id, user.id),
      channel: () => isChannelMember(id, user.id),
      dm: () => isParticipant(id, user.id),
    };
    const allowed = await checks[kind]();
    const reason = kind === "user" ? "not_self" : "not_member";
    return json(allowed ? { userId: user.id, room, allowed } : { userId: user.id, room, allowed, reason });
  });
}
