// A channel: its history is read here, on the server, when the page opens; live messages follow
// through the socket (RoomView).
import { redirect } from "next/navigation";
import { RoomView } from "@/components/RoomView";
import { channel, history, isChannelMember } from "@/lib/chat";
import { currentUser } from "@/lib/session";

export default async function ChannelPage({ params }: { params: Promise<{ workspaceId: string; channelId: string }> }) {
  const user = await currentUser();
  if (!user) redirect("/sign-in");
  const { workspaceId, channelId } = await params;
  const ch = await channel(channelId);
  if (!ch || ch.workspaceId !== workspaceId || !(await isChannelMember(ch.id, user.id))) redirect(`/w/${workspaceId}`);
  return <RoomView key={ch.id} kind="channel" id={ch.id} name={ch.name} initialMessages={await history({ channelId: ch.id })} />;
}
