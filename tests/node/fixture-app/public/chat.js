// The demo chat page: better-auth email/password sign-in on this origin, rooms from the app's
// memberships, and real-time messages, typing indicators and presence through the gateway
// (`io({withCredentials: true})` on this origin; the reverse proxy sends /socket.io/ to it).
// Plain browser JavaScript, no build step; `io` comes from /vendor/socket.io.min.js.
"use strict";

const $ = (sel) => document.querySelector(sel);
const TYPING_IDLE_MS = 3000; // stop typing after this long without a keystroke
const TYPING_REFRESH_MS = 3000; // repeat typing:start while typing (the gateway expires a start after 5 s)
const TYPING_SHOW_MS = 8000; // forget a remote typing state that never got its stop

const state = {
  user: null,
  socket: null,
  rooms: new Map(), // room name -> {room, kind, id, label}
  current: null, // room name
  messages: new Map(), // room name -> Map(message id -> message)
  unread: new Map(), // room name -> count
  typing: new Map(), // room name -> Map(userId -> {name, timer})
  presence: new Map(), // userId -> {status, lastSeen}
  names: new Map(), // userId -> name
  myTyping: null, // {room, idleTimer, lastStart}
};

// ---- HTTP helpers (same origin: the session cookie goes along)
async function api(path, { method = "GET", body } = {}) {
  const res = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try {
    data = await res.json();
  } catch {}
  return { ok: res.ok, status: res.status, data };
}

function show(view) {
  $("#signin-view").hidden = view !== "signin";
  $("#chat-view").hidden = view !== "chat";
  $("#signout").hidden = view !== "chat";
}

function setStatus(st, detail = "") {
  const el = $("#status");
  el.dataset.state = st;
  el.dataset.transport = st === "connected" ? detail : "";
  el.textContent = detail ? `${st} · ${detail}` : st;
}

function showError(where, text) {
  const el = $(where);
  el.textContent = text;
  if (text) setTimeout(() => el.textContent === text && (el.textContent = ""), 6000);
}

function roomOfMessage(m) {
  if (m.channelId) return `channel:${m.channelId}`;
  if (m.conversationId) return `dm:${m.conversationId}`;
  return null;
}

function targetOf(room) {
  const r = state.rooms.get(room);
  return r.kind === "channel" ? { channelId: r.id } : { conversationId: r.id };
}

const newId = () =>
  globalThis.crypto?.randomUUID?.() ?? `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;

// ---- sign in / out
async function signIn(ev) {
  ev.preventDefault();
  const email = $("#email").value.trim();
  const password = $("#password").value;
  $("#signin-btn").disabled = true;
  try {
    const r = await api("/api/auth/sign-in/email", { method: "POST", body: { email, password } });
    if (!r.ok || !r.data?.user) {
      showError("#signin-error", r.data?.message || `Sign-in failed (${r.status})`);
      return;
    }
    $("#password").value = "";
    await startChat(r.data.user);
  } finally {
    $("#signin-btn").disabled = false;
  }
}

async function signOut() {
  stopTyping();
  state.socket?.disconnect();
  state.socket = null;
  await api("/api/auth/sign-out", { method: "POST", body: {} });
  state.user = null;
  setStatus("offline");
  $("#me").textContent = "";
  show("signin");
}

// ---- rooms
async function startChat(user) {
  state.user = user;
  state.names.set(user.id, user.name);
  $("#me").textContent = user.name;
  const r = await api("/api/realtime/memberships");
  if (!r.ok) {
    show("signin");
    showError("#signin-error", `Could not load your rooms (${r.status})`);
    return;
  }
  state.rooms.clear();
  for (const c of r.data.channels) state.rooms.set(`channel:${c.id}`, { room: `channel:${c.id}`, kind: "channel", id: c.id, label: `# ${c.id}` });
  for (const c of r.data.conversations) state.rooms.set(`dm:${c.id}`, { room: `dm:${c.id}`, kind: "dm", id: c.id, label: `@ ${c.id}` });
  show("chat");
  renderRooms();
  connect();
  const first = state.rooms.keys().next().value;
  if (first) await selectRoom(first);
}

function renderRooms() {
  for (const [listSel, kind] of [["#channels", "channel"], ["#conversations", "dm"]]) {
    const ul = $(listSel);
    ul.replaceChildren();
    for (const r of state.rooms.values()) {
      if (r.kind !== kind) continue;
      const li = document.createElement("li");
      li.dataset.room = r.room;
      li.classList.toggle("active", r.room === state.current);
      const name = document.createElement("span");
      name.textContent = r.label;
      li.append(name);
      const n = state.unread.get(r.room) || 0;
      if (n) {
        const b = document.createElement("span");
        b.className = "badge";
        b.textContent = String(n);
        li.append(b);
      }
      li.addEventListener("click", () => selectRoom(r.room));
      ul.append(li);
    }
  }
}

async function selectRoom(room) {
  if (state.current !== room) stopTyping();
  state.current = room;
  state.unread.delete(room);
  $("#room-title").textContent = state.rooms.get(room).label;
  $("#message-input").disabled = false;
  $("#send").disabled = false;
  renderRooms();
  renderMessages();
  renderTyping();
  const r = state.rooms.get(room);
  const q = r.kind === "channel" ? `channelId=${encodeURIComponent(r.id)}` : `conversationId=${encodeURIComponent(r.id)}`;
  const res = await api(`/api/messages?${q}`);
  if (res.ok) {
    for (const m of res.data.messages) addMessage(m, { quiet: true });
    if (state.current === room) renderMessages();
  }
}

// ---- messages
function addMessage(m, { quiet = false } = {}) {
  const room = roomOfMessage(m);
  if (!room) return;
  if (m.author?.id && m.author.name) state.names.set(m.author.id, m.author.name);
  if (!state.messages.has(room)) state.messages.set(room, new Map());
  const list = state.messages.get(room);
  const isNew = !list.has(m.id);
  list.set(m.id, m);
  if (quiet) return;
  if (room === state.current) renderMessages();
  else if (isNew) {
    state.unread.set(room, (state.unread.get(room) || 0) + 1);
    renderRooms();
  }
}

function renderMessages() {
  const ol = $("#messages");
  ol.replaceChildren();
  const list = state.messages.get(state.current);
  if (!list) return;
  for (const m of list.values()) {
    const li = document.createElement("li");
    li.dataset.id = m.id;
    if (m.author?.id === state.user?.id) li.classList.add("mine");
    const author = document.createElement("span");
    author.className = "author";
    author.textContent = m.author?.name ?? m.author?.id ?? "?";
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = m.createdAt ? new Date(m.createdAt).toLocaleTimeString() : "";
    const content = document.createElement("div");
    content.className = "content";
    content.textContent = m.content;
    li.append(author, time, content);
    ol.append(li);
  }
  ol.scrollTop = ol.scrollHeight;
}

function send(ev) {
  ev.preventDefault();
  const input = $("#message-input");
  const content = input.value.trim();
  if (!content || !state.current || !state.socket) return;
  stopTyping();
  const payload = { ...targetOf(state.current), content, clientId: newId() };
  input.value = "";
  state.socket.timeout(5000).emit("message:send", payload, (err, ack) => {
    if (err) return showError("#chat-error", "The message was not confirmed in time");
    if (!ack?.ok) return showError("#chat-error", `Not sent: ${ack?.error?.message ?? ack?.error ?? "refused"}`);
    if (ack.message) addMessage(ack.message);
  });
}

// ---- typing (mine)
function onInput() {
  if (!state.socket?.connected || !state.current) return;
  const now = Date.now();
  const t = state.myTyping;
  if (t && t.room !== state.current) stopTyping();
  if (!state.myTyping) {
    state.myTyping = { room: state.current, idleTimer: null, lastStart: 0 };
  }
  const my = state.myTyping;
  if (now - my.lastStart >= TYPING_REFRESH_MS) {
    my.lastStart = now;
    state.socket.emit("typing:start", targetOf(my.room));
  }
  clearTimeout(my.idleTimer);
  my.idleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
}

function stopTyping() {
  const my = state.myTyping;
  if (!my) return;
  state.myTyping = null;
  clearTimeout(my.idleTimer);
  if (state.socket?.connected && state.rooms.has(my.room)) state.socket.emit("typing:stop", targetOf(my.room));
}

// ---- typing (others)
function onTypingUpdate(u) {
  if (!u || typeof u.room !== "string" || !u.userId) return;
  if (u.user?.name) state.names.set(u.userId, u.user.name);
  if (!state.typing.has(u.room)) state.typing.set(u.room, new Map());
  const m = state.typing.get(u.room);
  clearTimeout(m.get(u.userId)?.timer);
  if (u.isTyping) {
    const timer = setTimeout(() => {
      m.delete(u.userId);
      renderTyping();
    }, TYPING_SHOW_MS);
    m.set(u.userId, { name: u.user?.name ?? u.userId, timer });
  } else {
    m.delete(u.userId);
  }
  renderTyping();
}

function renderTyping() {
  const el = $("#typing");
  const m = state.typing.get(state.current);
  const names = m ? [...m.values()].map((t) => t.name) : [];
  el.dataset.users = names.join(",");
  el.textContent =
    names.length === 0 ? "" : names.length === 1 ? `${names[0]} is typing…` : `${names.slice(0, -1).join(", ")} and ${names.at(-1)} are typing…`;
}

// ---- presence
function onPresence(p) {
  if (!p?.userId) return;
  state.presence.set(p.userId, { status: p.status, lastSeen: p.lastSeen });
  renderPresence();
}

function renderPresence() {
  const ul = $("#presence");
  ul.replaceChildren();
  for (const [userId, p] of state.presence) {
    const li = document.createElement("li");
    li.dataset.userId = userId;
    li.dataset.status = p.status;
    li.textContent = `${state.names.get(userId) ?? userId} (${p.status})`;
    if (p.lastSeen) li.title = `last seen ${new Date(p.lastSeen).toLocaleString()}`;
    ul.append(li);
  }
}

// ---- the socket
function connect() {
  state.socket?.disconnect();
  setStatus("connecting");
  const socket = io({ withCredentials: true });
  state.socket = socket;
  socket.on("connect", () => {
    setStatus("connected", socket.io.engine.transport.name);
    socket.io.engine.once("upgrade", (t) => socket.connected && setStatus("connected", t.name));
  });
  socket.on("disconnect", (reason) => {
    setStatus("disconnected", reason);
    state.typing.clear();
    renderTyping();
  });
  socket.on("connect_error", (err) => {
    setStatus("error", err.message);
    if (err.data?.code === "INVALID_SESSION") {
      // Signed out elsewhere, or the session expired: back to the sign-in form.
      socket.disconnect();
      show("signin");
      showError("#signin-error", "Your session has ended; please sign in again.");
    }
  });
  socket.on("message:new", (m) => addMessage(m));
  socket.on("message:deleted", (d) => {
    const room = roomOfMessage(d);
    state.messages.get(room)?.delete(d.messageId);
    if (room === state.current) renderMessages();
  });
  socket.on("typing:update", onTypingUpdate);
  socket.on("presence:update", onPresence);
  socket.on("error", (e) => showError("#chat-error", `${e?.code ?? "ERROR"}: ${e?.message ?? ""}`));
}

// ---- start
async function main() {
  $("#signin-form").addEventListener("submit", signIn);
  $("#signout").addEventListener("click", signOut);
  $("#composer").addEventListener("submit", send);
  $("#message-input").addEventListener("input", onInput);
  $("#message-input").addEventListener("blur", stopTyping);
  // A hidden tab is "away"; the user is "away" once all their tabs are (the gateway decides).
  document.addEventListener("visibilitychange", () => {
    if (state.socket?.connected) state.socket.emit(document.hidden ? "presence:setAway" : "presence:setActive");
  });
  const r = await api("/api/auth/get-session");
  if (r.ok && r.data?.user) await startChat(r.data.user);
  else show("signin");
}

main().catch((err) => showError("#signin-error", String(err?.message ?? err)));
