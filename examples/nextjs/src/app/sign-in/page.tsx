import { redirect } from "next/navigation";
import { AuthForm } from "@/components/AuthForm";
import { currentUser } from "@/lib/session";

export const metadata = { title: "Sign in · Relay Chat" };

export default async function SignInPage() {
  if (await currentUser()) redirect("/");
  return <AuthForm mode="sign-in" />;
}
