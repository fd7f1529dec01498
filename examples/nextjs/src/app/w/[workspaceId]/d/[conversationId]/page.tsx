// A direct conversation: history from the server on open, live messages through the socket.
import { redirect } from "next/navigation";
import { RoomView } from "@/components/RoomView";
import { conversation, history, isParticipant } from "@/lib/chat";
import { currentUser } from "@/lib/session";

export default async function ConversationPage({ params }: { params: Promise<{ workspaceId: string; conversationId: string }> }) {
  const user = await currentUser();
  if (!user) redirect("/sign-in");
  const { workspaceId, conversationId } = await params;
  const conv = await conversation(conversationId);
  if (!conv || conv.workspaceId !== workspaceId || !(await isParticipant(conv.id, user.id))) redirect(`/w/${workspaceId}`);
  return <RoomView key={conv.id} kind="dm" id={conv.id} name="Direct message" initialMessages={await history({ conversationId: conv.id })} />;
}
