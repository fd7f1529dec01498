import { redirect } from "next/navigation";
import { AuthForm } from "@/components/AuthForm";
import { currentUser } from "@/lib/session";

export const metadata = { title: "Create an account · Relay Chat" };

export default async function SignUpPage() {
  if (await currentUser()) redirect("/");
  return <AuthForm mode="sign-up" />;
}
