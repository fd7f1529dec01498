// Presence on the page: a snapshot read after the socket is connected and in its workspace rooms,
// merged with the live presence:update events by lastSeen, so a change that happens between the
// two is never lost (whichever says the later change wins; an update counts from the moment the
// socket is in the room, so nothing after the snapshot is missed).
import type { PresenceUpdate } from "./socket-events";

export type PresenceStatus = PresenceUpdate["status"];

export interface PresenceEntry {
  userId: string;
  status: PresenceStatus;
  /** Milliseconds since the epoch of the user's last status change; null: never seen. */
  lastSeen: number | null;
}

export type PresenceMap = Record<string, PresenceEntry>;

/** `current` with `incoming` applied where incoming is at least as recent (ties: the same change). */
export function mergePresence(current: PresenceMap, incoming: PresenceEntry[]): PresenceMap {
  let next: PresenceMap | null = null;
  for (const entry of incoming) {
    const have = (next ?? current)[entry.userId];
    if (have && have.lastSeen !== null && (entry.lastSeen === null || entry.lastSeen < have.lastSeen)) continue;
    if (have && have.status === entry.status && have.lastSeen === entry.lastSeen) continue;
    next ??= { ...current };
    next[entry.userId] = entry;
  }
  return next ?? current;
}
