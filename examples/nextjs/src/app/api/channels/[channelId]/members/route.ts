// The app's own code path for channel membership, which tells the gateways through the emitter:
//   GET    /api/channels/<id>/members                 → {members: [{id, name}], canManage}
//   POST   /api/channels/<id>/members {userId}        → adds a workspace member (any channel member may)
//   DELETE /api/channels/<id>/members?userId=…        → removes one (the channel's creator or a
//          workspace owner; anyone may remove themselves): their sockets leave channel:<id> at once
//          and their open pages drop the channel and its messages.
import { addChannelMember, canManageChannel, channel as findChannel, channelMembers, isChannelMember, isWorkspaceMember, removeChannelMember } from "@/lib/chat";
import { HttpError, handle, idParam, isObject, json, readJson, requireUser } from "@/lib/http";
import { addedToChannel, removedFromChannel } from "@/lib/realtime";

type Ctx = { params: Promise<{ channelId: string }> };

/** The channel, when the caller is one of its members. */
async function memberChannel(ctx: Ctx, userId: string) {
  const { channelId } = await ctx.params;
  const ch = await findChannel(channelId);
  if (!ch) throw new HttpError(404, "not_found");
  if (!(await isChannelMember(ch.id, userId))) throw new HttpError(403, "not_member");
  return ch;
}

export async function GET(req: Request, ctx: Ctx) {
  return handle("channel members", async () => {
    const user = await requireUser(req);
    const ch = await memberChannel(ctx, user.id);
    return json({ members: await channelMembers(ch.id), canManage: await canManageChannel(ch, user.id) });
  });
}

export async function POST(req: Request, ctx: Ctx) {
  return handle("add channel member", async () => {
    const user = await requireUser(req);
    const ch = await memberChannel(ctx, user.id);
    const body = await readJson(req);
    const userId = idParam(isObject(body) ? body.userId : undefined, "userId");
    if (!(await isWorkspaceMember(ch.workspaceId, userId))) throw new HttpError(404, "unknown_member");
    const added = await addChannelMember(ch.id, userId);
    if (added) addedToChannel(userId, { id: ch.id, workspaceId: ch.workspaceId, name: ch.name });
    return json({ ok: true, added });
  });
}

export async function DELETE(req: Request, ctx: Ctx) {
  return handle("remove channel member", async () => {
    const user = await requireUser(req);
    const ch = await memberChannel(ctx, user.id);
    const userId = idParam(new URL(req.url).searchParams.get("userId"), "userId");
    const self = userId === user.id;
    if (!self && !(await canManageChannel(ch, user.id))) throw new HttpError(403, "not_allowed");
    const removed = await removeChannelMember(ch.id, userId);
    if (removed) removedFromChannel(userId, ch, self ? "left" : "removed");
    return json({ ok: true, removed });
  });
}
