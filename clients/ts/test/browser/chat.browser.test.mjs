// Two Chromium pages run the chat page against the real chat
// server: log in by cookie, join, messages both ways, state and features
// updating, a foreign origin refused, and pending calls failing at once
// when the server dies. Saves a screenshot of the page.
//   node --test test/browser/   (after `npm run build` and
//   `cargo build -p hardlight-server --example chat-server`)
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { REPO, chatServer, chromiumPath, launch, staticServer } from "./harness.mjs";

const skip = chromiumPath() ? false : "chromium not installed (apt-get install chromium); CI installs it";
// A test run must not change tracked files: the screenshot goes under
// target/ unless HL_SCREENSHOT names a path (docs/browser-chat.png to
// refresh the README's picture).
const SCREENSHOT = process.env.HL_SCREENSHOT ?? join(REPO, "target/browser/browser-chat.png");

async function login(browser, origin, ws, name) {
  const context = await browser.newContext({ viewport: { width: 900, height: 560 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] page error: ${e.message}`));
  await page.goto(`${origin}/examples/chat/index.html?ws=${encodeURIComponent(ws)}`);
  await page.fill("#name", name);
  await page.click("#login button");
  await page.waitForFunction(() => document.querySelector("#status").textContent !== "connecting");
  return page;
}

const enabled = (page) => page.$$eval("#features li:not(.off)", (lis) => lis.map((li) => li.dataset.method));
const stateText = (page) => page.textContent("#state");
const texts = (page) => page.$$eval("#messages .text", (els) => els.map((e) => e.textContent));

test("chat between two Chromium pages through the chat server", { skip, timeout: 120_000 }, async () => {
  const site = await staticServer();
  const foreign = await staticServer();
  const server = await chatServer(site.origin);
  const chromium = await launch();
  try {
    const alice = await login(chromium.browser, site.origin, server.url, "alice");
    assert.equal(await alice.textContent("#status"), "connected", await alice.textContent("#error"));
    // The cookie the page set reached the server's factory: the initial
    // state names the user before any call.
    assert.equal(await stateText(alice), 'user: "alice"\nthreads: []');
    assert.deepEqual(await enabled(alice), ["join", "leave", "history"], "send_message is off until a join");

    await alice.click("#join button");
    await alice.waitForFunction(() => document.querySelector("#state").textContent.includes('["general"]'));
    await alice.waitForFunction(() => !document.querySelector("#send button").disabled);
    assert.deepEqual(await enabled(alice), ["join", "leave", "send_message", "history"]);

    const bob = await login(chromium.browser, site.origin, server.url, "bob");
    assert.equal(await stateText(bob), 'user: "bob"\nthreads: []');
    await bob.click("#join button");
    await bob.waitForFunction(() => !document.querySelector("#send button").disabled);

    await alice.fill("#text", "hello from alice");
    await alice.click("#send button");
    await bob.waitForFunction(() => window.hl.received.some((m) => m.text === "hello from alice"));
    await bob.fill("#text", "hi alice, bob here: 😀");
    await bob.click("#send button");
    await alice.waitForFunction(() => window.hl.received.some((m) => m.user === "bob"));
    assert.deepEqual(await texts(alice), ["hello from alice", "hi alice, bob here: 😀"]);
    assert.deepEqual(await texts(bob), ["hello from alice", "hi alice, bob here: 😀"]);
    const seqs = await alice.evaluate(() => window.hl.received.map((m) => typeof m.seq + ":" + m.seq));
    assert.deepEqual(seqs, ["bigint:1", "bigint:2"], "u64 arrives as bigint");

    // An application error arrives typed, not as a transport failure.
    const notJoined = await alice.evaluate(async () => {
      const r = await window.hl.chat.sendMessage("elsewhere", "x");
      return r.ok ? "ok" : r.error.tag;
    });
    assert.equal(notJoined, "NotJoined");
    // Leaving the last thread turns send_message off again, on the page too.
    await bob.evaluate(() => window.hl.chat.leave("general"));
    await bob.waitForFunction(() => document.querySelector("#send button").disabled);
    assert.equal(await stateText(bob), 'user: "bob"\nthreads: []');
    const disabled = await bob.evaluate(() => window.hl.chat.sendMessage("general", "x").then(() => "sent", (e) => e.code));
    assert.equal(disabled, "MethodDisabled");

    mkdirSync(join(SCREENSHOT, ".."), { recursive: true });
    await alice.screenshot({ path: SCREENSHOT });

    // A page from an origin outside the allow-list is refused (403 at the upgrade).
    const mallory = await login(chromium.browser, foreign.origin, server.url, "mallory");
    assert.equal(await mallory.textContent("#status"), "connection failed");
    assert.match(await mallory.textContent("#error"), /connection failed: closed with code 1006/);

    // A page built from another version of the service is refused (its
    // fingerprint travels as an offered subprotocol); the right one connects.
    const fingerprints = await alice.evaluate(async (ws) => {
      const { connect, SERVICE } = window.hl;
      const other = await connect(ws, { ...SERVICE, fingerprint: "0000000000000001" }).then(() => "connected", (e) => e.message);
      const same = await connect(ws, SERVICE).then((c) => (c.close(), "connected"), (e) => e.message);
      return { other, same };
    }, server.url);
    assert.match(fingerprints.other, /connection failed: closed with code 1006/);
    assert.equal(fingerprints.same, "connected");

    // More calls than the 256 call ids: the rest wait for a free id, and all complete.
    const burst = await alice.evaluate(async () => {
      const calls = Array.from({ length: 600 }, () => window.hl.chat.history("general"));
      const waiting = window.hl.conn.load.waiting;
      const results = await Promise.all(calls);
      return { waiting, ok: results.filter((r) => r.length === 2).length, after: window.hl.conn.load };
    });
    assert.deepEqual(burst, { waiting: 600 - 256, ok: 600, after: { inFlight: 0, waiting: 0 } });

    // A call whose server does not answer times out; its id stays reserved
    // until the late answer arrives, which is then dropped.
    await server.pause();
    const timedOut = await alice.evaluate(async () => {
      const t = performance.now();
      const kind = await window.hl.chat.history("general", { timeoutMs: 300 }).then(() => "ok", (e) => e.kind);
      return { kind, ms: performance.now() - t, load: window.hl.conn.load };
    });
    assert.equal(timedOut.kind, "Timeout");
    // Not before its time limit (a bound above would only measure the machine).
    assert.ok(timedOut.ms >= 300, `${timedOut.ms} ms`);
    assert.deepEqual(timedOut.load, { inFlight: 1, waiting: 0 });
    server.resume();
    await alice.waitForFunction(() => window.hl.conn.load.inFlight === 0);

    // Killing the server fails pending calls with Disconnected, not at their
    // (default 30 s) timeout: the kind says which.
    await server.pause();
    await alice.evaluate(() => {
      window.pending = Array.from({ length: 8 }, () =>
        window.hl.chat.history("general").then(
          () => ({ ok: true }),
          (e) => ({ kind: e.kind, at: performance.now() }),
        ),
      );
    });
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(await alice.evaluate(() => window.hl.conn.load), { inFlight: 8, waiting: 0 });
    const killedAt = await alice.evaluate(() => performance.now());
    process.kill(server.child.pid, "SIGKILL");
    const outcomes = await alice.evaluate(() => Promise.all(window.pending));
    for (const o of outcomes) {
      assert.equal(o.kind, "Disconnected", `failed ${o.at - killedAt} ms after the kill`);
    }
    assert.match(await alice.textContent("#status"), /^disconnected: closed with code 1006/);
    const after = await alice.evaluate(() => window.hl.chat.history("general").then(() => "ok", (e) => e.kind));
    assert.equal(after, "Disconnected");
  } finally {
    await chromium.close();
    server.stop();
    site.server.close();
    foreign.server.close();
  }
});
