// Small helpers for the route handlers: JSON answers, errors as {error, detail?}, bounded bodies,
// and the signed-in user or a 401. Bad input is a 4xx with {error}, never a 500.
import "server-only";
import { NextResponse } from "next/server";
import { ChatError } from "./chat";
import { sessionUser, type SessionUser } from "./session";

const MAX_BODY_BYTES = 64 * 1024;

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly detail?: string,
  ) {
    super(detail ?? error);
  }
}

export function json(body: unknown, status = 200): NextResponse {
  return NextResponse.json(body, { status, headers: { "cache-control": "no-store" } });
}

/** Runs a handler; HttpError and ChatError become their 4xx answers, anything else a logged 500. */
export async function handle(what: string, fn: () => Promise<NextResponse>): Promise<NextResponse> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof HttpError) return json(err.detail ? { error: err.error, detail: err.detail } : { error: err.error }, err.status);
    if (err instanceof ChatError) return json(err.message !== err.code ? { error: err.code, detail: err.message } : { error: err.code }, err.status);
    console.error(`${what}: ${(err as Error)?.stack ?? err}`);
    return json({ error: "internal" }, 500);
  }
}

export async function requireUser(req: Request): Promise<SessionUser> {
  const user = await sessionUser(req.headers);
  if (!user) throw new HttpError(401, "unauthenticated");
  return user;
}

/** The request's JSON body (at most 64 KiB). */
export async function readJson(req: Request): Promise<unknown> {
  const declared = Number(req.headers.get("content-length") ?? 0);
  if (declared > MAX_BODY_BYTES) throw new HttpError(413, "too_large");
  const reader = req.body?.getReader();
  if (!reader) throw new HttpError(400, "bad_payload", "a JSON body is required");
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_BODY_BYTES) {
      await reader.cancel();
      throw new HttpError(413, "too_large");
    }
    chunks.push(value);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  try {
    return JSON.parse(text);
  } catch {
    throw new HttpError(400, "bad_payload", "the body is not JSON");
  }
}

export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** A required id-like string (query or body field). */
export function idParam(value: unknown, name: string): string {
  if (typeof value !== "string" || value.length === 0 || value.length > 200) {
    throw new HttpError(400, "bad_payload", `${name} must be a non-empty string`);
  }
  return value;
}
