/**
 * The client side of a connection at message level, with no I/O: the
 * TypeScript twin of `hardlight_core::session::ClientSession`, rule for
 * rule, so that the browser client and the Rust client behave alike. A
 * driver (`client.ts`) hands it every binary message from the server,
 * sends what `pollTransmit` returns and delivers what `pollEvent` returns.
 * Byte layouts: docs/PROTOCOL.md section 4.
 */

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

/** Why a call has no result: the kinds of `hardlight_core::CallError`. */
export type CallErrorKind =
  | "Rejected"
  | "UnknownErrorCode"
  | "Disconnected"
  | "Timeout"
  | "TooManyWaiting"
  | "TooLarge"
  | "Encode"
  | "InvalidResponse";

/** A call failed in the transport or protocol layer (never the application's own error type). */
export class CallError extends Error {
  constructor(
    readonly kind: CallErrorKind,
    message: string,
    /** For `Rejected`: the code's name (`MethodDisabled`, ...). */
    readonly code?: string,
    /** For `Rejected`: the server's detail text. */
    readonly detail?: string,
  ) {
    super(message);
    this.name = "CallError";
  }
}

/** A server message that broke the protocol; it is ignored and the connection stays usable. */
export class SessionError extends Error {}

/** A raw reply: output (`ok`) or application error archive. */
export interface RawReply {
  ok: boolean;
  payload: Uint8Array;
}

/** What the session tells its driver, in the server's order. */
export type SessionEvent =
  | { type: "reply"; call: number; result: RawReply | CallError }
  | { type: "state"; changed: number[] }
  | { type: "features" }
  | { type: "event"; ty: number; archive: Uint8Array }
  | { type: "eventsDropped"; count: number }
  | { type: "closed"; reason: string };

interface Waiting {
  call: number;
  method: number;
  input: Uint8Array;
  timeoutMs: number | undefined;
}

/** The set of methods the server lets this connection call. */
export class FeatureSet {
  constructor(
    readonly count: number,
    private readonly bitmap: Uint8Array,
  ) {}
  /** Whether method `id` is enabled. */
  has(id: number): boolean {
    return id < this.count && (this.bitmap[id >> 3] & (1 << (id & 7))) !== 0;
  }
  /** Parses a FEATURES body (after the kind byte), as `FeatureSet::decode`. */
  static decode(body: Uint8Array): FeatureSet {
    if (body.length < 2) throw new SessionError("malformed features message: truncated count");
    const count = body[0] | (body[1] << 8);
    const bitmap = body.slice(2);
    if (bitmap.length !== Math.ceil(count / 8)) {
      throw new SessionError("malformed features message: bitmap length does not match the method count");
    }
    if (count % 8 !== 0 && bitmap[bitmap.length - 1] >> count % 8 !== 0) {
      throw new SessionError("malformed features message: bits set beyond the method count");
    }
    return new FeatureSet(count, bitmap);
  }
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

  private release(id: number): boolean {
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
   * (CALL_DEADLINE) and drops the handler when it passes.
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
        for (const [index, archive] of changed) this.fields[index] = archive;
        this.events.push({ type: "state", changed: changed.map(([i]) => i) });
        return;
      }
      case KIND_FEATURES:
        this.featureSet = FeatureSet.decode(body);
        this.events.push({ type: "features" });
        return;
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

  private finish(id: number, result: RawReply | CallError): void {
    if (!this.release(id)) throw new SessionError(`reply for call id ${id}, which has no call in flight`);
    const call = this.inFlightCalls[id];
    this.inFlightCalls[id] = -1;
    if (call >= 0) this.events.push({ type: "reply", call, result });
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
  /** Whether the initial feature set (and so the initial state) has arrived. */
  get isReady(): boolean {
    return this.featureSet !== undefined;
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

/** Parses a STATE body as `hardlight_core::state::parse_state`. */
export function parseState(body: Uint8Array): [number, Uint8Array][] {
  if (body.length === 0) throw new SessionError("malformed state message from the server: empty");
  const n = body[0];
  let at = 1;
  const out: [number, Uint8Array][] = [];
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  for (let i = 0; i < n; i++) {
    if (body.length - at < 5) throw new SessionError("malformed state message from the server: field header truncated");
    const index = body[at];
    const len = view.getUint32(at + 1, true);
    at += 5;
    if (body.length - at < len) throw new SessionError("malformed state message from the server: field archive truncated");
    out.push([index, body.slice(at, at + len)]);
    at += len;
  }
  if (at !== body.length) throw new SessionError("malformed state message from the server: trailing bytes");
  return out;
}
