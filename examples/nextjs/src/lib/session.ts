// The signed-in user of a request, checked the way the gateway checks it: against the database,
// never the cookie cache, and without extending the session (the browser's own requests do that).
import "server-only";
import { headers as nextHeaders } from "next/headers";
import { getAuth } from "./auth";

export interface SessionUser {
  id: string;
  name: string;
  email: string;
}

export async function sessionUser(headers: Headers): Promise<SessionUser | null> {
  const session = await getAuth().api.getSession({
    headers,
    query: { disableCookieCache: true, disableRefresh: true },
  });
  if (!session) return null;
  return { id: session.user.id, name: session.user.name, email: session.user.email };
}

/** For server components: the current request's user, or null. */
export async function currentUser(): Promise<SessionUser | null> {
  return sessionUser(await nextHeaders());
}
