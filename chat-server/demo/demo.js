// The demo chat page: the REST API for history, sends and the conversation list, the
// native WebSocket protocol (docs/websocket-protocol.md) for everything live. Plain
// browser JavaScript, no dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
const RANK = { failed: -1, sending: 0, sent: 1, delivered: 2, read: 3 };
const TICKS = { failed: "failed: retry by sending again", sending: "◷", sent: "✓", delivered: "✓✓", read: "✓✓" };
const PAGE = 30;
const TYPING_EVERY_MS = 2500;
const TYPING_SHOWN_MS = 5000;

const state = {
  token: null,
  me: null,
  ws: null,
  everConnected: false, // after the first connection, reconnects resume after `cursor`
  cursor: 0, // the largest message id or change revision this page has received
  reconnectDelay: 500,
  reconnectTimer: null,
  conversations: [], // rows of GET /api/chat/conversations
  presence: new Map(), // user id -> {online, last_seen_at}
  watched: "",
  peer: null, // the open conversation's counterpart
  messages: new Map(), // id -> message, of the open conversation
  pending: new Map(), // client_message_id -> message not yet answered by the server
  outbox: [], // sends that met a network failure, retried on reconnect
  receipts: new Map(), // message id -> status, for receipts that beat their message here
  changes: new Map(), // message id -> its newest edit or deletion, while not loaded yet
  presenceFramed: new Set(), // users whose presence came in a frame (newer than the list's)
  oldest: null,
  hasMore: false,
  loadingOlder: false,
  readUpTo: 0,
  lastTyping: 0,
  typingTimer: null,
  listTimer: null,
  outboxTimer: null,
  outboxDelay: 1000,
  seq: 0,
  session: Math.random().toString(36).slice(2, 10),
};

// ---------------------------------------------------------------- errors and notices

/** A response that arrived after its session ended: nothing to show. */
class Stale extends Error {}

class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
    this.retryAfter = retryAfter;
  }
}

/** What a failed request means to the person at the keyboard. */
function explain(error) {
  if (!(error instanceof ApiError)) {
    return "Cannot reach the server. Check that it is running; the page keeps retrying.";
  }
  const said = error.body && error.body.message ? ` (${error.body.message})` : "";
  switch (error.status) {
    case 401:
      return "Signed out (401): the token is missing, invalid or expired. Sign in again.";
    case 403:
      return `Not allowed (403)${said}.`;
    case 404:
      return `Not found (404)${said}.`;
    case 422: {
      const errors = error.body && error.body.errors;
      const first = errors && Object.values(errors)[0];
      return `Not accepted (422): ${first ? first[0] : error.message}`;
    }
    case 429: {
      const wait = error.retryAfter ? ` Wait ${error.retryAfter} s and try again.` : " Wait a moment and try again.";
      return `Too many requests (429): you are going faster than the server allows.${wait}`;
    }
    case 503:
      return "The server's store is unavailable (503); try again in a moment.";
    default:
      return `The server answered ${error.status}${said}.`;
  }
}

function notify(text, kind = "error") {
  const notice = $("notice");
  notice.textContent = text;
  notice.dataset.kind = kind;
  notice.hidden = false;
}

/** Hides the notice, or only a notice of `kind`. */
function clearNotice(kind) {
  const notice = $("notice");
  if (kind === undefined || notice.dataset.kind === kind) notice.hidden = true;
}

/** Reports `error`; a 401 ends the session. Network failures are said once the page
 * knows it is online, and go when the connection is back. */
function fail(error) {
  if (error instanceof Stale) return;
  if (!(error instanceof ApiError)) {
    if (navigator.onLine) notify(explain(error), "network");
    return;
  }
  notify(explain(error));
  if (error instanceof ApiError && error.status === 401) signOut(false);
}

// ---------------------------------------------------------------- REST

async function api(method, path, body) {
  const token = state.token;
  if (!token) throw new Stale("signed out");
  const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = null;
  }
  if (state.token !== token) throw new Stale("signed out");
  if (!response.ok) throw new ApiError(response.status, data, response.headers.get("Retry-After"));
  return data;
}

// ---------------------------------------------------------------- signing in

function userOf(token) {
  const part = token.split(".")[1];
  if (!part) return null;
  try {
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
    const sub = Number(JSON.parse(json).sub);
    return Number.isSafeInteger(sub) && sub > 0 ? sub : null;
  } catch (_) {
    return null;
  }
}

async function signInAs(user) {
  let response;
  try {
    response = await fetch("/dev/token", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user_id: user }),
    });
  } catch (_) {
    notify(explain(null), "network");
    return;
  }
  const body = await response.json().catch(() => null);
  if (response.status === 404) {
    notify("This server mints development tokens only in development mode and only for pages opened on its own machine: paste a token instead.");
    return;
  }
  if (!response.ok) {
    notify(explain(new ApiError(response.status, body, response.headers.get("Retry-After"))));
    return;
  }
  await start(body.token);
}

async function start(token) {
  const me = userOf(token.trim());
  if (!me) {
    notify("That is not a token this page can read: a JWT whose sub is a user id.");
    return;
  }
  state.token = token.trim();
  state.me = me;
  // The first request proves the token before the page shows anything.
  try {
    await refreshConversations();
  } catch (error) {
    state.token = null;
    fail(error);
    return;
  }
  sessionStorage.setItem("chat-demo-token", state.token);
  clearNotice();
  $("signin").hidden = true;
  $("chat").hidden = false;
  $("whoami").textContent = `user ${me}`;
  $("whoami").hidden = false;
  $("sign-out").hidden = false;
  // Resume after the newest message the list knows; the first connection also hands
  // over (and this page acknowledges) every message no device has received yet.
  state.cursor = Math.max(0, ...state.conversations.map((row) => row.last_message.id));
  connect();
}

function signOut(clear = true) {
  sessionStorage.removeItem("chat-demo-token");
  if (state.ws) {
    state.ws.onclose = null;
    state.ws.close(1000, "signed out");
  }
  for (const timer of [state.reconnectTimer, state.typingTimer, state.listTimer, state.outboxTimer]) {
    clearTimeout(timer);
  }
  Object.assign(state, {
    token: null, me: null, ws: null, everConnected: false, cursor: 0, peer: null,
    conversations: [], watched: "", outbox: [],
  });
  state.messages.clear();
  state.pending.clear();
  state.receipts.clear();
  state.changes.clear();
  state.presence.clear();
  state.presenceFramed.clear();
  setConnection("signed-out", "signed out");
  $("chat").hidden = true;
  $("signin").hidden = false;
  $("whoami").hidden = true;
  $("sign-out").hidden = true;
  $("conversation").hidden = true;
  $("empty").hidden = false;
  if (clear) clearNotice();
}

// ---------------------------------------------------------------- WebSocket

function setConnection(kind, text) {
  const pill = $("connection");
  pill.dataset.state = kind;
  pill.textContent = text;
}

function connect() {
  if (!state.token || state.ws) return;
  if (!navigator.onLine) {
    setConnection("offline", "offline");
    return;
  }
  const query = new URLSearchParams({ token: state.token });
  if (state.everConnected) query.set("after_id", String(state.cursor));
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/api/chat/ws?${query}`);
  state.ws = ws;
  let opened = false;
  setConnection(state.everConnected ? "reconnecting" : "connecting", state.everConnected ? "reconnecting…" : "connecting…");
  ws.onopen = () => {
    opened = true;
    state.everConnected = true;
    state.reconnectDelay = 500;
    setConnection("connected", "connected");
    clearNotice("network");
    state.watched = "";
    watchPresence();
    flushOutbox();
    // Receipts and reads that happened while away are not replayed: the newest page
    // and the list have them.
    state.readUpTo = 0;
    if (state.peer !== null) refreshOpen();
    scheduleListRefresh();
  };
  ws.onmessage = (event) => {
    if (state.ws !== ws) return;
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch (_) {
      return;
    }
    handleFrame(frame);
  };
  ws.onclose = (event) => {
    if (state.ws !== ws) return;
    state.ws = null;
    if (event.code === 4001) {
      notify("Signed out: the token expired while connected. Sign in again.");
      signOut(false);
      return;
    }
    if (!opened) {
      // A refused handshake shows no status to a browser: ask REST why.
      api("GET", "/api/chat/conversations?limit=1").then(
        () => notify("The server refused the live connection: 403 if this page's origin is not in CHAT_ALLOWED_ORIGINS, 429 for too many connections of this user, 503 while its store is away. Retrying…", "network"),
        (error) => {
          if (error instanceof ApiError && error.status === 401) fail(error);
        },
      );
    }
    scheduleReconnect(event.code === 1008 ? 5000 : 0);
  };
}

function scheduleReconnect(atLeast) {
  if (!state.token) return;
  clearTimeout(state.reconnectTimer);
  if (!navigator.onLine) {
    setConnection("offline", "offline");
    return;
  }
  const delay = Math.max(atLeast, state.reconnectDelay) * (0.8 + Math.random() * 0.4);
  state.reconnectDelay = Math.min(state.reconnectDelay * 2, 10000);
  setConnection("reconnecting", `reconnecting in ${Math.round(delay / 100) / 10} s…`);
  state.reconnectTimer = setTimeout(connect, delay);
}

/** Drops the live connection (the network went away); `connect` resumes after `cursor`. */
function disconnect() {
  const ws = state.ws;
  state.ws = null;
  clearTimeout(state.reconnectTimer);
  if (ws) {
    ws.onmessage = null;
    ws.onclose = null;
    ws.close(1000, "offline");
  }
}

function sendFrame(frame) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify(frame));
    return true;
  }
  return false;
}

function handleFrame(frame) {
  switch (frame.type) {
    case "message":
      state.cursor = Math.max(state.cursor, frame.data.id);
      received(frame.data);
      break;
    case "message_updated":
    case "message_deleted":
      state.cursor = Math.max(state.cursor, frame.revision);
      if (involvesPeer(frame.data)) {
        if (state.messages.has(frame.data.id)) {
          upsert(frame.data);
        } else {
          // Not loaded yet (older history, or a page on its way): applied when it is.
          const held = state.changes.get(frame.data.id);
          state.changes.set(frame.data.id, held ? newest(held, frame.data) : frame.data);
        }
      }
      scheduleListRefresh();
      break;
    case "receipt":
      receipt(frame.data.id, frame.data.status);
      break;
    case "typing":
      typing(frame.data.user_id);
      break;
    case "presence":
      for (const seen of frame.data) {
        state.presence.set(seen.user_id, seen);
        state.presenceFramed.add(seen.user_id);
      }
      renderConversations();
      renderPeer();
      break;
    case "error":
      notify(`The server refused a request: ${frame.data.message}`);
      break;
    default:
      break;
  }
}

function received(message) {
  if (message.receiver_id === state.me) {
    // This device has it: the sender sees two ticks.
    sendFrame({ type: "ack", ids: [message.id] });
    if (message.sender_id === state.peer) hideTyping();
  }
  if (involvesPeer(message)) {
    upsert(message);
    markRead();
  }
  scheduleListRefresh();
}

function involvesPeer(message) {
  const peer = state.peer;
  return peer !== null && (message.sender_id === peer || message.receiver_id === peer);
}

function receipt(id, status) {
  const message = state.messages.get(id);
  if (message) {
    upsert({ ...message, status });
  } else if (RANK[status] > (RANK[state.receipts.get(id)] ?? 0)) {
    state.receipts.set(id, status);
  }
}

// ---------------------------------------------------------------- presence and typing

function watchPresence() {
  const ids = [...new Set([state.peer, ...state.conversations.map((row) => row.user_id)])]
    .filter((id) => id !== null && id !== state.me)
    .slice(0, 100);
  const key = ids.join(",");
  if (key === state.watched) return;
  if (sendFrame({ type: "watch", user_ids: ids })) state.watched = key;
}

function presenceText(user) {
  const seen = state.presence.get(user);
  if (!seen) return "";
  if (seen.online) return "online";
  if (!seen.last_seen_at) return "";
  return `last seen ${since(seen.last_seen_at)}`;
}

function since(iso) {
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `at ${clock(iso)}`;
  return new Date(iso).toLocaleString();
}

function clock(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function typing(user) {
  if (user !== state.peer) return;
  const shown = $("typing");
  shown.textContent = `user ${user} is typing…`;
  shown.hidden = false;
  clearTimeout(state.typingTimer);
  state.typingTimer = setTimeout(hideTyping, TYPING_SHOWN_MS);
}

function hideTyping() {
  clearTimeout(state.typingTimer);
  $("typing").hidden = true;
}

function typed() {
  const now = Date.now();
  if (state.peer === null || now - state.lastTyping < TYPING_EVERY_MS) return;
  if (sendFrame({ type: "typing", receiver_id: state.peer })) state.lastTyping = now;
}

// ---------------------------------------------------------------- conversation list

async function refreshConversations() {
  const body = await api("GET", "/api/chat/conversations?limit=100");
  const before = new Set(state.conversations.map((row) => row.user_id));
  state.conversations = body.data;
  // A new counterpart may now be seen (presence shows to people one has a conversation
  // with): watch again for a fresh snapshot.
  if (body.data.some((row) => !before.has(row.user_id))) state.watched = "";
  for (const row of body.data) {
    // A presence frame is newer than the list's snapshot.
    if (!state.presenceFramed.has(row.user_id)) {
      state.presence.set(row.user_id, { user_id: row.user_id, online: row.online, last_seen_at: row.last_seen_at });
    }
  }
  const total = $("total-unread");
  total.textContent = String(body.meta.total_unread);
  total.hidden = body.meta.total_unread === 0;
  renderConversations();
  renderPeer();
  watchPresence();
}

function scheduleListRefresh() {
  clearTimeout(state.listTimer);
  state.listTimer = setTimeout(() => refreshConversations().catch(fail), 150);
}

function renderConversations() {
  const list = $("conversations");
  list.replaceChildren(
    ...state.conversations.map((row) => {
      const item = document.createElement("li");
      item.className = "conversation-row";
      item.dataset.userId = String(row.user_id);
      item.setAttribute("aria-current", String(row.user_id === state.peer));
      const dot = document.createElement("span");
      dot.className = "dot";
      dot.dataset.online = String(Boolean(state.presence.get(row.user_id)?.online));
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = `user ${row.user_id}`;
      const unread = document.createElement("span");
      unread.className = "badge unread";
      unread.textContent = String(row.unread_count);
      unread.hidden = row.unread_count === 0;
      const preview = document.createElement("span");
      preview.className = "preview";
      const last = row.last_message;
      const text = last.deleted_at ? "message deleted" : last.message;
      preview.textContent = `${last.sender_id === state.me ? "you: " : ""}${text}`;
      item.append(dot, name, unread, preview);
      item.addEventListener("click", () => openConversation(row.user_id));
      return item;
    }),
  );
  $("no-conversations").hidden = state.conversations.length > 0;
}

// ---------------------------------------------------------------- one conversation

async function openConversation(peer) {
  if (peer === state.me) {
    notify("That is you: open a conversation with another user id.");
    return;
  }
  state.peer = peer;
  state.messages.clear();
  state.pending.clear();
  state.changes.clear();
  state.oldest = null;
  state.hasMore = false;
  state.readUpTo = 0;
  $("messages").replaceChildren();
  $("conversation").hidden = false;
  $("empty").hidden = true;
  hideTyping();
  renderPeer();
  renderConversations();
  watchPresence();
  $("history-state").textContent = "loading…";
  try {
    const body = await api("GET", `/api/chat/messages/${peer}?limit=${PAGE}`);
    if (state.peer !== peer) return;
    for (const message of body.data) upsert(message);
    state.oldest = body.data.length ? body.data[body.data.length - 1].id : null;
    state.hasMore = body.meta.has_more;
    historyState();
    scrollToEnd();
    markRead();
  } catch (error) {
    $("history-state").textContent = "";
    fail(error);
  }
  $("composer").focus();
}

/** Loads the open conversation's newest page again (after a reconnect): statuses
 * and changes missed while away, merged into what is shown. */
async function refreshOpen() {
  const peer = state.peer;
  try {
    const body = await api("GET", `/api/chat/messages/${peer}?limit=${PAGE}`);
    if (state.peer !== peer) return;
    for (const message of body.data) upsert(message);
    if (state.oldest === null && body.data.length) {
      state.oldest = body.data[body.data.length - 1].id;
      state.hasMore = body.meta.has_more;
      historyState();
    }
    markRead();
  } catch (error) {
    fail(error);
  }
}

function historyState() {
  $("history-state").textContent = state.hasMore
    ? "scroll up for older messages"
    : state.messages.size ? "the beginning of the conversation" : "no messages yet: say hello";
}

async function loadOlder() {
  if (!state.hasMore || state.loadingOlder || state.oldest === null) return;
  state.loadingOlder = true;
  const peer = state.peer;
  const scroller = $("scroller");
  const fromBottom = scroller.scrollHeight - scroller.scrollTop;
  $("history-state").textContent = "loading older messages…";
  try {
    const body = await api("GET", `/api/chat/messages/${peer}?before_id=${state.oldest}&limit=${PAGE}`);
    if (state.peer !== peer) return;
    for (const message of body.data) upsert(message);
    if (body.data.length) state.oldest = body.data[body.data.length - 1].id;
    state.hasMore = body.meta.has_more;
    historyState();
    // Keep the message under the reader's eyes where it was.
    scroller.scrollTop = scroller.scrollHeight - fromBottom;
  } catch (error) {
    fail(error);
  } finally {
    state.loadingOlder = false;
  }
}

function renderPeer() {
  const peer = state.peer;
  if (peer === null) return;
  $("peer-name").textContent = `user ${peer}`;
  $("peer-presence").textContent = presenceText(peer);
  $("peer-dot").dataset.online = String(Boolean(state.presence.get(peer)?.online));
}

function nearEnd() {
  const scroller = $("scroller");
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
}

function scrollToEnd() {
  const scroller = $("scroller");
  scroller.scrollTop = scroller.scrollHeight;
}

/** The later of two states of one message: times have one fixed-width format, so
 * they compare as strings. */
function newest(a, b) {
  return (b.updated_at || "") > (a.updated_at || "") ? b : a;
}

/** Shows `message` (new or a newer state of one shown) in place, by id: its text from
 * the newest state known, its status the furthest any answer or receipt reached. */
function upsert(message) {
  const known = state.messages.get(message.id);
  const change = state.changes.get(message.id);
  let latest = message;
  for (const other of [known, change]) {
    if (other) latest = newest(latest, other);
  }
  let status = message.status;
  for (const candidate of [known && known.status, change && change.status, state.receipts.get(message.id)]) {
    if (candidate && RANK[candidate] > RANK[status]) status = candidate;
  }
  state.receipts.delete(message.id);
  state.changes.delete(message.id);
  const merged = { ...latest, status };
  const stick = nearEnd();
  let element = document.querySelector(`#messages > li[data-id="${merged.id}"]`);
  if (!element && merged.client_message_id && merged.sender_id === state.me) {
    element = pendingElement(merged.client_message_id);
    state.pending.delete(merged.client_message_id);
  }
  if (!element) {
    element = document.createElement("li");
    place(element, merged.id);
  }
  state.messages.set(merged.id, merged);
  draw(element, merged);
  if (stick) scrollToEnd();
}

/** The element of the caller's own message still waiting for its id. */
function pendingElement(clientId) {
  return document.querySelector(`#messages > li.mine:not([data-id])[data-client-id="${CSS.escape(clientId)}"]`);
}

/** Puts a new element for message `id` in id order, before any message still pending. */
function place(element, id) {
  const list = $("messages");
  element.dataset.id = String(id);
  for (const other of list.children) {
    const otherId = other.dataset.id ? Number(other.dataset.id) : Infinity;
    if (otherId > id) {
      list.insertBefore(element, other);
      return;
    }
  }
  list.append(element);
}

function draw(element, message) {
  const mine = message.sender_id === state.me;
  element.className = `message ${mine ? "mine" : "theirs"}${message.deleted_at ? " deleted" : ""}${message.status === "failed" ? " failed" : ""}`;
  if (message.id !== undefined) element.dataset.id = String(message.id);
  if (message.client_message_id) element.dataset.clientId = message.client_message_id;
  const text = document.createElement("div");
  text.className = "text";
  text.textContent = message.deleted_at ? "message deleted" : message.message;
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = `${clock(message.created_at)}${message.edited_at && !message.deleted_at ? " · edited" : ""}`;
  if (mine) {
    const ticks = document.createElement("span");
    ticks.className = "ticks";
    ticks.dataset.status = message.status;
    ticks.title = message.status;
    ticks.setAttribute("aria-label", message.status);
    ticks.textContent = TICKS[message.status] || "";
    meta.append(ticks);
  }
  element.replaceChildren(text, meta);
}

/** Marks what the open conversation shows from the peer as read, while the page is
 * seen; the list's counts follow once the server has it. */
async function markRead() {
  const peer = state.peer;
  if (peer === null || document.visibilityState !== "visible") return;
  let upTo = 0;
  for (const message of state.messages.values()) {
    if (message.sender_id === peer && message.status !== "read" && message.id > upTo) upTo = message.id;
  }
  if (upTo <= state.readUpTo) return;
  const before = state.readUpTo;
  state.readUpTo = upTo;
  try {
    await api("POST", `/api/chat/conversations/${peer}/read`, { up_to_id: upTo });
    for (const message of state.messages.values()) {
      if (message.sender_id === peer && message.id <= upTo) message.status = "read";
    }
    scheduleListRefresh();
  } catch (error) {
    // Asked again at the next chance.
    if (state.peer === peer && state.readUpTo === upTo) state.readUpTo = before;
    fail(error);
  }
}

// ---------------------------------------------------------------- sending

function send(text) {
  const peer = state.peer;
  const clientId = `demo-${state.session}:${++state.seq}`;
  const local = {
    client_message_id: clientId,
    sender_id: state.me,
    receiver_id: peer,
    message: text,
    status: "sending",
    created_at: new Date().toISOString(),
    edited_at: null,
    deleted_at: null,
  };
  state.pending.set(clientId, local);
  const element = document.createElement("li");
  $("messages").append(element);
  draw(element, local);
  scrollToEnd();
  deliver(local);
}

/** Posts `local`; a network failure keeps it for the next connection, with the same
 * `client_message_id`, so a retry never stores it twice. */
async function deliver(local) {
  try {
    const body = await api("POST", "/api/chat/send", {
      receiver_id: local.receiver_id,
      message: local.message,
      client_message_id: local.client_message_id,
    });
    if (state.peer === local.receiver_id) upsert(body.data);
    scheduleListRefresh();
  } catch (error) {
    if (error instanceof Stale) return;
    if (!(error instanceof ApiError)) {
      state.outbox.push(local);
      notify("Not sent yet: the server cannot be reached. It goes out when the connection is back.", "network");
      scheduleOutbox();
      return;
    }
    state.pending.delete(local.client_message_id);
    // An earlier attempt was stored after all (its answer was lost, its frame came).
    for (const message of state.messages.values()) {
      if (message.sender_id === state.me && message.client_message_id === local.client_message_id) return;
    }
    const element = pendingElement(local.client_message_id);
    if (element) draw(element, { ...local, status: "failed" });
    fail(error);
  }
}

/** Tries the outbox again after a growing wait. */
function scheduleOutbox() {
  clearTimeout(state.outboxTimer);
  state.outboxTimer = setTimeout(flushOutbox, state.outboxDelay);
  state.outboxDelay = Math.min(state.outboxDelay * 2, 10000);
}

function flushOutbox() {
  clearTimeout(state.outboxTimer);
  const waiting = state.outbox;
  state.outbox = [];
  if (!waiting.length) {
    state.outboxDelay = 1000;
    return;
  }
  clearNotice("network");
  for (const local of waiting) deliver(local);
}

// ---------------------------------------------------------------- wiring

/** The user id typed into input `id`, or null (and a notice) when it is not one. */
function userIdIn(id) {
  const user = Number($(id).value);
  if (!Number.isSafeInteger(user) || user < 1) {
    notify("A user id is a whole number of at least 1.");
    return null;
  }
  return user;
}

function wire() {
  const devTokens = document.body.dataset.devTokens === "on";
  $("signin-dev").hidden = !devTokens;
  $("signin-dev-hint").hidden = !devTokens;
  $("signin-dev").addEventListener("submit", (event) => {
    event.preventDefault();
    const user = userIdIn("signin-user");
    if (user !== null) signInAs(user);
  });
  $("signin-token").addEventListener("submit", (event) => {
    event.preventDefault();
    start($("signin-token-text").value);
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("open-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const user = userIdIn("open-user");
    if (user === null) return;
    clearNotice();
    openConversation(user);
  });
  const composer = $("composer");
  composer.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer-form").requestSubmit();
    }
  });
  composer.addEventListener("input", typed);
  $("composer-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = composer.value.trim();
    if (!text || state.peer === null) return;
    composer.value = "";
    state.lastTyping = 0;
    send(text);
  });
  $("scroller").addEventListener("scroll", () => {
    if ($("scroller").scrollTop < 40) loadOlder();
  });
  document.addEventListener("visibilitychange", markRead);
  window.addEventListener("offline", () => {
    disconnect();
    setConnection("offline", "offline");
  });
  window.addEventListener("online", () => {
    state.reconnectDelay = 500;
    connect();
    flushOutbox();
  });
  // Presence texts such as "2 min ago" age.
  setInterval(renderPeer, 30000);

  const saved = sessionStorage.getItem("chat-demo-token");
  if (saved) start(saved);
}

wire();
