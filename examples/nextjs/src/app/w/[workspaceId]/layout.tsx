// The workspace's frame: the socket, the sidebar and presence live here, so moving between
// rooms keeps one connection.
import { notFound, redirect } from "next/navigation";
import type { ReactNode } from "react";
import { WorkspaceShell } from "@/components/WorkspaceShell";
import { workspaceView } from "@/lib/chat";
import { currentUser } from "@/lib/session";

export default async function WorkspaceLayout({ children, params }: { children: ReactNode; params: Promise<{ workspaceId: string }> }) {
  const user = await currentUser();
  if (!user) redirect("/sign-in");
  const { workspaceId } = await params;
  const view = await workspaceView(workspaceId, user.id);
  if (!view) notFound();
  return (
    <WorkspaceShell me={user} data={view}>
      {children}
    </WorkspaceShell>
  );
}
