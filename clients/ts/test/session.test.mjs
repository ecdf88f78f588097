// The TS ClientSession follows core/src/session.rs rule for rule; these
// cases mirror that file's tests on byte buffers (PROTOCOL.md section 4).
import { test } from "node:test";
import assert from "node:assert/strict";
import { CallError, ClientSession, SessionError, MAX_CALLS_IN_FLIGHT } from "../dist/src/index.js";

import { drain, events } from "./drain.mjs";

test("a call is a CALL envelope; RESULT_OK answers it and frees the id", () => {
  const s = new ClientSession();
  const call = s.startCall(0x1234, new Uint8Array([0x61, 0x62, 0x63]));
  const [msg] = drain(s);
  assert.deepEqual([...msg], [0x01, 0, 0x34, 0x12, 0x61, 0x62, 0x63]);
  assert.equal(s.inFlight, 1);
  s.handleMessage(new Uint8Array([0x10, msg[1], 9, 9]));
  const [ev] = events(s);
  assert.equal(ev.type, "reply");
  assert.equal(ev.call, call);
  assert.deepEqual(ev.result, { ok: true, payload: new Uint8Array([9, 9]) });
  assert.equal(s.inFlight, 0);
});

test("PROTOCOL.md's CALL example: call id 200, method 0x1234", () => {
  const s = new ClientSession();
  for (let i = 0; i < 200; i++) s.startCall(0, new Uint8Array());
  drain(s);
  s.startCall(0x1234, new Uint8Array([0x61, 0x62, 0x63]));
  assert.deepEqual([...drain(s)[0]], [0x01, 0xc8, 0x34, 0x12, 0x61, 0x62, 0x63]);
});

test("the 257th call waits for a free id and goes out, in order, when one is freed", () => {
  const s = new ClientSession();
  for (let i = 0; i < MAX_CALLS_IN_FLIGHT; i++) s.startCall(1, new Uint8Array());
  const sent = drain(s);
  assert.equal(new Set(sent.map((m) => m[1])).size, 256);
  const a = s.startCall(2, new Uint8Array([0xaa]));
  const b = s.startCall(3, new Uint8Array([0xbb]));
  assert.equal(s.waiting, 2);
  assert.equal(drain(s).length, 0);
  s.handleMessage(new Uint8Array([0x10, 17]));
  const [next] = drain(s);
  assert.deepEqual([...next], [0x01, 17, 2, 0, 0xaa]);
  assert.equal(s.waiting, 1);
  s.handleMessage(new Uint8Array([0x11, 3, 5]));
  assert.deepEqual([...drain(s)[0]], [0x01, 3, 3, 0, 0xbb]);
  const replies = events(s).filter((e) => e.type === "reply");
  assert.equal(replies.length, 2);
  assert.deepEqual(replies[1].result, { ok: false, payload: new Uint8Array([5]) });
  assert.notEqual(a, b);
});

test("the wait queue is bounded", () => {
  const s = new ClientSession(1);
  for (let i = 0; i < 256; i++) s.startCall(0, new Uint8Array());
  s.startCall(0, new Uint8Array());
  assert.throws(() => s.startCall(0, new Uint8Array()), (e) => e instanceof CallError && e.kind === "TooManyWaiting");
});

test("an abandoned call keeps its id until the server answers, and the answer is dropped", () => {
  const s = new ClientSession();
  const call = s.startCall(0, new Uint8Array());
  const id = drain(s)[0][1];
  assert.equal(s.abandon(call), true);
  assert.equal(s.inFlight, 1, "the server still holds the id");
  s.startCall(0, new Uint8Array());
  assert.notEqual(drain(s)[0][1], id, "the reserved id is not reused");
  s.handleMessage(new Uint8Array([0x10, id]));
  assert.deepEqual(events(s), []);
  assert.equal(s.inFlight, 1);
  assert.equal(s.abandon(call), false);
});

test("an abandoned waiting call is never sent", () => {
  const s = new ClientSession();
  for (let i = 0; i < 256; i++) s.startCall(0, new Uint8Array());
  drain(s);
  const w = s.startCall(7, new Uint8Array());
  assert.equal(s.abandon(w), true);
  s.handleMessage(new Uint8Array([0x10, 0]));
  assert.equal(drain(s).length, 0);
  assert.equal(s.waiting, 0);
});

test("CALL_ERROR: known codes by name with detail, unknown codes kept as errors", () => {
  const s = new ClientSession();
  s.startCall(0, new Uint8Array());
  s.startCall(0, new Uint8Array());
  drain(s);
  s.handleMessage(new Uint8Array([0x12, 0, 5, ...new TextEncoder().encode("off")]));
  s.handleMessage(new Uint8Array([0x12, 1, 99]));
  const [a, b] = events(s);
  assert.equal(a.result.kind, "Rejected");
  assert.equal(a.result.code, "MethodDisabled");
  assert.equal(a.result.detail, "off");
  assert.equal(b.result.kind, "UnknownErrorCode");
});

test("closing fails every open call at once, sent or waiting, then refuses new ones", () => {
  const s = new ClientSession();
  for (let i = 0; i < 258; i++) s.startCall(0, new Uint8Array());
  s.handleClose("closed with code 1006");
  const evs = events(s);
  assert.equal(evs.filter((e) => e.type === "reply" && e.result.kind === "Disconnected").length, 258);
  assert.deepEqual(evs.at(-1), { type: "closed", reason: "closed with code 1006" });
  assert.equal(drain(s).length, 0);
  assert.throws(() => s.startCall(0, new Uint8Array()), (e) => e.kind === "Disconnected");
  s.handleClose("again");
  assert.deepEqual(events(s), []);
});

test("LIMITS: a call over the announced size is refused locally and the session stays usable", () => {
  const s = new ClientSession();
  s.handleMessage(new Uint8Array([0x22, 16, 0, 0, 0, 0xee]));
  assert.equal(s.serverMaxMessageSize, 16);
  assert.throws(() => s.startCall(0, new Uint8Array(13)), (e) => e.kind === "TooLarge");
  assert.equal(drain(s).length, 0);
  s.startCall(0, new Uint8Array(12));
  assert.equal(drain(s)[0].length, 16);
  assert.throws(() => s.handleMessage(new Uint8Array([0x22, 1, 2])), SessionError);
});

test("STATE keeps the last archive per field; FEATURES is the bitmap of PROTOCOL.md", () => {
  const s = new ClientSession();
  s.handleMessage(new Uint8Array([0x20, 0x01, 0x02, 0x08, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0]));
  assert.deepEqual(events(s), [{ type: "state", changed: [2], replaced: false }]);
  assert.deepEqual([...s.stateField(2)], [9, 0, 0, 0, 0, 0, 0, 0]);
  assert.equal(s.isReady, false);
  s.handleMessage(new Uint8Array([0x21, 0x0a, 0x00, 0x01, 0x02]));
  assert.equal(s.isReady, true);
  assert.deepEqual([0, 1, 8, 9, 10].map((i) => s.features.has(i)), [true, false, false, true, false]);
  assert.throws(() => s.handleMessage(new Uint8Array([0x21, 0x0a, 0x00, 0x01, 0x04])), SessionError);
  assert.throws(() => s.handleMessage(new Uint8Array([0x20, 0x01, 0x02, 0x08, 0, 0, 0, 9])), SessionError);
  assert.throws(() => s.handleMessage(new Uint8Array([0x20, 0x00, 0x00])), SessionError);
});

test("EVENT and EVENTS_DROPPED; unknown kinds are ignored; stray replies are errors", () => {
  const s = new ClientSession();
  s.handleMessage(new Uint8Array([0x31, 3, 0, 0, 0]));
  s.handleMessage(new Uint8Array([0x30, 1, 0, 0xab]));
  s.handleMessage(new Uint8Array([0x7f, 1, 2]));
  assert.deepEqual(events(s), [
    { type: "eventsDropped", count: 3 },
    { type: "event", ty: 1, archive: new Uint8Array([0xab]) },
  ]);
  assert.equal(s.eventsDropped, 3);
  assert.throws(() => s.handleMessage(new Uint8Array([0x10, 42])), SessionError);
  assert.throws(() => s.handleMessage(new Uint8Array([])), SessionError);
});

test("deadlines and CANCEL only once LIMITS announces them", () => {
  const s = new ClientSession();
  s.startCall(7, new Uint8Array([0xaa]), 1500);
  assert.deepEqual([...drain(s)[0]], [0x01, 0, 7, 0, 0xaa], "no flag: a plain CALL");
  s.handleMessage(new Uint8Array([0x22, 0, 0, 0x10, 0, 1, 0, 0, 0]));
  assert.equal(s.acceptsDeadlineAndCancel, true);
  const call = s.startCall(7, new Uint8Array([0xaa]), 1500.2);
  assert.deepEqual([...drain(s)[0]], [0x02, 1, 7, 0, 0xaa, 0xdd, 0x05, 0, 0], "CALL_DEADLINE, 1501 ms rounded up");
  s.startCall(7, new Uint8Array([0xbb]));
  assert.equal(drain(s)[0][0], 0x01, "no timeout: a plain CALL");
  assert.equal(s.abandon(call), true);
  assert.deepEqual([...drain(s)[0]], [0x03, 1], "CANCEL for the abandoned call's id");
  s.handleMessage(new Uint8Array([0x12, 1, 8]));
  assert.deepEqual(events(s), [], "the Cancelled answer of an abandoned call is dropped");
  s.handleMessage(new Uint8Array([0x22, 0, 0, 0x10, 0]));
  assert.equal(s.acceptsDeadlineAndCancel, false, "an older server's 4-byte LIMITS has no flags");
});

test("the new refusal codes have names", () => {
  const s = new ClientSession();
  s.startCall(0, new Uint8Array());
  s.handleMessage(new Uint8Array([0x12, drain(s)[0][1], 9]));
  assert.equal(events(s)[0].result.code, "DeadlineExceeded");
});
