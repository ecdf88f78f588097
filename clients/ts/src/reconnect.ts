/**
 * The reconnect loop, apart from any socket: open a transport, wait until
 * it is ready (initial state, features, the on-connect hook), wait for it
 * to end, then wait the backoff delay and start over, until the
 * connection closes. The same rules as the Rust client's
 * `client/src/reconnect.rs`: the first transport's failure is the
 * caller's error and nothing reconnects; a later transport that fails
 * before it is ready (refused, hook failed) counts as a failed attempt;
 * the attempt count restarts at 0 after every ready transport.
 */
import { backoffDelay, type Backoff } from "./backoff.js";

/** Where a connection is; watch it with `Connection.onStatus`. */
export type Status =
  /** Opening the first transport (upgrade, initial state, on-connect hook). */
  | { state: "connecting" }
  /** Ready: calls go out at once. */
  | { state: "connected" }
  /** The transport dropped; waiting `attempt`'s backoff delay or opening a new one (0: the first retry). */
  | { state: "reconnecting"; attempt: number }
  /** Closed for good: the application closed it, it dropped without reconnect, or the first transport failed. */
  | { state: "closed"; reason: string };

/** What the loop needs from its connection. */
export interface Supervised {
  /**
   * Opens a transport and resolves once it is ready (status connected),
   * with a promise of the reason it ends (wrapped: a promise resolved
   * with a promise would wait for it); rejects if it fails before.
   */
  establish(): Promise<{ ended: Promise<string> }>;
  setStatus(status: Status): void;
  /** Waits `ms`; resolves true if the connection is closing (stop). */
  sleep(ms: number): Promise<boolean>;
  isClosing(): boolean;
}

/** How the loop reconnects. */
export interface LoopOptions {
  /** Reconnect with this schedule; undefined: a drop closes the connection. */
  backoff: Backoff | undefined;
  /** Uniform samples in [0, 1) for the jitter. */
  random: () => number;
}

/**
 * Runs until the connection closes. `first` hears how the first transport
 * went (undefined: ready). Resolves with the reason the loop ended.
 */
export async function supervise(c: Supervised, opts: LoopOptions, first: (error?: unknown) => void): Promise<string> {
  let attempt = 0;
  let reason = "connection closed";
  c.setStatus({ state: "connecting" });
  try {
    const { ended } = await c.establish();
    first();
    reason = await ended;
  } catch (e) {
    first(e);
    return (e as Error).message;
  }
  while (opts.backoff && !c.isClosing()) {
    c.setStatus({ state: "reconnecting", attempt });
    const delay = backoffDelay(opts.backoff, attempt, opts.random());
    attempt++;
    if (await c.sleep(delay)) break;
    let ended: Promise<string>;
    try {
      ({ ended } = await c.establish());
    } catch (e) {
      reason = (e as Error).message;
      continue;
    }
    attempt = 0;
    reason = await ended;
  }
  return reason;
}
