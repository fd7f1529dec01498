import { redirect } from "next/navigation";
import { DEFAULT_WORKSPACE_ID, workspacesOf } from "@/lib/chat";
import { currentUser } from "@/lib/session";

export default async function Home() {
  const user = await currentUser();
  if (!user) redirect("/sign-in");
  const workspaces = await workspacesOf(user.id);
  redirect(`/w/${workspaces[0]?.id ?? DEFAULT_WORKSPACE_ID}`);
}
