// The open room's message list on the page: live messages, optimistic sends confirmed by their
// ack, and the history refetched after a connect that did not recover. Pure functions, so the
// merging rules are tested on their own (tests/node/nextjs/merge.test.mjs).
import type { ChatMessage } from "./socket-events";

export interface UiMessage extends ChatMessage {
  /** Shown at once, not yet confirmed by the ack (id is "local:<clientId>"). */
  pending?: boolean;
  /** Why the send failed (the ack refused it, or none came in time). */
  failed?: string;
}

export const localId = (clientId: string) => `local:${clientId}`;

/** Adds or confirms `m`: replaces the same id, or the optimistic copy with its clientId; else appends. */
export function upsertMessage(list: UiMessage[], m: ChatMessage): UiMessage[] {
  let i = list.findIndex((x) => x.id === m.id);
  if (i < 0 && m.clientId) i = list.findIndex((x) => x.id === localId(m.clientId as string));
  if (i < 0) return [...list, m];
  const next = list.slice();
  next[i] = m;
  // A late live copy of a message confirmed meanwhile under its real id: keep one.
  return next.filter((x, j) => j === i || x.id !== m.id);
}

export function removeMessage(list: UiMessage[], id: string): UiMessage[] {
  return list.some((m) => m.id === id) ? list.filter((m) => m.id !== id) : list;
}

export function markFailed(list: UiMessage[], clientId: string, why: string): UiMessage[] {
  return list.map((m) => (m.id === localId(clientId) ? { ...m, pending: false, failed: why } : m));
}

/**
 * The room's list after a history refetch: the server's list (its order, its deletions), then what
 * the page has that the server had not yet (live messages newer than its newest, unconfirmed
 * sends), minus optimistic copies the server already confirmed.
 */
export function mergeHistory(local: UiMessage[], server: ChatMessage[]): UiMessage[] {
  const ids = new Set(server.map((m) => m.id));
  const clientIds = new Set(server.flatMap((m) => (m.clientId ? [m.clientId] : [])));
  const newest = server.length ? server[server.length - 1].createdAt : "";
  const extra = local.filter((m) => {
    if (ids.has(m.id)) return false;
    if (m.pending || m.failed) return !(m.clientId && clientIds.has(m.clientId));
    return m.createdAt > newest;
  });
  return [...server, ...extra];
}
