/**
 * The client side of a connection at message level, with no I/O: the
 * TypeScript twin of `hardlight_core::session::ClientSession`, rule for
 * rule, so that the browser client and the Rust client behave alike. A
 * driver (`client.ts`) hands it every binary message from the server,
 * sends what `pollTransmit` returns and delivers what `pollEvent` returns.
 * Byte layouts: docs/PROTOCOL.md section 4.
 *
 * Across transports (reconnect) it follows `hardlight_core::session_link`:
 * `handleDisconnect` fails the calls sent on the dropped transport (except
 * idempotent ones, which are sent again), `reopen` holds the application's
 * calls while a new transport runs its on-connect hook and makes the next
 * state and feature set replace the old ones whole, `release` lets the
 * held calls go. With resume enabled, positioned events go through
 * `Positions` (resume.ts) and RESUME is the new transport's first message.
 */
import { CallError, SessionError } from "./errors.js";
import { FeatureSet, parseState } from "./messages.js";
import {
  KIND_GAP,
  KIND_RESUME_POINT,
  KIND_TOPIC_EVENT,
  parseGap,
  parseResumePoint,
  parseTopicEvent,
  Positions,
  DEFAULT_MAX_TRACKED_TOPICS,
  MAX_RESUME_TOPICS,
  MISSED_UNKNOWN,
  type GapNotice,
  type Position,
} from "./resume.js";

export const KIND_CALL = 0x01;
/** A CALL with the client's time limit appended (u32 ms LE); only to servers whose LIMITS sets the flag. */
export const KIND_CALL_DEADLINE = 0x02;
/** The client gave up on a call: `[0x03, id]`; only to servers whose LIMITS sets the flag. */
export const KIND_CANCEL = 0x03;
export const KIND_RESULT_OK = 0x10;
export const KIND_RESULT_ERR = 0x11;
export const KIND_CALL_ERROR = 0x12;
export const KIND_STATE = 0x20;
export const KIND_FEATURES = 0x21;
export const KIND_LIMITS = 0x22;
export const KIND_EVENT = 0x30;
export const KIND_EVENTS_DROPPED = 0x31;

/** Call ids are one byte: at most this many calls in flight per connection. */
export const MAX_CALLS_IN_FLIGHT = 256;
/** Default bound on calls waiting for a free call id (as the Rust client). */
export const DEFAULT_MAX_WAITING_CALLS = 16 * 1024;
/** Bytes before a CALL's input archive. */
export const CALL_HEADER_LEN = 4;
/** Bytes after a CALL_DEADLINE's input: the time limit in ms, u32 LE. */
export const DEADLINE_TRAILER_LEN = 4;
/** LIMITS flag: the server accepts CALL_DEADLINE and CANCEL. */
export const FLAG_DEADLINE_AND_CANCEL = 1;

/** Protocol-level refusal codes (CALL_ERROR), PROTOCOL.md section 4. */
export const CALL_ERROR_CODES: Record<number, string> = {
  1: "UnknownMethod",
  2: "InvalidInput",
  3: "DuplicateCallId",
  4: "HandlerPanicked",
  5: "MethodDisabled",
  6: "ShuttingDown",
  7: "EncodeFailed",
  8: "Cancelled",
  9: "DeadlineExceeded",
};

export { CallError, SessionError } from "./errors.js";
export type { CallErrorKind } from "./errors.js";
export { FeatureSet, parseState } from "./messages.js";

/** A raw reply: output (`ok`) or application error archive. */
export interface RawReply {
  ok: boolean;
  payload: Uint8Array;
}

/** What the session tells its driver, in the server's order. */
export type SessionEvent =
  | { type: "reply"; call: number; result: RawReply | CallError }
  /** `replaced`: the first state of a new transport; every field not in `changed` is gone. */
  | { type: "state"; changed: number[]; replaced: boolean }
  | { type: "features" }
  | { type: "event"; ty: number; archive: Uint8Array }
  | { type: "eventsDropped"; count: number }
  /** Events were lost (a gap notice): never silent. */
  | { type: "gap"; notice: GapNotice }
  /** The transport dropped; a reconnect follows. */
  | { type: "disconnected"; reason: string }
  | { type: "closed"; reason: string };

/** Where the session's transport is (`hardlight_core::session::Link`). */
export type Link =
  /** Connected and ready: calls go out at once. */
  | { state: "up" }
  /** A new transport is open but not ready (its on-connect hook runs): application calls wait, priority calls go out. */
  | { state: "held" }
  /** The transport dropped; a reconnect follows. */
  | { state: "down"; reason: string };

interface Waiting {
  call: number;
  method: number;
  input: Uint8Array;
  timeoutMs: number | undefined;
}

/** The client side of one connection (see the module docs). */
export class ClientSession {
  private readonly taken = new Uint8Array(MAX_CALLS_IN_FLIGHT);
  private takenCount = 0;
  private nextId = 0;
  /** The call on each id; -1 for free ids and for abandoned calls whose id the server still holds. */
  private readonly inFlightCalls = new Array<number>(MAX_CALLS_IN_FLIGHT).fill(-1);
  private waitingCalls: Waiting[] = [];
  private nextToken = 0;
  private transmit: Uint8Array[] = [];
  private events: SessionEvent[] = [];
  private fields: (Uint8Array | undefined)[] = [];
  private featureSet: FeatureSet | undefined;
  private closed: string | undefined;
  private maxMessageSize: number | undefined;
  private limitFlags = 0;
  /** Events the server dropped for this connection, in total. */
  eventsDropped = 0;
  /** Positioned events dropped as duplicates (already delivered, replayed again). */
  duplicatesDropped = 0;
  private linkState: Link = { state: "up" };
  /** Calls made while down wait for the reconnect (true) or fail at once (the default, as the Rust session). */
  private waitWhileDown = false;
  /** Methods marked idempotent: sent again after a drop. */
  private readonly idempotent = new Set<number>();
  /** Method, input and time limit of each idempotent call in flight. */
  private readonly resend = new Map<number, Waiting>();
  /** Resume positions, when the session resumes. */
  private positions: Positions | undefined;
  /** Since `reopen`: the state fields are the old transport's, replaced whole by the next state. */
  private staleState = false;
  /** Since `reopen`: the feature set is the old transport's. */
  private staleFeatures = false;
  /** Resume was offered on this transport and the server has not yet said whether it accepts. */
  private resumeUndecided = false;

  constructor(readonly maxWaiting = DEFAULT_MAX_WAITING_CALLS) {}

  private allocate(): number | undefined {
    if (this.takenCount === MAX_CALLS_IN_FLIGHT) return undefined;
    for (;;) {
      const id = this.nextId;
      this.nextId = (this.nextId + 1) & 0xff;
      if (!this.taken[id]) {
        this.taken[id] = 1;
        this.takenCount++;
        return id;
      }
    }
  }

  private free(id: number): boolean {
    if (!this.taken[id]) return false;
    this.taken[id] = 0;
    this.takenCount--;
    return true;
  }

  /**
   * Starts a call of `method` with the encoded `input`: sent at once with a
   * free id, else queued (in order) until a reply frees one. Throws
   * `Disconnected` after close, `TooLarge` beyond the server's announced
   * limit (not sent; the connection stays open), `TooManyWaiting` when the
   * queue is full. Returns the call's token (never reused). With
   * `timeoutMs`, a server that accepts deadlines gets it with the call
   * (CALL_DEADLINE) and drops the handler when it passes. While the link
   * is held (a new transport's on-connect hook runs) the call waits for
   * `release`; while it is down it waits or throws `Disconnected`, per
   * `setWaitWhileDisconnected`.
   */
  startCall(method: number, input: Uint8Array, timeoutMs?: number): number {
    if (this.closed !== undefined) {
      throw new CallError("Disconnected", `connection closed before the call was answered: ${this.closed}`);
    }
    const trailer = this.deadlineMs(timeoutMs) !== undefined ? DEADLINE_TRAILER_LEN : 0;
    const size = CALL_HEADER_LEN + input.length + trailer;
    if (this.maxMessageSize !== undefined && size > this.maxMessageSize) {
      throw new CallError(
        "TooLarge",
        `call of ${size} bytes exceeds the server's message size limit of ${this.maxMessageSize} bytes; not sent`,
      );
    }
    if (this.linkState.state !== "up") return this.hold(method, input, timeoutMs);
    const call = this.nextToken;
    const id = this.waitingCalls.length === 0 ? this.allocate() : undefined;
    if (id !== undefined) {
      this.send(id, call, method, input, timeoutMs);
    } else {
      if (this.waitingCalls.length >= this.maxWaiting) {
        throw new CallError(
          "TooManyWaiting",
          `too many calls waiting for a free call id (limit ${this.maxWaiting}); the call was not sent`,
        );
      }
      this.waitingCalls.push({ call, method, input: input.slice(), timeoutMs });
    }
    this.nextToken++;
    return call;
  }

  private send(id: number, call: number, method: number, input: Uint8Array, timeoutMs: number | undefined): void {
    this.inFlightCalls[id] = call;
    if (this.idempotent.has(method)) this.resend.set(call, { call, method, input: input.slice(), timeoutMs });
    const ms = this.deadlineMs(timeoutMs);
    const msg = new Uint8Array(CALL_HEADER_LEN + input.length + (ms === undefined ? 0 : DEADLINE_TRAILER_LEN));
    msg[0] = ms === undefined ? KIND_CALL : KIND_CALL_DEADLINE;
    msg[1] = id;
    msg[2] = method & 0xff;
    msg[3] = method >> 8;
    msg.set(input, CALL_HEADER_LEN);
    if (ms !== undefined) new DataView(msg.buffer).setUint32(CALL_HEADER_LEN + input.length, ms, true);
    this.transmit.push(msg);
  }

  /** The deadline to send: whole ms rounded up, 1 to 2^32-1, if the server accepts deadlines. */
  private deadlineMs(timeoutMs: number | undefined): number | undefined {
    if (timeoutMs === undefined || !this.acceptsDeadlineAndCancel) return undefined;
    return Math.min(0xffffffff, Math.max(1, Math.ceil(timeoutMs)));
  }

  /** Whether the server announced that it accepts CALL_DEADLINE and CANCEL. */
  get acceptsDeadlineAndCancel(): boolean {
    return (this.limitFlags & FLAG_DEADLINE_AND_CANCEL) !== 0;
  }

  /**
   * Gives up on a call (timeout). A waiting call is forgotten; a sent one
   * keeps its id reserved until the server answers, and that answer is
   * discarded; a server that accepts it gets a CANCEL, so it drops the
   * handler and answers at once. Returns whether the call was still open.
   */
  abandon(call: number): boolean {
    this.resend.delete(call);
    const w = this.waitingCalls.findIndex((x) => x.call === call);
    if (w >= 0) {
      this.waitingCalls.splice(w, 1);
      return true;
    }
    const id = this.inFlightCalls.indexOf(call);
    if (id < 0) return false;
    this.inFlightCalls[id] = -1;
    if (this.closed === undefined && this.acceptsDeadlineAndCancel) this.transmit.push(new Uint8Array([KIND_CANCEL, id]));
    return true;
  }

  /** The next message to send, in order. */
  pollTransmit(): Uint8Array | undefined {
    return this.transmit.shift();
  }

  /** The next thing the application should learn, in the server's order. */
  pollEvent(): SessionEvent | undefined {
    return this.events.shift();
  }

  /**
   * Handles one binary message from the server. A malformed message throws
   * a `SessionError` and is otherwise ignored; a kind this version does not
   * know is ignored (servers may add kinds within hl/1).
   */
  handleMessage(msg: Uint8Array): void {
    if (this.closed !== undefined) return;
    if (msg.length === 0) throw new SessionError("malformed envelope from the server: empty message");
    const kind = msg[0];
    const body = msg.subarray(1);
    switch (kind) {
      case KIND_RESULT_OK:
      case KIND_RESULT_ERR:
        if (msg.length < 2) throw new SessionError(`message of kind ${kind} truncated`);
        this.finish(msg[1], { ok: kind === KIND_RESULT_OK, payload: msg.slice(2) });
        return;
      case KIND_CALL_ERROR: {
        if (msg.length < 3) throw new SessionError(`message of kind ${kind} truncated`);
        const name = CALL_ERROR_CODES[msg[2]];
        const detail = new TextDecoder().decode(msg.subarray(3));
        const err = name
          ? new CallError("Rejected", `server rejected the call: ${name}${detail ? ` (${detail})` : ""}`, name, detail)
          : new CallError("UnknownErrorCode", `server rejected the call with unknown error code ${msg[2]}`);
        this.finish(msg[1], err);
        return;
      }
      case KIND_STATE: {
        const changed = parseState(body);
        this.resumeUndecided = false;
        const replaced = this.replaceStaleState();
        for (const [index, archive] of changed) this.fields[index] = archive;
        this.events.push({ type: "state", changed: changed.map(([i]) => i), replaced });
        return;
      }
      case KIND_FEATURES: {
        const set = FeatureSet.decode(body);
        this.resumeUndecided = false;
        // A server with no state for the new transport: its feature set
        // clears the old fields, so that none survives the reconnect.
        if (this.replaceStaleState()) this.events.push({ type: "state", changed: [], replaced: true });
        this.featureSet = set;
        this.staleFeatures = false;
        this.events.push({ type: "features" });
        return;
      }
      case KIND_TOPIC_EVENT:
        this.onTopicEvent(body);
        return;
      case KIND_GAP: {
        const gap = parseGap(body);
        const notice = this.positions
          ? this.positions.onGap(gap)
          : gap.missed === 0n
            ? undefined
            : { topic: gap.topic, missed: gap.missed === MISSED_UNKNOWN ? null : gap.missed };
        if (notice) this.events.push({ type: "gap", notice });
        return;
      }
      case KIND_RESUME_POINT: {
        const { point, initial } = parseResumePoint(body);
        if (initial && this.resumeUndecided) {
          // The server's acknowledgement of the offered token: RESUME goes
          // out first, before any call of the on-connect hook.
          this.resumeUndecided = false;
          const { message, lost } = this.positions!.resumeMessage();
          this.transmit.unshift(message);
          if (lost) this.events.push({ type: "gap", notice: lost });
        }
        this.positions?.onPoint(point, initial);
        return;
      }
      case KIND_LIMITS: {
        if (body.length < 4) throw new SessionError("malformed limits message from the server");
        const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
        const max = view.getUint32(0, true);
        this.maxMessageSize = max > 0 ? max : undefined;
        // Flags came later; a 4-byte body (an older server) has none.
        this.limitFlags = body.length >= 8 ? view.getUint32(4, true) : 0;
        return;
      }
      case KIND_EVENT:
        if (body.length < 2) throw new SessionError("malformed event message from the server");
        this.events.push({ type: "event", ty: body[0] | (body[1] << 8), archive: body.slice(2) });
        return;
      case KIND_EVENTS_DROPPED: {
        if (body.length !== 4) throw new SessionError("malformed event message from the server");
        const count = new DataView(body.buffer, body.byteOffset, 4).getUint32(0, true);
        this.eventsDropped += count;
        this.events.push({ type: "eventsDropped", count });
        return;
      }
      default:
        return;
    }
  }

  private onTopicEvent(body: Uint8Array): void {
    const ev = parseTopicEvent(body);
    const verdict = this.positions?.onEvent(ev.topic, ev.position) ?? { action: "deliver" };
    if (verdict.action === "duplicate") {
      this.duplicatesDropped++;
      return;
    }
    if (verdict.action === "gapThenDeliver") this.events.push({ type: "gap", notice: verdict.notice });
    this.events.push({ type: "event", ty: ev.ty, archive: ev.archive });
  }

  /** Clears the old transport's fields before the new transport's first state; returns whether it did. */
  private replaceStaleState(): boolean {
    if (!this.staleState) return false;
    this.staleState = false;
    this.fields = [];
    return true;
  }

  /**
   * Tracks topic positions so that a reconnect resumes events without loss
   * or duplicates, or reports a gap. The driver then offers
   * `RESUME_PROTOCOL` on every transport and passes `true` to `reopen`.
   */
  enableResume(maxTopics = DEFAULT_MAX_TRACKED_TOPICS): void {
    // More than one RESUME can name would be tracked but never resumed.
    this.positions ??= new Positions(Math.max(0, Math.min(maxTopics, MAX_RESUME_TOPICS)));
  }

  /** How many topics' positions are tracked at most (0 without resume). */
  get maxTrackedTopics(): number {
    return this.positions?.max ?? 0;
  }

  /** Whether resume is enabled. */
  get resumes(): boolean {
    return this.positions !== undefined;
  }

  /** The resume position of `topic`, if tracked. */
  position(topic: string): Position | undefined {
    return this.positions?.get(topic);
  }

  /**
   * Whether calls made while the transport is down wait for the reconnect
   * (within the driver's timeout) instead of failing at once with
   * `Disconnected`. Default: fail at once.
   */
  setWaitWhileDisconnected(wait: boolean): void {
    this.waitWhileDown = wait;
  }

  /**
   * Marks `method` idempotent: a call of it in flight when the transport
   * drops is sent again on the next one instead of failing. No other call
   * is ever sent twice (the server may or may not have run it).
   */
  setIdempotent(method: number): void {
    this.idempotent.add(method);
  }

  /** The transport's state. */
  get link(): Link {
    return { ...this.linkState };
  }

  /** An application call while not up: waits for `release`, or fails at once while down per policy. */
  private hold(method: number, input: Uint8Array, timeoutMs: number | undefined): number {
    if (this.linkState.state === "down" && !this.waitWhileDown) {
      throw new CallError("Disconnected", `not connected (${this.linkState.reason}); the call was not sent`);
    }
    if (this.waitingCalls.length >= this.maxWaiting) {
      throw new CallError(
        "TooManyWaiting",
        `too many calls waiting for the connection (limit ${this.maxWaiting}); the call was not sent`,
      );
    }
    const call = this.nextToken++;
    this.waitingCalls.push({ call, method, input: input.slice(), timeoutMs });
    return call;
  }

  /**
   * A call that goes out while held (the on-connect hook's calls, e.g.
   * re-authentication), ahead of the application's waiting calls. Throws
   * `Disconnected` while down.
   */
  startPriorityCall(method: number, input: Uint8Array, timeoutMs?: number): number {
    if (this.closed !== undefined || this.linkState.state === "down") {
      const why = this.closed ?? (this.linkState.state === "down" ? this.linkState.reason : "");
      throw new CallError("Disconnected", `not connected (${why}); the call was not sent`);
    }
    if (this.linkState.state === "up") return this.startCall(method, input, timeoutMs);
    const id = this.allocate();
    if (id === undefined) throw new CallError("TooManyWaiting", "all 256 call ids are taken by the on-connect hook");
    const call = this.nextToken++;
    this.send(id, call, method, input, timeoutMs);
    return call;
  }

  /**
   * The transport dropped and the driver will reconnect. Calls sent on it
   * fail with `Disconnected` (the server may or may not have run them),
   * except idempotent ones, which go back to the front of the queue;
   * waiting calls stay queued if calls wait while disconnected, else fail.
   * Then a `disconnected` event.
   */
  handleDisconnect(reason: string): void {
    if (this.closed !== undefined || this.linkState.state === "down") return;
    this.transmit = [];
    const again: Waiting[] = [];
    const fail = (call: number) =>
      this.events.push({
        type: "reply",
        call,
        result: new CallError("Disconnected", `the connection dropped before the call was answered: ${reason}`),
      });
    for (let id = 0; id < MAX_CALLS_IN_FLIGHT; id++) {
      const call = this.inFlightCalls[id];
      this.inFlightCalls[id] = -1;
      if (call < 0) continue;
      const w = this.resend.get(call);
      if (w) again.push(w);
      else fail(call);
    }
    this.resend.clear();
    this.taken.fill(0);
    this.takenCount = 0;
    this.nextId = 0;
    if (!this.waitWhileDown) {
      for (const w of this.waitingCalls) fail(w.call);
      this.waitingCalls = [];
    }
    again.sort((a, b) => a.call - b.call);
    this.waitingCalls.unshift(...again);
    this.linkState = { state: "down", reason };
    this.events.push({ type: "disconnected", reason });
  }

  /**
   * A new transport is open (the first or a later one). What the old one
   * said is replaced by what the new one says: the first state message
   * replaces every field (not merged; if the server sends no state, the
   * feature set clears them), the feature set is replaced, limits are
   * forgotten; `isReady` is false until the new feature set arrives. The
   * link is held. With resume enabled and `resumeOffered` (the transport
   * offered `RESUME_PROTOCOL`), the session waits for the server's answer:
   * an initial RESUME_POINT before the state and features queues RESUME as
   * the first message; anything else means the server does not resume.
   */
  reopen(resumeOffered: boolean): void {
    if (this.closed !== undefined) return;
    this.transmit = [];
    this.staleState = true;
    this.staleFeatures = true;
    this.maxMessageSize = undefined;
    this.limitFlags = 0;
    this.linkState = { state: "held" };
    this.resumeUndecided = resumeOffered && this.positions !== undefined;
  }

  /** The new transport is ready (its on-connect hook succeeded): waiting calls go out, in order, as ids allow. */
  release(): void {
    if (this.linkState.state !== "held") return;
    this.linkState = { state: "up" };
    while (this.waitingCalls.length > 0) {
      const id = this.allocate();
      if (id === undefined) break;
      const w = this.waitingCalls.shift()!;
      this.send(id, w.call, w.method, w.input, w.timeoutMs);
    }
  }

  private finish(id: number, result: RawReply | CallError): void {
    if (!this.free(id)) throw new SessionError(`reply for call id ${id}, which has no call in flight`);
    const call = this.inFlightCalls[id];
    this.inFlightCalls[id] = -1;
    if (call >= 0) {
      this.resend.delete(call);
      this.events.push({ type: "reply", call, result });
    }
    // Held: the waiting calls go out at `release`, after the on-connect hook.
    if (this.linkState.state !== "up") return;
    const w = this.waitingCalls.shift();
    if (w) {
      const next = this.allocate();
      if (next === undefined) throw new Error("an id was just freed");
      this.send(next, w.call, w.method, w.input, w.timeoutMs);
    }
  }

  /**
   * The connection ended. Every open call, sent or waiting, fails with
   * `Disconnected`, then `closed` is reported; later calls fail at once.
   * Only the first reason counts.
   */
  handleClose(reason: string): void {
    if (this.closed !== undefined) return;
    this.closed = reason;
    this.transmit = [];
    const fail = (call: number) =>
      this.events.push({
        type: "reply",
        call,
        result: new CallError("Disconnected", `connection closed before the call was answered: ${reason}`),
      });
    for (let id = 0; id < MAX_CALLS_IN_FLIGHT; id++) {
      if (this.inFlightCalls[id] >= 0) fail(this.inFlightCalls[id]);
      this.inFlightCalls[id] = -1;
    }
    for (const w of this.waitingCalls) fail(w.call);
    this.waitingCalls = [];
    this.events.push({ type: "closed", reason });
  }

  /** Why the session closed, or undefined while open. */
  get closeReason(): string | undefined {
    return this.closed;
  }
  /** Whether the transport's initial feature set (and so its initial state) has arrived. */
  get isReady(): boolean {
    return this.featureSet !== undefined && !this.staleFeatures && !this.resumeUndecided;
  }
  /** Call ids taken, abandoned calls included. */
  get inFlight(): number {
    return this.takenCount;
  }
  /** Calls waiting for a free call id. */
  get waiting(): number {
    return this.waitingCalls.length;
  }
  /** The latest archive of state field `index`. */
  stateField(index: number): Uint8Array | undefined {
    return this.fields[index];
  }
  /** The server's announced message size limit, if any. */
  get serverMaxMessageSize(): number | undefined {
    return this.maxMessageSize;
  }
  /** The methods the server lets this connection call, as last announced. */
  get features(): FeatureSet | undefined {
    return this.featureSet;
  }
}

