/**
 * What `connect` takes: the generated service description and the options,
 * with their named defaults.
 */
import type { Backoff } from "./backoff.js";
import type { Connection } from "./client.js";
import type { Shape, Types } from "./shape.js";

/** The subprotocol offered on the upgrade: `hl/1` spelled as a token browsers accept (`/` is refused by the WebSocket API; PROTOCOL.md section 2). */
export const SUBPROTOCOL = "hl.1";
/** Prefix of the offered subprotocol that carries the schema fingerprint. */
export const SCHEMA_PROTOCOL_PREFIX = "hl-schema.";
/** Default per-call timeout, as the Rust client's `DEFAULT_CALL_TIMEOUT`. */
export const DEFAULT_CALL_TIMEOUT_MS = 30_000;
/** Default time for the upgrade plus the server's initial state and features (and, separately, for the on-connect hook). */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** A method's output: `Ok` of a `Result<T, E>` method, or its application error. */
export type Result<T, E> = { ok: true; value: T } | { ok: false; error: E };

/** One method, as the generator describes it. */
export interface MethodDesc {
  name: string;
  id: number;
  /** The input struct: the arguments in order (archived like a tuple). */
  input: Shape;
  ok: Shape;
  /** The application error type of a `Result<T, E>` method, else null. */
  err: Shape | null;
  /**
   * Marked `#[idempotent]` in the Rust trait: sent again after a drop, as
   * if listed in `ConnectOptions.idempotent` (the Rust client opened with
   * the schema does the same). Absent: not marked.
   */
  idempotent?: boolean;
}

/** A service, as the generated module's `SERVICE`. */
export interface ServiceDesc {
  name: string;
  fingerprint: string;
  types: Types;
  methods: MethodDesc[];
  events: { id: number; name: string; shape: Shape }[];
  state: { name: string; shape: Shape }[];
}

/** How to connect. */
export interface ConnectOptions<S = Record<string, unknown>, E = Record<string, unknown>> {
  /** Per-call timeout (default 30 s); a call may override it. Calls waiting for a reconnect wait within it. */
  callTimeoutMs?: number;
  /** Upgrade plus initial state and features (default 10 s); the on-connect hook gets as long again. */
  connectTimeoutMs?: number;
  /** Calls allowed to wait for a free call id or for a reconnect (default 16384). */
  maxWaitingCalls?: number;
  /** Validation depth limit for received archives (default 64, as the server). */
  maxDepth?: number;
  /** A WebSocket constructor other than the global one (for other runtimes). */
  webSocket?: typeof WebSocket;
  /**
   * Send the service's schema fingerprint (default true), as the offered
   * subprotocol `hl-schema.<fingerprint>` (browsers cannot set the
   * `HardLight-Schema` header): a server built from another version of the
   * service refuses the upgrade.
   */
  schemaCheck?: boolean;
  /**
   * Reconnect after a drop (default: off, a drop closes the connection).
   * `true`: the default schedule (100 ms doubling to a 10 s cap, half
   * jitter; `DEFAULT_BACKOFF`); an object overrides parts of it. Reconnects
   * until `close()`. The first connection's failure is `connect`'s error.
   */
  reconnect?: boolean | Partial<Backoff>;
  /** Samples in [0, 1) for the backoff jitter (default `Math.random`; tests pass `seededRandom`). */
  random?: () => number;
  /**
   * Calls made while reconnecting fail at once with `CallError`
   * `Disconnected` instead of waiting (within their timeout) for the next
   * transport. Default false: they wait, as in the Rust client.
   */
  failFastWhileDisconnected?: boolean;
  /**
   * Names of methods that are safe to run twice: a call of one in flight
   * when the transport drops is sent again on the next one. Every other
   * call in flight fails with `Disconnected` (the server may or may not
   * have run it); none is ever sent twice. Methods the trait marks
   * `#[idempotent]` (`MethodDesc.idempotent`) need not be listed.
   */
  idempotent?: string[];
  /**
   * Runs on every transport (the first and each reconnect) after the
   * server's initial state and feature set arrived and before the
   * connection is reported ready: the application's calls wait, while
   * calls made through the `Connection` given to the hook go out at once.
   * The place to re-authenticate (log in, join, re-subscribe). A throw (or
   * not finishing within the connect timeout) fails `connect` on the first
   * transport, and on later ones closes that transport and retries with
   * backoff, as the Rust client.
   */
  onConnect?: (conn: Connection<S, E>) => Promise<void> | void;
  /**
   * Resume topic events across reconnects (default false): the page
   * offers `hl-resume.1`; each topic's events are delivered exactly once
   * and in order, or a gap notice (`onGap`) says what was lost.
   */
  resume?: boolean;
  /** Topics whose positions are tracked for resume (default and most: 64, as one RESUME can name). */
  maxTrackedTopics?: number;
}

/** Per-call options. */
export interface CallOptions {
  timeoutMs?: number;
}
