/**
 * The browser chat page: logs in by setting a cookie (sent on the
 * WebSocket upgrade, read by the chat server's factory), joins a thread,
 * sends and receives, and shows the synced state and enabled methods.
 * `window.hl` exposes the connection to the Playwright test.
 */
import { CallError, connect } from "../../src/index.js";
import { ChatClient, connectChat, SERVICE, type ChatConnection, type ChatMessage, type ChatState } from "./chat.gen.js";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);
const wsUrl = params.get("ws") ?? `ws://${location.hostname}:9001`;
const shown = new Set<string>();

declare global {
  interface Window {
    hl: {
      conn?: ChatConnection;
      chat?: ChatClient;
      CallError: typeof CallError;
      received: ChatMessage[];
      connect: typeof connect;
      SERVICE: typeof SERVICE;
      ChatClient: typeof ChatClient;
    };
  }
}
window.hl = { CallError, received: [], connect, SERVICE, ChatClient };

function showMessage(m: ChatMessage): void {
  // A message posted while joining is both in the history and pushed.
  const key = `${m.seq}/${m.user}/${m.text}`;
  if (shown.has(key)) return;
  shown.add(key);
  window.hl.received.push(m);
  const li = document.createElement("li");
  li.innerHTML = `<span class="thread"></span><span class="who"></span><span class="text"></span>`;
  (li.children[0] as HTMLElement).textContent = `#${m.thread}`;
  (li.children[1] as HTMLElement).textContent = m.user;
  (li.children[2] as HTMLElement).textContent = m.text;
  $("messages").appendChild(li);
}

function render(conn: ChatConnection): void {
  const s: ChatState = conn.state;
  $("state").textContent = `user: ${JSON.stringify(s.user)}\nthreads: ${JSON.stringify(s.threads)}`;
  const ul = $("features");
  ul.replaceChildren(
    ...conn.service.methods.map((m) => {
      const li = document.createElement("li");
      li.textContent = m.name;
      li.dataset.method = m.name;
      if (!conn.isEnabled(m.name)) li.className = "off";
      return li;
    }),
  );
  ($("send").querySelector("button") as HTMLButtonElement).disabled = !conn.isEnabled("send_message");
  const { inFlight, waiting } = conn.load;
  $("conn").textContent = `${wsUrl}\ncalls in flight: ${inFlight}, waiting: ${waiting}\nevents dropped: ${conn.eventsDropped}`;
}

function fail(e: unknown): void {
  $("error").textContent = e instanceof Error ? e.message : String(e);
}

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const name = ($("name") as HTMLInputElement).value.trim();
  if (!name) return;
  document.cookie = `hl_user=${encodeURIComponent(name)}; path=/; SameSite=Lax`;
  $("status").textContent = "connecting";
  try {
    const conn = await connectChat(wsUrl);
    const chat = new ChatClient(conn);
    window.hl.conn = conn;
    window.hl.chat = chat;
    conn.on("ChatMessage", showMessage);
    conn.onState(() => render(conn));
    conn.onFeatures(() => render(conn));
    conn.onClose((reason) => {
      $("status").textContent = `disconnected: ${reason}`;
    });
    render(conn);
    $("status").textContent = "connected";
    ($("join").querySelector("button") as HTMLButtonElement).disabled = false;
  } catch (e) {
    $("status").textContent = "connection failed";
    fail(e);
  }
});

$("join").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const { conn, chat } = window.hl;
  if (!conn || !chat) return;
  try {
    const history = await chat.join(conn.state.user, ($("thread") as HTMLInputElement).value);
    history.forEach(showMessage);
    render(conn);
  } catch (e) {
    fail(e);
  }
});

$("send").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const { chat } = window.hl;
  const input = $("text") as HTMLInputElement;
  if (!chat || !input.value) return;
  try {
    const r = await chat.sendMessage(($("thread") as HTMLInputElement).value, input.value);
    if (r.ok) input.value = "";
    else fail(`not sent: ${r.error.tag}`);
    if (window.hl.conn) render(window.hl.conn);
  } catch (e) {
    fail(e);
  }
});
