// The client's resume rules (src/resume.ts) follow
// core/src/resume/positions.rs and wire.rs: these cases mirror those
// files' tests, and check the byte examples of docs/PROTOCOL.md section 4,
// which core/src/resume/wire.rs (`protocol_md_examples_byte_for_byte`)
// checks against the Rust encoder: both agree with the document.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  encodeResume,
  parseGap,
  parseResumePoint,
  parseTopicEvent,
  Positions,
  SessionError,
  DEFAULT_MAX_TRACKED_TOPICS,
  MAX_RESUME_TOPICS,
  MAX_TOPIC_LEN,
  MISSED_UNKNOWN,
  RESUME_PROTOCOL,
} from "../dist/src/index.js";

const unhex = (s) => new Uint8Array(s.split(" ").map((b) => parseInt(b, 16)));
const E = 5n;
const at = (offset) => ({ epoch: E, offset: BigInt(offset) });

test("PROTOCOL.md's RESUME example, byte for byte with the Rust encoder", () => {
  const { message, count } = encodeResume({ base: 5n, seq: 7n }, [["t", { epoch: 9n, offset: 4n }]]);
  assert.equal(count, 1);
  assert.deepEqual(
    message,
    unhex("08 05 00 00 00 00 00 00 00 07 00 00 00 00 00 00 00 01 01 74 09 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00"),
  );
  assert.deepEqual(encodeResume(undefined, []).message, new Uint8Array(18).fill(0x08, 0, 1), "08 and 17 zero bytes");
});

test("RESUME as core/src/resume/wire.rs's round-trip test: empty topics skipped, at most 64 entries, long names skipped", () => {
  const p = { epoch: 1n, offset: 2n };
  const { message, count } = encodeResume({ base: 3n, seq: 4n }, [["a", p], ["", p], ["b", p]]);
  assert.equal(count, 2);
  assert.deepEqual([...message.subarray(0, 21)], [0x08, 3, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0x61, 1]);
  const many = Array.from({ length: MAX_RESUME_TOPICS + 5 }, (_, i) => [`t${i}`, p]);
  const big = encodeResume(undefined, many);
  assert.equal(big.count, MAX_RESUME_TOPICS);
  assert.equal(big.message[17], 64);
  assert.equal(encodeResume(undefined, [["x".repeat(MAX_TOPIC_LEN + 1), p]]).count, 0, "too long to name");
  assert.equal(encodeResume(undefined, [["é".repeat(128), p]]).count, 0, "the bound is in UTF-8 bytes");
  assert.deepEqual([MAX_RESUME_TOPICS, MAX_TOPIC_LEN, DEFAULT_MAX_TRACKED_TOPICS], [64, 255, 64]);
  assert.equal(RESUME_PROTOCOL, "hl-resume.1");
});

test("TOPIC_EVENT, GAP and RESUME_POINT parse PROTOCOL.md's examples; malformed ones are SessionErrors", () => {
  const ev = parseTopicEvent(unhex("07 00 02 01 00 00 00 00 00 00 03 00 00 00 00 00 00 00 02 61 62 78 79 7A"));
  assert.deepEqual(ev, { ty: 7, topic: "ab", position: { epoch: 0x0102n, offset: 3n }, archive: new Uint8Array([0x78, 0x79, 0x7a]) });
  const gap = parseGap(unhex("09 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00 FF FF FF FF FF FF FF FF 01 74"));
  assert.deepEqual(gap, { topic: "t", position: { epoch: 9n, offset: 4n }, missed: MISSED_UNKNOWN });
  assert.equal(MISSED_UNKNOWN, 2n ** 64n - 1n);
  assert.deepEqual(parseResumePoint(unhex("01 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00 01")), {
    point: { base: 1n, seq: 2n },
    initial: true,
  });
  for (const bad of [
    () => parseTopicEvent(unhex("07 00 02 01 00 00 00 00 00 00 03 00 00 00 00 00 00 00 05 61")),
    () => parseTopicEvent(unhex("07 00 02")),
    () => parseTopicEvent(unhex("07 00 02 01 00 00 00 00 00 00 03 00 00 00 00 00 00 00 01 FF")),
    () => parseGap(unhex("09 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00 FF FF FF FF FF FF FF FF 01 74 00")),
    () => parseGap(unhex("09 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00 FF FF FF FF FF FF FF FF 01")),
    () => parseResumePoint(unhex("01 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00 02")),
    () => parseResumePoint(unhex("01 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00")),
  ]) {
    assert.throws(bad, SessionError);
  }
});

test("in order, duplicate, gap, epoch change", () => {
  const p = new Positions(4);
  assert.deepEqual(p.onEvent("t", at(3)), { action: "deliver" }, "first event of a topic");
  assert.deepEqual(p.onEvent("t", at(4)), { action: "deliver" });
  assert.deepEqual(p.onEvent("t", at(4)), { action: "duplicate" });
  assert.deepEqual(p.onEvent("t", at(2)), { action: "duplicate" });
  assert.deepEqual(p.onEvent("t", at(9)), { action: "gapThenDeliver", notice: { topic: "t", missed: 4n } });
  assert.deepEqual(p.onEvent("t", { epoch: 6n, offset: 1n }), {
    action: "gapThenDeliver",
    notice: { topic: "t", missed: null },
  });
  assert.deepEqual(p.get("t"), { epoch: 6n, offset: 1n });
  assert.deepEqual(p.onEvent("t", { epoch: 6n, offset: 2n }), { action: "deliver" }, "the new epoch continues");
});

test("a server GAP moves the position; a GAP of 0 only announces it", () => {
  const p = new Positions(4);
  p.onEvent("t", at(1));
  assert.deepEqual(p.onGap({ topic: "t", position: at(10), missed: 8n }), { topic: "t", missed: 8n });
  assert.deepEqual(p.onEvent("t", at(11)), { action: "deliver" });
  assert.deepEqual(p.onGap({ topic: "t", position: at(0), missed: MISSED_UNKNOWN }), { topic: "t", missed: null });
  assert.equal(p.onGap({ topic: "u", position: at(4), missed: 0n }), undefined, "an announcement");
  assert.deepEqual(p.get("u"), at(4));
  assert.deepEqual(p.onEvent("u", at(6)), { action: "gapThenDeliver", notice: { topic: "u", missed: 1n } });
});

test("a GAP at the unknown position (epoch 0) reports the loss once and forgets the position", () => {
  const p = new Positions(4);
  p.onEvent("t", at(3));
  const unknown = { epoch: 0n, offset: 0n };
  assert.deepEqual(p.onGap({ topic: "t", position: unknown, missed: MISSED_UNKNOWN }), { topic: "t", missed: null });
  assert.equal(p.get("t"), undefined, "the server did not know where the client stood");
  assert.deepEqual(p.onEvent("t", { epoch: 9n, offset: 40n }), { action: "deliver" }, "no second notice");
});

test("the tracked bound: further topics are delivered untracked and reported once at the next resume", () => {
  const p = new Positions(1);
  p.onEvent("a", at(1));
  assert.deepEqual(p.onEvent("b", at(1)), { action: "deliver" }, "delivered, untracked");
  assert.equal(p.size, 1);
  assert.equal(p.onGap({ topic: "c", position: at(2), missed: 0n }), undefined);
  assert.equal(p.get("c"), undefined, "a GAP beyond the bound is not tracked either");
  const { message, lost } = p.resumeMessage();
  assert.equal(message[17], 1, "one entry");
  assert.deepEqual(lost, { topic: null, missed: null });
  assert.equal(p.resumeMessage().lost, undefined, "reported once");
  assert.equal(new Positions().max, DEFAULT_MAX_TRACKED_TOPICS);
});

test("resume points: the initial one counts only on the first connection, the one after a replay always", () => {
  const p = new Positions();
  assert.equal(p.since, undefined);
  p.onPoint({ base: 1n, seq: 10n }, true);
  assert.deepEqual(p.since, { base: 1n, seq: 10n });
  p.onPoint({ base: 1n, seq: 20n }, true);
  assert.deepEqual(p.since, { base: 1n, seq: 10n }, "a later initial point is ignored");
  p.onPoint({ base: 1n, seq: 15n }, false);
  assert.deepEqual(p.since, { base: 1n, seq: 15n }, "the point after a replay");
  p.onEvent("t", at(3));
  const { message } = p.resumeMessage();
  assert.deepEqual(
    message,
    unhex("08 01 00 00 00 00 00 00 00 0F 00 00 00 00 00 00 00 01 01 74 05 00 00 00 00 00 00 00 03 00 00 00 00 00 00 00"),
  );
});
