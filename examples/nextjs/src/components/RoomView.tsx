"use client";
import Link from "next/link";
import { useCallback, useEffect, useLayoutEffect, useRef, useState, type KeyboardEvent } from "react";
import { localId, markFailed, mergeHistory, removeMessage, upsertMessage, type UiMessage } from "@/lib/message-list";
import { listen } from "@/lib/socket-client";
import type { ChatMessage, MessageDeleted, Target, TypingUpdate, UserRef } from "@/lib/socket-events";
import { conversationTitle, initials, PresenceDot, useWorkspace } from "./WorkspaceShell";

export type RoomProps =
  | { kind: "channel"; id: string; name: string; initialMessages: ChatMessage[] }
  | { kind: "dm"; id: string; name: string; initialMessages: ChatMessage[] };

const ACK_TIMEOUT_MS = 10_000;
const TYPING_RESEND_MS = 2500;
const TYPING_IDLE_MS = 3000;
const TYPING_SHOWN_MS = 6000;

const newClientId = () =>
  typeof crypto !== "undefined" && "randomUUID" in crypto ? crypto.randomUUID() : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;

export function RoomView(props: RoomProps) {
  const { socket, me, data, removed, conversations, connection, presence } = useWorkspace();
  const { kind, id } = props;
  const roomName = `${kind}:${id}`;
  const target: Target = kind === "channel" ? { channelId: id } : { conversationId: id };
  const [messages, setMessages] = useState<UiMessage[]>(props.initialMessages);
  const [typers, setTypers] = useState<Record<string, { name: string; until: number }>>({});
  const [notice, setNotice] = useState<string | null>(null);
  const [showMembers, setShowMembers] = useState(false);
  const gone = kind === "channel" ? removed[id] : undefined;
  const listRef = useRef<HTMLOListElement>(null);

  const refetch = useCallback(async () => {
    const q = kind === "channel" ? `channelId=${encodeURIComponent(id)}` : `conversationId=${encodeURIComponent(id)}`;
    const res = await fetch(`/api/messages?${q}`, { cache: "no-store" }).catch(() => null);
    if (!res?.ok) return;
    const body = (await res.json()) as { messages: ChatMessage[] };
    setMessages((local) => mergeHistory(local, body.messages));
  }, [kind, id]);

  useEffect(() => {
    const inRoom = (m: { channelId?: string; conversationId?: string }) => (kind === "channel" ? m.channelId === id : m.conversationId === id);
    const onNew = (m: ChatMessage) => {
      if (!inRoom(m)) return;
      setMessages((list) => upsertMessage(list, m));
      setTypers(({ [m.author.id]: _, ...rest }) => rest);
    };
    const onDeleted = (d: MessageDeleted) => inRoom(d) && setMessages((list) => removeMessage(list, d.messageId));
    const onTyping = (u: TypingUpdate) => {
      if (u.room !== roomName || u.userId === me.id) return;
      setTypers(({ [u.userId]: _, ...rest }) => (u.isTyping ? { ...rest, [u.userId]: { name: u.user.name ?? "Someone", until: Date.now() + TYPING_SHOWN_MS } } : rest));
    };
    // A connect that did not restore the socket (first connect, or the gap was too long) may
    // have missed messages: reload the room's history and merge.
    const onConnect = () => {
      if (!socket.recovered) void refetch();
    };
    const unlisten = listen(socket, { "message:new": onNew, "message:deleted": onDeleted, "typing:update": onTyping, connect: onConnect });
    // The server rendered the history before these listeners existed: catch up once.
    if (socket.connected) void refetch();
    return unlisten;
  }, [socket, kind, id, roomName, me.id, refetch]);

  // Typing indicators expire by themselves if a stop never comes.
  useEffect(() => {
    if (!Object.keys(typers).length) return;
    const t = setInterval(() => {
      const now = Date.now();
      setTypers((all) => {
        const kept = Object.entries(all).filter(([, v]) => v.until > now);
        return kept.length === Object.keys(all).length ? all : Object.fromEntries(kept);
      });
    }, 1000);
    return () => clearInterval(t);
  }, [typers]);

  useEffect(() => {
    if (gone) setMessages([]);
  }, [gone]);

  // Keep the newest message in view.
  useLayoutEffect(() => {
    const el = listRef.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [messages.length]);

  const send = (content: string) => {
    const clientId = newClientId();
    const optimistic: UiMessage = { id: localId(clientId), ...target, author: { id: me.id, name: me.name }, content, clientId, createdAt: new Date().toISOString(), pending: true };
    setMessages((list) => [...list, optimistic]);
    socket.timeout(ACK_TIMEOUT_MS).emit("message:send", { ...target, content, clientId }, (err, res) => {
      if (err) setMessages((list) => markFailed(list, clientId, "Not confirmed: check your connection"));
      else if (!res.ok) setMessages((list) => markFailed(list, clientId, res.error));
      else setMessages((list) => upsertMessage(list, res.message));
    });
  };

  const retry = (m: UiMessage) => {
    setMessages((list) => list.filter((x) => x.id !== m.id));
    send(m.content);
  };

  const remove = (m: UiMessage) => {
    socket.timeout(ACK_TIMEOUT_MS).emit("message:delete", { messageId: m.id }, (err, res) => {
      if (err) setNotice("The delete was not confirmed: try again");
      else if (!res.ok) setNotice(`Could not delete: ${res.error}`);
      else setMessages((list) => removeMessage(list, m.id));
    });
  };

  const title =
    kind === "channel" ? (
      <>
        <span className="hash">#</span>
        {props.name}
      </>
    ) : (
      (() => {
        const conv = conversations.find((c) => c.id === id);
        const other = conv?.participants.find((p) => p.id !== me.id);
        return (
          <>
            <PresenceDot status={other ? presence[other.id]?.status : "online"} />
            {conv ? conversationTitle(conv, me.id) : props.name}
          </>
        );
      })()
    );

  if (gone) {
    return (
      <section className="room-gone" role="alert" id="room-gone">
        <h1>
          <span className="hash">#</span>
          {props.name}
        </h1>
        <p>{gone === "removed" ? `You were removed from #${props.name}.` : `You left #${props.name}.`} Its messages are no longer available to you.</p>
        <Link className="primary button" href={`/w/${data.workspace.id}`}>
          Back to {data.workspace.name}
        </Link>
      </section>
    );
  }

  const typing = Object.values(typers).map((t) => t.name);
  return (
    <>
      <header className="room-header">
        <h1 id="room-title">{title}</h1>
        {kind === "channel" && (
          <button type="button" className="ghost" id="members-toggle" onClick={() => setShowMembers((s) => !s)} aria-expanded={showMembers}>
            Members
          </button>
        )}
      </header>
      {notice && (
        <div className="notice" role="alert">
          {notice}
          <button type="button" className="icon" aria-label="Dismiss" onClick={() => setNotice(null)}>
            ×
          </button>
        </div>
      )}
      <div className="room-body">
        <div className="room-main">
          <ol className="messages" id="messages" ref={listRef} aria-label="Messages">
            {messages.length === 0 && <li className="empty">No messages yet. Say hello!</li>}
            {messages.map((m) => (
              <MessageItem key={m.id} m={m} mine={m.author.id === me.id} onDelete={remove} onRetry={retry} />
            ))}
          </ol>
          <div className="typing" id="typing" aria-live="polite">
            {typing.length === 1 ? `${typing[0]} is typing…` : typing.length > 1 ? `${typing.join(", ")} are typing…` : ""}
          </div>
          <Composer
            key={roomName}
            placeholder={kind === "channel" ? `Message #${props.name}` : "Write a message"}
            disabled={connection !== "connected"}
            onSend={send}
            onTyping={(on) => socket.emit(on ? "typing:start" : "typing:stop", target)}
          />
        </div>
        {showMembers && kind === "channel" && <ChannelMembers channelId={id} onClose={() => setShowMembers(false)} />}
      </div>
    </>
  );
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

function MessageItem({ m, mine, onDelete, onRetry }: { m: UiMessage; mine: boolean; onDelete: (m: UiMessage) => void; onRetry: (m: UiMessage) => void }) {
  const cls = ["message", mine ? "mine" : "", m.pending ? "pending" : "", m.failed ? "failed" : ""].filter(Boolean).join(" ");
  return (
    <li className={cls} data-message-id={m.pending || m.failed ? undefined : m.id}>
      <span className="avatar">{initials(m.author.name)}</span>
      <div className="message-body">
        <div className="message-meta">
          <span className="author">{m.author.name ?? "Someone"}</span>
          <time dateTime={m.createdAt}>{timeFormat.format(new Date(m.createdAt))}</time>
          {m.pending && <span className="muted">Sending…</span>}
        </div>
        <p className="content">{m.content}</p>
        {m.failed && (
          <p className="send-error">
            {m.failed}.{" "}
            <button type="button" className="link" onClick={() => onRetry(m)}>
              Retry
            </button>
          </p>
        )}
      </div>
      {mine && !m.pending && !m.failed && (
        <button type="button" className="icon delete" aria-label="Delete message" title="Delete message" onClick={() => onDelete(m)}>
          🗑
        </button>
      )}
    </li>
  );
}

function Composer({ placeholder, disabled, onSend, onTyping }: { placeholder: string; disabled: boolean; onSend: (text: string) => void; onTyping: (typing: boolean) => void }) {
  const [text, setText] = useState("");
  const typing = useRef<{ sentAt: number; idle?: ReturnType<typeof setTimeout> }>({ sentAt: 0 });

  const stopTyping = useCallback(() => {
    clearTimeout(typing.current.idle);
    if (typing.current.sentAt) onTyping(false);
    typing.current = { sentAt: 0 };
  }, [onTyping]);

  useEffect(() => () => clearTimeout(typing.current.idle), []);

  const change = (value: string) => {
    setText(value);
    if (!value.trim()) return stopTyping();
    const now = Date.now();
    if (now - typing.current.sentAt > TYPING_RESEND_MS) {
      onTyping(true);
      typing.current.sentAt = now;
    }
    clearTimeout(typing.current.idle);
    typing.current.idle = setTimeout(stopTyping, TYPING_IDLE_MS);
  };

  const submit = () => {
    const content = text.trim();
    if (!content || disabled) return;
    stopTyping();
    onSend(content);
    setText("");
  };

  const onKey = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      submit();
    }
  };

  return (
    <form
      className="composer"
      onSubmit={(e) => {
        e.preventDefault();
        submit();
      }}
    >
      <textarea id="message-input" rows={1} value={text} placeholder={placeholder} maxLength={4000} onChange={(e) => change(e.target.value)} onKeyDown={onKey} onBlur={stopTyping} aria-label="Message" />
      <button type="submit" className="primary" id="send" disabled={disabled || !text.trim()}>
        Send
      </button>
      {disabled && <p className="composer-hint">You can send again once the connection is back.</p>}
    </form>
  );
}

function ChannelMembers({ channelId, onClose }: { channelId: string; onClose: () => void }) {
  const { me, data, presence } = useWorkspace();
  const [state, setState] = useState<{ members: UserRef[]; canManage: boolean } | null>(null);
  const [error, setError] = useState<string | null>(null);

  const load = useCallback(async () => {
    const res = await fetch(`/api/channels/${encodeURIComponent(channelId)}/members`, { cache: "no-store" });
    if (res.ok) setState(await res.json());
  }, [channelId]);

  useEffect(() => {
    void load();
  }, [load]);

  async function call(method: "POST" | "DELETE", userId: string) {
    const url = `/api/channels/${encodeURIComponent(channelId)}/members${method === "DELETE" ? `?userId=${encodeURIComponent(userId)}` : ""}`;
    const res = await fetch(url, { method, headers: { "content-type": "application/json" }, body: method === "POST" ? JSON.stringify({ userId }) : undefined });
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      setError(body.detail ?? body.error ?? "That did not work");
      return;
    }
    setError(null);
    await load();
  }

  const inChannel = new Set(state?.members.map((m) => m.id));
  const addable = data.members.filter((m) => !inChannel.has(m.id));
  return (
    <aside className="panel" id="channel-members" aria-label="Channel members">
      <header>
        <h2>Members</h2>
        <button type="button" className="icon" aria-label="Close" onClick={onClose}>
          ×
        </button>
      </header>
      {!state ? (
        <p className="muted">Loading…</p>
      ) : (
        <ul>
          {state.members.map((m) => (
            <li key={m.id} data-user-id={m.id}>
              <PresenceDot status={m.id === me.id ? "online" : presence[m.id]?.status} />
              <span className="member-name">{m.name}</span>
              {m.id === me.id ? (
                <button type="button" className="link" onClick={() => call("DELETE", m.id)}>
                  Leave
                </button>
              ) : (
                state.canManage && (
                  <button type="button" className="link danger" aria-label={`Remove ${m.name}`} onClick={() => call("DELETE", m.id)}>
                    Remove
                  </button>
                )
              )}
            </li>
          ))}
        </ul>
      )}
      {addable.length > 0 && (
        <form
          className="add-member"
          onSubmit={(e) => {
            e.preventDefault();
            const userId = String(new FormData(e.currentTarget).get("userId") ?? "");
            if (userId) void call("POST", userId);
          }}
        >
          <select name="userId" aria-label="Add a member" defaultValue="">
            <option value="" disabled>
              Add someone…
            </option>
            {addable.map((m) => (
              <option key={m.id} value={m.id}>
                {m.name}
              </option>
            ))}
          </select>
          <button type="submit" className="primary small">
            Add
          </button>
        </form>
      )}
      {error && <p className="form-error">{error}</p>}
    </aside>
  );
}
