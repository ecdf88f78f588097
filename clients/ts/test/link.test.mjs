// The session across transports (src/session.ts, the rules of
// core/src/session_link.rs) and the reconnect loop (src/reconnect.ts), on
// byte buffers and a fake transport: which calls fail, wait or are sent
// again after a drop, the held state while the on-connect hook runs, state
// and features replaced whole, and resume: the acknowledgement in the
// stream, RESUME first, duplicates dropped, gaps reported.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CallError, ClientSession, supervise, DEFAULT_BACKOFF, KIND_RESUME } from "../dist/src/index.js";

import { drain, events } from "./drain.mjs";
const u64 = (v) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
  return [...b];
};
const features = (count, bits) => new Uint8Array([0x21, count, 0, bits]);
const state = (index, archive) => new Uint8Array([0x20, 1, index, archive.length, 0, 0, 0, ...archive]);
const point = (base, seq, initial) => new Uint8Array([0x34, ...u64(base), ...u64(seq), initial ? 1 : 0]);
const topicEvent = (topic, epoch, offset, archive) =>
  new Uint8Array([0x32, 0, 0, ...u64(epoch), ...u64(offset), topic.length, ...Buffer.from(topic), ...archive]);
const gap = (topic, epoch, offset, missed) =>
  new Uint8Array([0x33, ...u64(epoch), ...u64(offset), ...u64(missed), topic.length, ...Buffer.from(topic)]);
const ready = (s) => {
  s.reopen(false);
  s.handleMessage(features(8, 0xff));
  s.release();
};

test("a drop fails sent calls once and sends only idempotent ones again, on the next transport after release", () => {
  const s = new ClientSession();
  s.setIdempotent(7);
  ready(s);
  events(s);
  const pay = s.startCall(1, new Uint8Array([0x70]));
  const get = s.startCall(7, new Uint8Array([0x67]));
  drain(s);
  s.handleDisconnect("cut");
  const ev = events(s);
  assert.equal(ev.length, 2, JSON.stringify(ev.map((e) => e.type)));
  assert.equal(ev[0].call, pay);
  assert.ok(ev[0].result instanceof CallError && ev[0].result.kind === "Disconnected");
  assert.match(ev[0].result.message, /cut/);
  assert.deepEqual(ev[1], { type: "disconnected", reason: "cut" });
  assert.equal(s.inFlight, 0);
  assert.equal(s.waiting, 1, "the idempotent call waits for the next transport");
  assert.deepEqual(s.link, { state: "down", reason: "cut" });
  s.reopen(false);
  assert.deepEqual(drain(s), [], "held: nothing goes out before release");
  s.release();
  const out = drain(s);
  assert.equal(out.length, 1);
  assert.deepEqual([...out[0]], [0x01, 0, 7, 0, 0x67], "the same call, on id 0 of the new transport");
  s.handleMessage(new Uint8Array([0x10, 0, 1]));
  assert.equal(events(s)[0].call, get, "answered under its original token");
});

test("calls while down fail at once or wait per policy; only the hook's calls go out while held", () => {
  const s = new ClientSession();
  ready(s);
  s.handleDisconnect("gone");
  assert.throws(() => s.startCall(1, new Uint8Array()), (e) => e instanceof CallError && e.kind === "Disconnected");
  s.setWaitWhileDisconnected(true);
  const waiting = s.startCall(1, new Uint8Array([0x78]));
  assert.deepEqual(drain(s), []);
  assert.throws(() => s.startPriorityCall(2, new Uint8Array()), (e) => e.kind === "Disconnected", "no hook call while down");
  s.reopen(false);
  const hook = s.startPriorityCall(2, new Uint8Array([0x74]));
  const out = drain(s);
  assert.equal(out.length, 1, "only the hook's call goes out while held");
  assert.deepEqual([...out[0]], [0x01, 0, 2, 0, 0x74]);
  s.handleMessage(new Uint8Array([0x10, out[0][1]]));
  assert.deepEqual(drain(s), [], "the reply does not release waiting calls");
  assert.equal(events(s).find((e) => e.type === "reply").call, hook);
  s.release();
  const [released] = drain(s);
  assert.deepEqual([released[0], ...released.subarray(2)], [0x01, 1, 0, 0x78], "the waiting call, after the hook's");
  assert.ok(s.abandon(waiting));
});

test("waiting calls are bounded while down too, and a timed-out waiting call is forgotten", () => {
  const s = new ClientSession(2);
  s.setWaitWhileDisconnected(true);
  ready(s);
  s.handleDisconnect("gone");
  const a = s.startCall(1, new Uint8Array());
  s.startCall(1, new Uint8Array());
  assert.throws(() => s.startCall(1, new Uint8Array()), (e) => e.kind === "TooManyWaiting" && /limit 2/.test(e.message));
  assert.ok(s.abandon(a));
  s.reopen(false);
  s.release();
  assert.equal(drain(s).length, 1, "the abandoned call is never sent");
});

test("reopen forgets the old state, features and limits; the new ones replace them whole", () => {
  const s = new ClientSession();
  s.reopen(false);
  s.handleMessage(new Uint8Array([0x22, ...u64(64).slice(0, 4), 1, 0, 0, 0]));
  s.handleMessage(state(0, [1]));
  s.handleMessage(features(2, 0b01));
  s.release();
  assert.ok(s.isReady && s.stateField(0) && s.acceptsDeadlineAndCancel);
  assert.throws(() => s.startCall(0, new Uint8Array(100)), (e) => e.kind === "TooLarge");
  events(s);
  s.handleDisconnect("cut");
  s.reopen(false);
  assert.ok(!s.isReady, "not ready until the new feature set");
  assert.equal(s.serverMaxMessageSize, undefined, "the old limit is forgotten");
  assert.ok(!s.acceptsDeadlineAndCancel);
  s.handleMessage(state(1, [2]));
  assert.equal(s.stateField(0), undefined, "replaced, not merged");
  assert.deepEqual([...s.stateField(1)], [2]);
  s.handleMessage(features(2, 0b10));
  assert.ok(s.isReady && s.features.has(1) && !s.features.has(0));
  const ev = events(s).filter((e) => e.type !== "disconnected");
  assert.deepEqual(ev, [{ type: "state", changed: [1], replaced: true }, { type: "features" }]);
  s.handleMessage(state(0, [3]));
  assert.ok(s.stateField(1), "later messages merge again");
  // A server with no state for the new transport: its features clear the old fields.
  s.handleDisconnect("cut");
  s.reopen(false);
  events(s);
  s.handleMessage(features(2, 0b11));
  assert.equal(s.stateField(0), undefined);
  assert.equal(s.stateField(1), undefined);
  assert.deepEqual(events(s), [{ type: "state", changed: [], replaced: true }, { type: "features" }]);
});

test("resume: the initial RESUME_POINT before the features is the server's yes, and RESUME goes out first", () => {
  const s = new ClientSession();
  s.enableResume();
  s.reopen(true);
  s.handleMessage(new Uint8Array([0x22, 0, 0, 1, 0, 1, 0, 0, 0]));
  assert.ok(!s.isReady);
  s.handleMessage(point(3, 10, true));
  s.handleMessage(state(0, [1]));
  assert.ok(!s.isReady, "not before the features");
  s.handleMessage(features(8, 0xff));
  assert.ok(s.isReady);
  const hook = s.startPriorityCall(0, new Uint8Array());
  const out = drain(s);
  assert.equal(out.length, 2);
  // As the Rust client: RESUME is built before the point is adopted, so a
  // first connection names none (the server replays since it subscribed).
  assert.deepEqual(out[0], new Uint8Array([KIND_RESUME, ...new Array(17).fill(0)]), "RESUME first, with nothing to resume");
  assert.equal(out[1][0], 0x01, "then the hook's call");
  assert.ok(hook >= 0);
  s.release();
  // Positioned events: in order, a duplicate dropped, a jump reported as a gap.
  events(s);
  for (const o of [1, 2, 2, 5]) s.handleMessage(topicEvent("t", 9, o, [o]));
  const ev = events(s);
  assert.deepEqual(ev.map((e) => e.type), ["event", "event", "gap", "event"]);
  assert.deepEqual(ev[2].notice, { topic: "t", missed: 2n });
  assert.deepEqual([...ev[3].archive], [5]);
  assert.equal(s.duplicatesDropped, 1);
  s.handleMessage(gap("t", 10, 3, 2n ** 64n - 1n));
  assert.deepEqual(events(s), [{ type: "gap", notice: { topic: "t", missed: null } }]);
  s.handleMessage(gap("u", 10, 7, 0));
  assert.deepEqual(events(s), [], "an announcement is no notice");
  s.handleMessage(point(3, 20, false));
  // The next transport resumes from the last positions and the point after the replay.
  s.handleDisconnect("cut");
  s.reopen(true);
  s.handleMessage(point(3, 99, true));
  const [resume] = drain(s);
  assert.equal(resume[0], KIND_RESUME);
  assert.deepEqual([...resume.subarray(1, 17)], [...u64(3), ...u64(20)], "not the later initial point");
  assert.equal(resume[17], 2, "t and u");
  assert.deepEqual(s.position("t"), { epoch: 10n, offset: 3n });
  assert.deepEqual(s.position("u"), { epoch: 10n, offset: 7n });
});

test("resume: a server that answers the offer with features and no point does not resume; no RESUME is sent", () => {
  const s = new ClientSession();
  s.enableResume();
  s.reopen(true);
  s.handleMessage(state(0, [1]));
  s.handleMessage(features(8, 0xff));
  assert.ok(s.isReady);
  assert.deepEqual(drain(s), []);
  s.release();
  s.startCall(0, new Uint8Array());
  assert.equal(drain(s)[0][0], 0x01, "the first message is a call");
  // Without the offer (resume off on this transport) nothing waits either.
  const plain = new ClientSession();
  plain.enableResume();
  plain.reopen(false);
  plain.handleMessage(features(8, 0xff));
  assert.ok(plain.isReady);
});

test("the tracked-topic bound is reported as a gap without a topic at the next resume", () => {
  const bounds = [undefined, 10, 1000].map((n) => {
    const x = new ClientSession();
    x.enableResume(n);
    return x.maxTrackedTopics;
  });
  assert.deepEqual(bounds, [64, 10, 64], "default 64, and never more than one RESUME can name");
  assert.equal(new ClientSession().maxTrackedTopics, 0, "no resume, nothing tracked");
  const s = new ClientSession();
  s.enableResume(1);
  s.reopen(true);
  s.handleMessage(point(1, 0, true));
  s.handleMessage(features(8, 0xff));
  s.release();
  drain(s);
  s.handleMessage(topicEvent("a", 1, 1, []));
  s.handleMessage(topicEvent("b", 1, 1, []));
  events(s);
  s.handleDisconnect("cut");
  s.reopen(true);
  s.handleMessage(point(1, 2, true));
  assert.equal(drain(s)[0][17], 1, "one topic named");
  assert.deepEqual(events(s).filter((e) => e.type === "gap"), [{ type: "gap", notice: { topic: null, missed: null } }]);
});

/** A connection for the loop: scripted transports, recorded statuses and sleeps (a fake clock). */
function fakeConnection(script) {
  const log = [];
  let closing = false;
  const c = {
    statuses: log,
    sleeps: [],
    establish() {
      const next = script.shift() ?? "close";
      if (next === "close") {
        closing = true;
        return Promise.reject(new Error("closed by the test"));
      }
      if (next === "fail") return Promise.reject(new Error("refused"));
      return Promise.resolve({ ended: Promise.resolve(`dropped after ${next}`) });
    },
    setStatus: (s) => log.push(s.state === "reconnecting" ? `reconnecting ${s.attempt}` : s.state),
    sleep(ms) {
      c.sleeps.push(ms);
      return Promise.resolve(closing);
    },
    isClosing: () => closing,
  };
  return c;
}

test("the loop: backoff grows with failed attempts, restarts at 0 after a ready transport, stops when closing", async () => {
  const c = fakeConnection(["up", "fail", "fail", "up", "fail", "close"]);
  let first = "pending";
  const reason = await supervise(c, { backoff: { ...DEFAULT_BACKOFF, jitter: 0 }, random: () => 0.5 }, (e) => (first = e ?? "ready"));
  assert.equal(first, "ready");
  assert.deepEqual(c.statuses, ["connecting", "reconnecting 0", "reconnecting 1", "reconnecting 2", "reconnecting 0", "reconnecting 1"]);
  assert.deepEqual(c.sleeps, [100, 200, 400, 100, 200]);
  assert.equal(reason, "closed by the test");
});

test("the loop: the first transport's failure is the caller's error and nothing reconnects; no backoff, no reconnect", async () => {
  const failing = fakeConnection(["fail", "up"]);
  let first;
  await supervise(failing, { backoff: DEFAULT_BACKOFF, random: Math.random }, (e) => (first = e));
  assert.equal(first.message, "refused");
  assert.deepEqual(failing.sleeps, []);
  const once = fakeConnection(["up", "up"]);
  const reason = await supervise(once, { backoff: undefined, random: Math.random }, () => {});
  assert.equal(reason, "dropped after up");
  assert.deepEqual(once.statuses, ["connecting"], "a drop without reconnect ends the loop");
});

test("the loop: jitter samples come from the injected source and stay within [d/2, d]", async () => {
  const c = fakeConnection(["up", "fail", "fail", "fail", "close"]);
  const samples = [0, 0.5, 0.999, 0.25];
  await supervise(c, { backoff: DEFAULT_BACKOFF, random: () => samples.shift() }, () => {});
  assert.deepEqual(c.sleeps, [100, 150, 400 * (1 - 0.4995), 800 * (1 - 0.125)]);
});
