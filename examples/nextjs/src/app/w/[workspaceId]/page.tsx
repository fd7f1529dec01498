import { redirect } from "next/navigation";
import { workspaceView } from "@/lib/chat";
import { currentUser } from "@/lib/session";

export default async function WorkspaceHome({ params }: { params: Promise<{ workspaceId: string }> }) {
  const user = await currentUser();
  if (!user) redirect("/sign-in");
  const { workspaceId } = await params;
  const view = await workspaceView(workspaceId, user.id);
  const first = view?.channels.find((c) => c.name === "general") ?? view?.channels[0];
  if (first) redirect(`/w/${workspaceId}/c/${first.id}`);
  return (
    <section className="room-gone">
      <h1>No channels yet</h1>
      <p>Create one with the + next to Channels.</p>
    </section>
  );
}
