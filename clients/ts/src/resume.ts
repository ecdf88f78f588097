/**
 * Event resume, the client's side: the byte layouts of TOPIC_EVENT, GAP,
 * RESUME_POINT and RESUME, and the per-topic positions with the rules of
 * `hardlight_core::resume::Positions` (last position per topic, duplicates
 * dropped, gaps reported, a bounded number of tracked topics). Sans-I/O.
 * Byte layouts and the guarantee: docs/PROTOCOL.md sections 4 and 9.1.
 */
import { SessionError } from "./errors.js";

export const KIND_RESUME = 0x08;
export const KIND_TOPIC_EVENT = 0x32;
export const KIND_GAP = 0x33;
export const KIND_RESUME_POINT = 0x34;

/**
 * Offered subprotocol by which a page opts in to resume (it cannot send the
 * `HardLight-Resume` header); never selected. The server acknowledges it by
 * sending the initial RESUME_POINT before the initial state and features.
 */
export const RESUME_PROTOCOL = "hl-resume.1";
/** Most topics one RESUME may name (`MAX_RESUME_TOPICS`): the server refuses more. */
export const MAX_RESUME_TOPICS = 64;
/** Longest topic name, in bytes, a RESUME, TOPIC_EVENT or GAP can carry (a u8 length). */
export const MAX_TOPIC_LEN = 255;
/** Default number of topics tracked: as many as one RESUME can name (`DEFAULT_MAX_TRACKED_TOPICS`). */
export const DEFAULT_MAX_TRACKED_TOPICS = MAX_RESUME_TOPICS;
/** `missed` of a GAP whose count is not known (another epoch): u64::MAX. */
export const MISSED_UNKNOWN = 0xffff_ffff_ffff_ffffn;

/** Where a client stands in one topic: the last event it received. u64s as bigint. */
export interface Position {
  epoch: bigint;
  offset: bigint;
}

/** A point in one server history's life (see PROTOCOL.md 9.1, "Resume points"). */
export interface ResumePoint {
  base: bigint;
  seq: bigint;
}

/** A TOPIC_EVENT message. */
export interface TopicEvent {
  ty: number;
  topic: string;
  position: Position;
  archive: Uint8Array;
}

/** A GAP message: events of `topic` are lost; the client continues from `position`. */
export interface Gap {
  topic: string;
  position: Position;
  /** Events missed, or `MISSED_UNKNOWN`; 0 only announces the position. */
  missed: bigint;
}

/** The application's notice that events were lost: never silent. */
export interface GapNotice {
  /** The topic, or null for "topics beyond the tracked bound", which could not be resumed. */
  topic: string | null;
  /** Events missed, when known. */
  missed: bigint | null;
}

/** What to do with a positioned event. */
export type Received = { action: "deliver" } | { action: "duplicate" } | { action: "gapThenDeliver"; notice: GapNotice };

const utf8 = new TextEncoder();
const fatalUtf8 = new TextDecoder("utf-8", { fatal: true });

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function topicAt(body: Uint8Array, at: number, len: number, what: string): string {
  try {
    return fatalUtf8.decode(body.subarray(at, at + len));
  } catch {
    throw new SessionError(`malformed ${what} from the server: topic is not UTF-8`);
  }
}

/** Parses a TOPIC_EVENT body (after the kind byte). */
export function parseTopicEvent(body: Uint8Array): TopicEvent {
  if (body.length < 19 || body.length < 19 + body[18]) {
    throw new SessionError("malformed topic event from the server: truncated");
  }
  const v = view(body);
  const len = body[18];
  return {
    ty: v.getUint16(0, true),
    position: { epoch: v.getBigUint64(2, true), offset: v.getBigUint64(10, true) },
    topic: topicAt(body, 19, len, "topic event"),
    archive: body.slice(19 + len),
  };
}

/** Parses a GAP body (after the kind byte). */
export function parseGap(body: Uint8Array): Gap {
  if (body.length < 25 || body.length !== 25 + body[24]) {
    throw new SessionError("malformed gap message from the server: wrong length");
  }
  const v = view(body);
  return {
    position: { epoch: v.getBigUint64(0, true), offset: v.getBigUint64(8, true) },
    missed: v.getBigUint64(16, true),
    topic: topicAt(body, 25, body[24], "gap message"),
  };
}

/** Parses a RESUME_POINT body (after the kind byte): the point and whether it is the initial one. */
export function parseResumePoint(body: Uint8Array): { point: ResumePoint; initial: boolean } {
  if (body.length !== 17 || body[16] > 1) throw new SessionError("malformed resume point from the server");
  const v = view(body);
  return { point: { base: v.getBigUint64(0, true), seq: v.getBigUint64(8, true) }, initial: body[16] === 1 };
}

/**
 * A whole RESUME message, byte for byte as `hardlight_core::resume::encode_resume`:
 * at most `MAX_RESUME_TOPICS` entries (the caller reports the rest), empty
 * topics and topics longer than `MAX_TOPIC_LEN` bytes skipped. Returns the
 * message and how many entries it names.
 */
export function encodeResume(
  since: ResumePoint | undefined,
  entries: Iterable<[string, Position]>,
): { message: Uint8Array; count: number } {
  const parts: [Uint8Array, Position][] = [];
  for (const [topic, p] of entries) {
    const name = utf8.encode(topic);
    if (name.length === 0 || name.length > MAX_TOPIC_LEN) continue;
    if (parts.length === MAX_RESUME_TOPICS) break;
    parts.push([name, p]);
  }
  const size = 18 + parts.reduce((n, [name]) => n + 1 + name.length + 16, 0);
  const out = new Uint8Array(size);
  const v = view(out);
  out[0] = KIND_RESUME;
  v.setBigUint64(1, since?.base ?? 0n, true);
  v.setBigUint64(9, since?.seq ?? 0n, true);
  out[17] = parts.length;
  let at = 18;
  for (const [name, p] of parts) {
    out[at] = name.length;
    out.set(name, at + 1);
    at += 1 + name.length;
    v.setBigUint64(at, p.epoch, true);
    v.setBigUint64(at + 8, p.offset, true);
    at += 16;
  }
  return { message: out, count: parts.length };
}

/** Last position per topic, as `hardlight_core::resume::Positions` (see the module docs). */
export class Positions {
  private readonly map = new Map<string, Position>();
  private overflowed = false;
  private point: ResumePoint | undefined;

  /** Tracks at most `max` topics; events of others are delivered and reported as a gap at the next resume. */
  constructor(readonly max = DEFAULT_MAX_TRACKED_TOPICS) {}

  /** The position of `topic`, if tracked. */
  get(topic: string): Position | undefined {
    const p = this.map.get(topic);
    return p && { ...p };
  }

  /** Topics tracked. */
  get size(): number {
    return this.map.size;
  }

  /** Applies an event at `at` in `topic`. */
  onEvent(topic: string, at: Position): Received {
    const last = this.map.get(topic);
    if (!last) {
      if (this.map.size >= this.max) this.overflowed = true;
      else this.map.set(topic, { ...at });
      return { action: "deliver" };
    }
    let verdict: Received;
    if (last.epoch !== at.epoch) {
      verdict = { action: "gapThenDeliver", notice: { topic, missed: null } };
    } else if (at.offset <= last.offset) {
      return { action: "duplicate" };
    } else if (at.offset > last.offset + 1n) {
      verdict = { action: "gapThenDeliver", notice: { topic, missed: at.offset - last.offset - 1n } };
    } else {
      verdict = { action: "deliver" };
    }
    this.map.set(topic, { ...at });
    return verdict;
  }

  /**
   * Applies the server's GAP: the topic continues from its position. A GAP
   * of 0 missed only announces the position (sent when the connection
   * subscribes): no notice.
   */
  onGap(gap: Gap): GapNotice | undefined {
    if (gap.position.epoch === 0n && gap.position.offset === 0n) {
      // UNKNOWN_POSITION: the server does not know where this client stood;
      // the next event starts a new position, without a second notice.
      this.map.delete(gap.topic);
    } else if (this.map.has(gap.topic) || this.map.size < this.max) this.map.set(gap.topic, { ...gap.position });
    else this.overflowed = true;
    if (gap.missed === 0n) return undefined;
    return { topic: gap.topic, missed: gap.missed === MISSED_UNKNOWN ? null : gap.missed };
  }

  /**
   * The server's RESUME_POINT, named in the next RESUME. A connection's
   * initial point counts only on the first one: on a reconnect, the replay
   * of what was missed since the older point may still be on its way, and
   * only the point after it covers it.
   */
  onPoint(point: ResumePoint, initial: boolean): void {
    if (!initial || this.point === undefined) this.point = { ...point };
  }

  /** The point the next RESUME names. */
  get since(): ResumePoint | undefined {
    return this.point && { ...this.point };
  }

  /** The RESUME message for a new connection, and a notice for the topics that could not be tracked since the last one. */
  resumeMessage(): { message: Uint8Array; lost: GapNotice | undefined } {
    const { message } = encodeResume(this.point, this.map.entries());
    const lost = this.overflowed ? { topic: null, missed: null } : undefined;
    this.overflowed = false;
    return { message, lost };
  }
}
