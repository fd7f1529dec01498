// Who is online in a workspace, read from the presence keys the gateways keep in Valkey. This is
// the only module that knows their layout (the gateway's README "Presence" and
// src/gateway/presence/mod.rs), so a change of layout (e.g. hash tags for Valkey Cluster) is a
// change here only:
//   {prefix}-presence:ws:<workspaceId>  hash  userId → "online" | "away"  (absent: offline)
//   {prefix}-presence:user:<userId>     hash  status, lastSeen (ms since the epoch of the last change)
import "server-only";
import type { PresenceEntry } from "./presence";
import { gatewayPrefix, getValkey } from "./valkey";

const keys = {
  workspace: (prefix: string, workspaceId: string) => `${prefix}-presence:ws:${workspaceId}`,
  user: (prefix: string, userId: string) => `${prefix}-presence:user:${userId}`,
};

export class PresenceUnavailable extends Error {}

/**
 * The status of each of `memberIds` in the workspace, with the time of their last change, read in
 * one MULTI so the two agree. Members Valkey does not list are offline (lastSeen null when never
 * seen, or not for 7 days).
 */
export async function workspacePresence(workspaceId: string, memberIds: string[]): Promise<PresenceEntry[]> {
  const prefix = gatewayPrefix();
  const multi = getValkey().multi().hgetall(keys.workspace(prefix, workspaceId));
  for (const id of memberIds) multi.hget(keys.user(prefix, id), "lastSeen");
  let replies: [Error | null, unknown][] | null;
  try {
    replies = await multi.exec();
  } catch (err) {
    throw new PresenceUnavailable(`presence read failed: ${(err as Error).message}`);
  }
  if (!replies) throw new PresenceUnavailable("presence read aborted");
  const failed = replies.find(([e]) => e);
  if (failed) throw new PresenceUnavailable(`presence read failed: ${failed[0]?.message}`);
  const inWorkspace = (replies[0][1] ?? {}) as Record<string, string>;
  return memberIds.map((userId, i) => {
    const raw = replies[i + 1][1];
    const lastSeen = typeof raw === "string" && /^\d+$/.test(raw) ? Number(raw) : null;
    const s = inWorkspace[userId];
    const status = s === "online" || s === "away" ? s : "offline";
    return { userId, status, lastSeen };
  });
}
