// Reconnect and resume in a real Chromium against the real chat server:
// (a) a TCP proxy cuts alice's connection mid-stream while bob keeps
//     posting: alice comes back by herself, logs in again through the
//     on-connect hook on a fresh state, and receives every message of the
//     thread exactly once and in order, with no gap notice; calls pending
//     at a cut fail with Disconnected, later ones succeed;
// (b) the server is killed and restarted on its port and data directory:
//     alice comes back by herself, logs in again, and gets a gap notice
//     for the thread (the new server has no event history), never silence;
// (c) close() ends the status at closed and resolves `closed`, also while
//     reconnecting;
// (d) the hook failing: on the first transport connect fails with a typed
//     error and nothing reconnects; on a later one that transport is
//     dropped and the next attempt follows the backoff; idempotent calls
//     pending at a cut are sent again, others fail and are never resent;
//     calls while reconnecting wait, or fail at once per option.
//   node --test test/browser/   (after `npm run build` and
//   `cargo build -p hardlight-server --example chat-server`)
import { test } from "node:test";
import assert from "node:assert/strict";
import { chatServer, chromiumPath, launch, staticServer, tcpProxy } from "./harness.mjs";

const skip = chromiumPath() ? false : "chromium not installed (apt-get install chromium); CI installs it";
/** Bound on waiting for one expected thing in the page; reaching it fails the test (not a speed assertion). */
const WAIT_MS = 15_000;
const THREAD = "t1";
const TOPIC = `chat:${THREAD}`;

/** A page of the chat example (for its module), logged in by cookie as `user`, with nothing connected yet. */
async function page(browser, origin, user) {
  const context = await browser.newContext();
  const p = await context.newPage();
  p.on("pageerror", (e) => console.error(`[${user}] page error: ${e.message}`));
  await p.goto(`${origin}/examples/chat/index.html`);
  await p.waitForFunction(() => window.hl !== undefined);
  await p.evaluate((u) => (document.cookie = `hl_user=${u}; path=/; SameSite=Lax`), user);
  return p;
}

/**
 * Alice's connection: reconnect (fast schedule), resume, and a hook that
 * logs in again by joining the thread. Records, in order, every message,
 * gap notice and status, and what the hook saw of the state and features.
 */
async function connectAlice(p, url) {
  await p.evaluate(
    async ({ url, thread }) => {
      const { connect, SERVICE, ChatClient } = window.hl;
      const t = { log: [], statuses: [], hook: [], joined: [], states: [], features: [], drops: [] };
      window.t = t;
      t.conn = await connect(url, SERVICE, {
        reconnect: { initialMs: 20, maxMs: 200 },
        resume: true,
        connectTimeoutMs: 5000,
        onConnect: async (c) => {
          // What the new transport brought, before the log-in changes it.
          t.hook.push({ state: JSON.stringify(c.state), enabled: c.enabledMethods() });
          const history = await new ChatClient(c).join("alice", thread);
          t.joined.push(history.map((m) => m.text));
        },
      });
      t.chat = new ChatClient(t.conn);
      t.conn.on("ChatMessage", (m) => t.log.push(`msg:${m.text}`));
      t.conn.onGap((g) => t.log.push(`gap:${g.topic}:${g.missed === null ? "unknown" : g.missed}`));
      t.conn.onStatus((s) => t.statuses.push(s.state === "reconnecting" ? `reconnecting ${s.attempt}` : s.state));
      t.conn.onState((s) => t.states.push(JSON.stringify(s)));
      t.conn.onFeatures((m) => t.features.push(m.join(",")));
      t.conn.onDisconnect((reason) => t.drops.push(reason));
    },
    { url, thread: THREAD },
  );
}

/** Bob, connected straight to the server, posts "<prefix>0", "<prefix>1", ... one after another until told to stop. */
async function startPosting(p, url, prefix) {
  await p.evaluate(
    async ({ url, thread, prefix }) => {
      const { connect, SERVICE, ChatClient } = window.hl;
      const conn = await connect(url, SERVICE);
      const chat = new ChatClient(conn);
      await chat.join("bob", thread);
      const b = { sent: [], stop: false };
      window.bob = b;
      b.done = (async () => {
        for (let i = 0; !b.stop; i++) {
          const r = await chat.sendMessage(thread, `${prefix}${i}`);
          if (!r.ok) throw new Error(`bob's post failed: ${r.error.tag}`);
          b.sent.push(`msg:${prefix}${i}`);
          await new Promise((r) => setTimeout(r, 2));
        }
        conn.close();
        return b.sent;
      })();
    },
    { url, thread: THREAD, prefix },
  );
}

async function stopPosting(p) {
  return p.evaluate(async () => {
    window.bob.stop = true;
    return window.bob.done;
  });
}

/** Waits until alice's status has been `connected` `n` times since she connected first (each reconnect adds one). */
const reconnected = (p, n) =>
  p.waitForFunction((n) => window.t.statuses.filter((s) => s === "connected").length >= n, n, { timeout: WAIT_MS });
const pause = (ms) => new Promise((r) => setTimeout(r, ms));

test("reconnect and resume in Chromium: proxy cuts, a server restart, close", { skip, timeout: 90_000 }, async () => {
  const site = await staticServer();
  let server = await chatServer(site.origin);
  const proxy = await tcpProxy(server.port);
  const chromium = await launch();
  try {
    const alice = await page(chromium.browser, site.origin, "alice");
    const bob = await page(chromium.browser, site.origin, "bob");
    await connectAlice(alice, proxy.url);
    assert.deepEqual(await alice.evaluate(() => window.t.statuses), [], "ready before listening: connected already");
    assert.deepEqual(await alice.evaluate(() => window.t.conn.status), { state: "connected" });

    // (a) Cuts mid-stream while bob posts.
    await startPosting(bob, server.url, "a");
    const CUTS = 3;
    for (let cut = 0; cut < CUTS; cut++) {
      await alice.waitForFunction((n) => window.t.log.length > n, 10 * (cut + 1), { timeout: WAIT_MS });
      if (cut === CUTS - 1) {
        // Calls in flight at the cut: the proxy stops forwarding alice's
        // bytes, so they are pending when it cuts. Posts are not
        // idempotent: they fail, and are never sent again.
        proxy.stall();
        await alice.evaluate(() => {
          window.t.pending = [1, 2, 3].map((i) =>
            window.t.chat.sendMessage("t1", `pending${i}`).then(
              () => "answered",
              (e) => `${e.name}:${e.kind}`,
            ),
          );
        });
        await alice.waitForFunction(() => window.t.conn.load.inFlight === 3, null, { timeout: WAIT_MS });
      }
      proxy.cut();
      await reconnected(alice, cut + 1);
    }
    assert.deepEqual(await alice.evaluate(() => Promise.all(window.t.pending)), [
      "CallError:Disconnected",
      "CallError:Disconnected",
      "CallError:Disconnected",
    ]);
    const later = await alice.evaluate(() =>
      window.t.chat.history("t1").then((h) => h.map((m) => m.text), (e) => e.message),
    );
    assert.ok(Array.isArray(later) && later.length > 0, `a call after the cuts succeeds: ${later}`);
    assert.ok(!later.some((m) => m.startsWith("pending")), "the failed posts never reached the server");
    await pause(100); // bob keeps posting after the last cut
    const sentA = await stopPosting(bob);
    await alice.waitForFunction((n) => window.t.log.length >= n, sentA.length, { timeout: WAIT_MS });
    const a = await alice.evaluate(() => ({ ...window.t, conn: undefined, chat: undefined, pending: undefined }));
    assert.deepEqual(a.log, sentA, "every message once, in order, no gap notice");
    assert.equal(a.hook.length, CUTS + 1, "the hook ran on every transport");
    for (const h of a.hook) {
      // Each transport starts from the server's fresh initial state (the
      // cookie's user, no thread: the old transport's join is not carried
      // over) and feature set (send_message off until the hook joins).
      assert.deepEqual(h, { state: '{"user":"alice","threads":[]}', enabled: ["join", "leave", "history"] });
    }
    assert.deepEqual(
      a.statuses.filter((s) => !s.startsWith("reconnecting")),
      Array(CUTS).fill("connected"),
      `${a.statuses}`,
    );
    assert.ok(a.statuses.includes("reconnecting 0"), `${a.statuses}`);
    assert.equal(a.drops.length, CUTS, `${a.drops}`);
    assert.ok(a.drops.every((r) => r.startsWith("closed with code 1006")), `${a.drops}`);
    assert.ok(proxy.accepted >= CUTS + 1);
    assert.deepEqual(await alice.evaluate(() => window.t.conn.state), { user: "alice", threads: ["t1"] });
    // Subscribers heard each replacement: per reconnect, the fresh state
    // and feature set, then the log-in's changes.
    const fresh = '{"user":"alice","threads":[]}';
    const joined = '{"user":"alice","threads":["t1"]}';
    assert.deepEqual(a.states, Array(CUTS).fill([fresh, joined]).flat(), `${a.states}`);
    assert.deepEqual(
      a.features,
      Array(CUTS).fill(["join,leave,history", "join,leave,send_message,history"]).flat(),
      `${a.features}`,
    );

    // (b) The server dies and comes back on its port and data directory.
    await alice.evaluate(() => (window.t.log.length = 0));
    await startPosting(bob, server.url, "b");
    await alice.waitForFunction(() => window.t.log.length >= 5, null, { timeout: WAIT_MS });
    const sentB = await stopPosting(bob);
    await alice.waitForFunction((n) => window.t.log.length >= n, sentB.length, { timeout: WAIT_MS });
    await server.kill();
    await alice.waitForFunction(() => window.t.conn.status.state === "reconnecting", null, { timeout: WAIT_MS });
    server = await chatServer(site.origin, [], { port: server.port, data: server.data });
    await reconnected(alice, CUTS + 1);
    await startPosting(bob, server.url, "c");
    await alice.waitForFunction(() => window.t.log.some((e) => e.startsWith("msg:c")), null, { timeout: WAIT_MS });
    const sentC = await stopPosting(bob);
    await alice.waitForFunction((n) => window.t.log.length >= n, sentB.length + 1 + sentC.length, {
      timeout: WAIT_MS,
    });
    const b = await alice.evaluate(() => ({ log: window.t.log, hook: window.t.hook, joined: window.t.joined }));
    assert.deepEqual(
      b.log,
      [...sentB, `gap:${TOPIC}:unknown`, ...sentC],
      "a gap notice for the thread before the first message of the new server, never silence",
    );
    assert.equal(b.hook.length, CUTS + 2, "logged in again through the hook");
    assert.deepEqual(b.hook.at(-1), { state: '{"user":"alice","threads":[]}', enabled: ["join", "leave", "history"] });
    const persisted = b.joined.at(-1);
    assert.ok(
      sentB.every((m) => persisted.includes(m.slice(4))),
      "the restarted server kept the log (same data directory): the join's history has the messages before the kill",
    );

    // (c) close(): while connected, and while reconnecting.
    const closed = await alice.evaluate(async () => {
      const { conn } = window.t;
      conn.close();
      const reason = await conn.closed;
      const after = await window.t.chat.history("t1").then(() => "answered", (e) => e.kind);
      return { reason, status: conn.status, last: window.t.statuses.at(-1), after };
    });
    assert.deepEqual(closed, {
      reason: "closed by the application",
      status: { state: "closed", reason: "closed by the application" },
      last: "closed",
      after: "Disconnected",
    });

    await connectAlice(alice, proxy.url);
    await server.kill(); // nothing to reconnect to: alice keeps retrying
    await alice.waitForFunction(() => window.t.statuses.includes("reconnecting 2"), null, { timeout: WAIT_MS });
    const whileReconnecting = await alice.evaluate(async () => {
      const { conn } = window.t;
      conn.close();
      return { reason: await conn.closed, status: conn.status.state };
    });
    assert.deepEqual(whileReconnecting, { reason: "closed by the application", status: "closed" });
    const attempts = proxy.accepted;
    await pause(300);
    assert.equal(proxy.accepted, attempts, "no attempt after close()");
  } finally {
    await chromium.close();
    proxy.close();
    server.stop();
    site.server.close();
  }
});

test("hook failures, idempotent calls and calls while reconnecting, in Chromium", { skip, timeout: 60_000 }, async () => {
  const site = await staticServer();
  const server = await chatServer(site.origin);
  const proxy = await tcpProxy(server.port);
  const chromium = await launch();
  try {
    const p = await page(chromium.browser, site.origin, "carol");
    // Options are checked before anything connects: a wrong method name says which exist.
    const unknown = await p.evaluate((url) => {
      const { connect, SERVICE } = window.hl;
      return connect(url, SERVICE, { idempotent: ["nope"] }).then(() => "connected", (e) => `${e.name}: ${e.message}`);
    }, server.url);
    assert.equal(unknown, "TypeError: idempotent: Chat has no method 'nope' (its methods: join, leave, send_message, history)");

    // The first transport's hook fails: connect rejects, typed; nothing reconnects.
    const before = proxy.accepted;
    const first = await p.evaluate(async (url) => {
      const { connect, SERVICE } = window.hl;
      return connect(url, SERVICE, {
        reconnect: { initialMs: 10 },
        onConnect: () => {
          throw new Error("no token");
        },
      }).then(() => "connected", (e) => ({ name: e.name, kind: e.kind, message: e.message }));
    }, proxy.url);
    assert.deepEqual(first, { name: "ConnectError", kind: "Hook", message: "on-connect hook failed: no token" });
    await pause(200);
    assert.equal(proxy.accepted, before + 1, "no reconnect after the first transport failed");
    // close() before the first transport is ready (from the hook): connect
    // rejects as aborted, and the connection ends closed.
    const aborted = await p.evaluate(async (url) => {
      const { connect, SERVICE } = window.hl;
      let conn;
      const outcome = await connect(url, SERVICE, { reconnect: true, onConnect: (c) => ((conn = c), c.close()) }).then(
        () => "connected",
        (e) => `${e.name}:${e.kind}`,
      );
      return { outcome, closed: await conn.closed, status: conn.status.state };
    }, server.url);
    assert.deepEqual(aborted, { outcome: "ConnectError:Aborted", closed: "closed by the application", status: "closed" });

    // The hook fails on the first reconnect only: that transport is dropped,
    // the next attempt (attempt 1, after the backoff) succeeds.
    await p.evaluate(async (url) => {
      const { connect, SERVICE, ChatClient } = window.hl;
      const t = { statuses: [], runs: 0 };
      window.t = t;
      t.conn = await connect(url, SERVICE, {
        reconnect: { initialMs: 20, maxMs: 100 },
        idempotent: ["join"], // history is marked #[idempotent] in the trait
        onConnect: async (c) => {
          t.runs++;
          if (t.runs === 2) throw new Error("token expired");
          await new ChatClient(c).join("carol", "t1");
        },
      });
      t.chat = new ChatClient(t.conn);
      t.conn.onStatus((s) => t.statuses.push(s.state === "reconnecting" ? `reconnecting ${s.attempt}` : s.state));
    }, proxy.url);
    // Pending at the cut: a join (listed idempotent), a post (not), and a
    // history (marked #[idempotent] in the Rust trait, so in SERVICE).
    proxy.stall();
    await p.evaluate(() => {
      const settle = (x) => x.then((v) => (Array.isArray(v) ? "answered" : "posted"), (e) => `${e.name}:${e.kind}`);
      const { chat } = window.t;
      window.t.pending = [settle(chat.join("carol", "t1")), settle(chat.sendMessage("t1", "once")), settle(chat.history("t1"))];
    });
    await p.waitForFunction(() => window.t.conn.load.inFlight === 3, null, { timeout: WAIT_MS });
    proxy.cut();
    await p.waitForFunction(() => window.t.statuses.includes("connected"), null, { timeout: WAIT_MS });
    const after = await p.evaluate(async () => ({
      statuses: window.t.statuses,
      runs: window.t.runs,
      pending: await Promise.all(window.t.pending),
      history: (await window.t.chat.history("t1")).map((m) => m.text),
    }));
    assert.deepEqual(after.statuses, ["reconnecting 0", "reconnecting 1", "connected"], "the failed hook counted as a failed attempt");
    assert.equal(after.runs, 3);
    assert.deepEqual(
      after.pending,
      ["answered", "CallError:Disconnected", "answered"],
      "only the listed and the marked idempotent calls were sent again",
    );
    assert.ok(!after.history.includes("once"), "the post that failed was never sent again");

    // While reconnecting: calls wait (default) or fail at once (failFastWhileDisconnected).
    await p.evaluate(async (url) => {
      const { connect, SERVICE, ChatClient } = window.hl;
      const fast = await connect(url, SERVICE, { reconnect: { initialMs: 10, maxMs: 50 }, failFastWhileDisconnected: true });
      window.fast = { conn: fast, chat: new ChatClient(fast) };
    }, proxy.url);
    proxy.refuse(true);
    proxy.cut();
    await p.waitForFunction(
      () => window.t.conn.status.state === "reconnecting" && window.fast.conn.status.state === "reconnecting",
      null,
      { timeout: WAIT_MS },
    );
    const whileDown = await p.evaluate(async () => {
      window.waited = window.t.chat.history("t1").then((h) => `answered:${h.length}`, (e) => e.kind);
      const fast = await window.fast.chat.history("t1").then(() => "answered", (e) => e.kind);
      return { fast, status: window.fast.conn.status.state, waiting: window.t.conn.load.waiting };
    });
    assert.deepEqual(whileDown, { fast: "Disconnected", status: "reconnecting", waiting: 1 });
    proxy.refuse(false);
    assert.match(await p.evaluate(() => window.waited), /^answered:\d+$/, "the waiting call went out on the next transport");
    await p.evaluate(() => {
      window.t.conn.close();
      window.fast.conn.close();
      return Promise.all([window.t.conn.closed, window.fast.conn.closed]);
    });
  } finally {
    await chromium.close();
    proxy.close();
    server.stop();
    site.server.close();
  }
});
