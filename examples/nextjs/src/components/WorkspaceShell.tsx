"use client";
import Link from "next/link";
import { usePathname, useRouter } from "next/navigation";
import { createContext, useCallback, useContext, useEffect, useMemo, useState, type FormEvent, type ReactNode } from "react";
import { authClient } from "@/lib/auth-client";
import { mergePresence, type PresenceEntry, type PresenceMap, type PresenceStatus } from "@/lib/presence";
import { listen, useConnectionState, useSocket, type ChatSocket, type ConnectionState } from "@/lib/socket-client";
import type { ChannelJoined, ChannelLeft, ChannelRef, ConversationJoined, ConversationRef, PresenceUpdate } from "@/lib/socket-events";

export interface Me {
  id: string;
  name: string;
  email: string;
}

export interface Member {
  id: string;
  name: string;
  role: "owner" | "member";
}

export interface WorkspaceData {
  workspace: { id: string; name: string };
  role: "owner" | "member";
  channels: ChannelRef[];
  conversations: ConversationRef[];
  members: Member[];
}

interface WorkspaceContext {
  me: Me;
  data: WorkspaceData;
  socket: ChatSocket;
  connection: ConnectionState;
  channels: ChannelRef[];
  conversations: ConversationRef[];
  presence: PresenceMap;
  /** Channels the user was taken out of while the page was open, and how. */
  removed: Record<string, ChannelLeft["reason"]>;
  openConversation: (userId: string) => Promise<void>;
}

const Ctx = createContext<WorkspaceContext | null>(null);

export function useWorkspace(): WorkspaceContext {
  const ctx = useContext(Ctx);
  if (!ctx) throw new Error("useWorkspace outside <WorkspaceShell>");
  return ctx;
}

const byName = (a: ChannelRef, b: ChannelRef) => a.name.localeCompare(b.name);

export function conversationTitle(c: ConversationRef, meId: string): string {
  const others = c.participants.filter((p) => p.id !== meId);
  return (others.length ? others : c.participants).map((p) => p.name ?? "Someone").join(", ");
}

export function WorkspaceShell({ me, data, children }: { me: Me; data: WorkspaceData; children: ReactNode }) {
  const { socket } = useSocket();
  const connection = useConnectionState();
  const router = useRouter();
  const pathname = usePathname();
  const wsId = data.workspace.id;
  const [channels, setChannels] = useState(data.channels);
  const [conversations, setConversations] = useState(data.conversations);
  const [presence, setPresence] = useState<PresenceMap>({});
  const [removed, setRemoved] = useState<Record<string, ChannelLeft["reason"]>>({});

  // Presence: the snapshot is asked for only once the socket is connected (so already in the
  // workspace room), and merged with live updates by lastSeen: nothing in between is lost.
  const refreshPresence = useCallback(async () => {
    const res = await fetch(`/api/presence?workspaceId=${encodeURIComponent(wsId)}`, { cache: "no-store" }).catch(() => null);
    if (!res?.ok) return;
    const body = (await res.json()) as { members: PresenceEntry[] };
    setPresence((p) => mergePresence(p, body.members));
  }, [wsId]);

  useEffect(() => {
    const onPresence = (u: PresenceUpdate) => setPresence((p) => mergePresence(p, [u]));
    const onChannelJoined = ({ channel }: ChannelJoined) => {
      if (channel.workspaceId !== wsId) return;
      setChannels((list) => (list.some((c) => c.id === channel.id) ? list : [...list, channel].sort(byName)));
      setRemoved(({ [channel.id]: _, ...rest }) => rest);
    };
    const onChannelLeft = ({ channelId, workspaceId, reason }: ChannelLeft) => {
      if (workspaceId !== wsId) return;
      setChannels((list) => list.filter((c) => c.id !== channelId));
      setRemoved((r) => ({ ...r, [channelId]: reason }));
    };
    const onConversation = ({ conversation }: ConversationJoined) => {
      if (conversation.workspaceId !== wsId) return;
      setConversations((list) => (list.some((c) => c.id === conversation.id) ? list : [...list, conversation]));
    };
    const visibility = () => socket.emit(document.visibilityState === "hidden" ? "presence:setAway" : "presence:setActive");
    const onConnect = () => {
      if (document.visibilityState === "hidden") socket.emit("presence:setAway");
      void refreshPresence();
    };
    const unlisten = listen(socket, {
      "presence:update": onPresence,
      "channel:joined": onChannelJoined,
      "channel:left": onChannelLeft,
      "conversation:joined": onConversation,
      connect: onConnect,
    });
    document.addEventListener("visibilitychange", visibility);
    if (socket.connected) onConnect();
    return () => {
      unlisten();
      document.removeEventListener("visibilitychange", visibility);
    };
  }, [socket, wsId, refreshPresence]);

  // The browser's own session call: renews the session cookie when due (the gateway's and the
  // server components' calls never do).
  useEffect(() => {
    void authClient.getSession();
  }, []);

  const openConversation = useCallback(
    async (userId: string) => {
      const res = await fetch("/api/conversations", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ workspaceId: wsId, userId }),
      });
      if (!res.ok) return;
      const { conversation } = (await res.json()) as { conversation: ConversationRef };
      setConversations((list) => (list.some((c) => c.id === conversation.id) ? list : [...list, conversation]));
      router.push(`/w/${wsId}/d/${conversation.id}`);
    },
    [router, wsId],
  );

  const ctx = useMemo<WorkspaceContext>(
    () => ({ me, data, socket, connection, channels, conversations, presence, removed, openConversation }),
    [me, data, socket, connection, channels, conversations, presence, removed, openConversation],
  );

  return (
    <Ctx.Provider value={ctx}>
      <div className="app">
        <aside className="sidebar">
          <header className="workspace-header">
            <div className="workspace-name">{data.workspace.name}</div>
            <ConnectionBadge state={connection} />
          </header>
          <nav className="sidebar-scroll" aria-label="Rooms">
            <ChannelSection wsId={wsId} channels={channels} pathname={pathname} onCreated={(c) => setChannels((l) => (l.some((x) => x.id === c.id) ? l : [...l, c].sort(byName)))} />
            <section className="sidebar-section" aria-label="Direct messages">
              <h2>Direct messages</h2>
              <ul id="conversations">
                {conversations.map((c) => {
                  const other = c.participants.find((p) => p.id !== me.id);
                  const href = `/w/${wsId}/d/${c.id}`;
                  return (
                    <li key={c.id} data-room={`dm:${c.id}`} className={pathname === href ? "active" : undefined}>
                      <Link href={href}>
                        <PresenceDot status={other ? presence[other.id]?.status : "online"} />
                        {conversationTitle(c, me.id)}
                      </Link>
                    </li>
                  );
                })}
              </ul>
            </section>
            <section className="sidebar-section" aria-label="Members">
              <h2>Members</h2>
              <ul id="presence">
                {data.members.map((m) => {
                  const status = m.id === me.id ? (connection === "connected" ? presence[m.id]?.status ?? "online" : "offline") : presence[m.id]?.status ?? "offline";
                  return (
                    <li key={m.id} data-user-id={m.id} data-status={status}>
                      <button type="button" className="member" disabled={m.id === me.id} onClick={() => openConversation(m.id)} title={m.id === me.id ? "You" : `Message ${m.name}`}>
                        <PresenceDot status={status} />
                        <span className="member-name">{m.name}</span>
                        {m.id === me.id && <span className="muted"> (you)</span>}
                        {status === "away" && <span className="muted"> · away</span>}
                      </button>
                    </li>
                  );
                })}
              </ul>
            </section>
          </nav>
          <footer className="me">
            <span className="avatar small">{initials(me.name)}</span>
            <span className="me-name" id="me">
              {me.name}
            </span>
            <button
              type="button"
              className="ghost"
              id="sign-out"
              onClick={async () => {
                await authClient.signOut();
                window.location.assign("/sign-in");
              }}
            >
              Sign out
            </button>
          </footer>
        </aside>
        <main className="room">{children}</main>
      </div>
    </Ctx.Provider>
  );
}

function ChannelSection({ wsId, channels, pathname, onCreated }: { wsId: string; channels: ChannelRef[]; pathname: string; onCreated: (c: ChannelRef) => void }) {
  const router = useRouter();
  const [adding, setAdding] = useState(false);
  const [error, setError] = useState<string | null>(null);

  async function create(e: FormEvent<HTMLFormElement>) {
    e.preventDefault();
    const name = String(new FormData(e.currentTarget).get("name") ?? "");
    const res = await fetch("/api/channels", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ workspaceId: wsId, name }) });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) return setError(body.detail ?? body.error ?? "Could not create the channel");
    onCreated(body.channel);
    setAdding(false);
    setError(null);
    router.push(`/w/${wsId}/c/${body.channel.id}`);
  }

  return (
    <section className="sidebar-section" aria-label="Channels">
      <h2>
        Channels
        <button type="button" className="icon" aria-label="New channel" onClick={() => setAdding((a) => !a)}>
          +
        </button>
      </h2>
      {adding && (
        <form className="inline-form" onSubmit={create}>
          <input name="name" aria-label="Channel name" placeholder="new-channel" autoFocus maxLength={40} />
          {error && <p className="form-error">{error}</p>}
        </form>
      )}
      <ul id="channels">
        {channels.map((c) => {
          const href = `/w/${wsId}/c/${c.id}`;
          return (
            <li key={c.id} data-room={`channel:${c.id}`} className={pathname === href ? "active" : undefined}>
              <Link href={href}>
                <span className="hash">#</span>
                {c.name}
              </Link>
            </li>
          );
        })}
      </ul>
    </section>
  );
}

export function PresenceDot({ status }: { status: PresenceStatus | undefined }) {
  const s = status ?? "offline";
  return <span className={`dot ${s}`} role="img" aria-label={s} />;
}

const LABELS: Record<ConnectionState, string> = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline",
};

function ConnectionBadge({ state }: { state: ConnectionState }) {
  return (
    <div className={`connection ${state}`} id="status" data-state={state} role="status" aria-live="polite">
      <span className="connection-dot" />
      {LABELS[state]}
    </div>
  );
}

export function initials(name: string | null | undefined): string {
  const parts = (name ?? "?").trim().split(/\s+/);
  return ((parts[0]?.[0] ?? "?") + (parts.length > 1 ? parts[parts.length - 1][0] : "")).toUpperCase();
}
