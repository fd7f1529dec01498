"use client";
import Link from "next/link";
import { useRouter } from "next/navigation";
import { useState, type FormEvent } from "react";
import { authClient } from "@/lib/auth-client";

export function AuthForm({ mode }: { mode: "sign-in" | "sign-up" }) {
  const router = useRouter();
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const signUp = mode === "sign-up";

  async function submit(e: FormEvent<HTMLFormElement>) {
    e.preventDefault();
    const form = new FormData(e.currentTarget);
    const email = String(form.get("email") ?? "");
    const password = String(form.get("password") ?? "");
    setBusy(true);
    setError(null);
    const res = signUp
      ? await authClient.signUp.email({ email, password, name: String(form.get("name") ?? "").trim() })
      : await authClient.signIn.email({ email, password });
    if (res.error) {
      setBusy(false);
      setError(res.error.message ?? "Something went wrong, try again");
      return;
    }
    router.replace("/");
    router.refresh();
  }

  return (
    <main className="auth">
      <form className="auth-card" onSubmit={submit} aria-label={signUp ? "Create your account" : "Sign in"}>
        <div className="brand">
          <span className="brand-mark">#</span> Relay Chat
        </div>
        <h1>{signUp ? "Create your account" : "Welcome back"}</h1>
        {signUp && (
          <label>
            Name
            <input name="name" autoComplete="name" required maxLength={60} placeholder="Ada Lovelace" />
          </label>
        )}
        <label>
          Email
          <input name="email" type="email" autoComplete="email" required placeholder="you@example.com" />
        </label>
        <label>
          Password
          <input name="password" type="password" autoComplete={signUp ? "new-password" : "current-password"} required minLength={8} placeholder="At least 8 characters" />
        </label>
        {error && (
          <p className="form-error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy}>
          {busy ? "Please wait…" : signUp ? "Create account" : "Sign in"}
        </button>
        <p className="auth-switch">
          {signUp ? (
            <>
              Already have an account? <Link href="/sign-in">Sign in</Link>
            </>
          ) : (
            <>
              New here? <Link href="/sign-up">Create an account</Link>
            </>
          )}
        </p>
      </form>
    </main>
  );
}
