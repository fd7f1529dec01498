// POST /api/channels {workspaceId, name}: creates a channel with the caller as its first member;
// the caller's open sockets join it at once (through the emitter) and their pages list it.
import { CHANNEL_NAME, createChannel } from "@/lib/chat";
import { HttpError, handle, idParam, isObject, json, readJson, requireUser } from "@/lib/http";
import { addedToChannel } from "@/lib/realtime";

export async function POST(req: Request) {
  return handle("create channel", async () => {
    const user = await requireUser(req);
    const body = await readJson(req);
    if (!isObject(body)) throw new HttpError(400, "bad_payload", "the body must be {workspaceId, name}");
    const workspaceId = idParam(body.workspaceId, "workspaceId");
    const name = typeof body.name === "string" ? body.name.trim().toLowerCase().replace(/^#/, "") : "";
    if (!CHANNEL_NAME.test(name)) throw new HttpError(400, "bad_payload", "a name is 1-40 lowercase letters, digits or dashes");
    const channel = await createChannel(workspaceId, name, user.id);
    addedToChannel(user.id, channel);
    return json({ channel }, 201);
  });
}
