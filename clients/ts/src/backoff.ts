/**
 * Reconnect delays: exponential backoff with jitter, the TypeScript twin of
 * `hardlight_core::backoff` (same named defaults, same formula), so that a
 * browser and a Rust client cut at the same moment spread their returns
 * the same way. Pure: the random sample is an argument.
 */

/** Default delay before the first reconnect attempt, in ms (`DEFAULT_BACKOFF_INITIAL`). */
export const DEFAULT_BACKOFF_INITIAL_MS = 100;
/** Default cap on any one delay, in ms: a client away for long retries this often (`DEFAULT_BACKOFF_MAX`). */
export const DEFAULT_BACKOFF_MAX_MS = 10_000;
/** Default growth factor per failed attempt (`DEFAULT_BACKOFF_MULTIPLIER`). */
export const DEFAULT_BACKOFF_MULTIPLIER = 2;
/**
 * Default share of each delay that is randomised (0.5: the delay is drawn
 * from [d/2, d]), so that pages cut at the same moment (a server restart)
 * do not all come back in the same millisecond (`DEFAULT_BACKOFF_JITTER`).
 */
export const DEFAULT_BACKOFF_JITTER = 0.5;
/** Attempt numbers past this add nothing (the cap is reached long before); keeps the power finite. */
export const MAX_BACKOFF_EXPONENT = 64;

/** The reconnect schedule. */
export interface Backoff {
  /** Delay before attempt 0, ms. */
  initialMs: number;
  /** Cap on every delay, ms. */
  maxMs: number;
  /** Growth per attempt. */
  multiplier: number;
  /** Randomised share of each delay, 0 (none) to 1 (full jitter). */
  jitter: number;
}

/** The defaults above. */
export const DEFAULT_BACKOFF: Readonly<Backoff> = Object.freeze({
  initialMs: DEFAULT_BACKOFF_INITIAL_MS,
  maxMs: DEFAULT_BACKOFF_MAX_MS,
  multiplier: DEFAULT_BACKOFF_MULTIPLIER,
  jitter: DEFAULT_BACKOFF_JITTER,
});

const clamp = (x: number, lo: number, hi: number) => (Number.isNaN(x) ? lo : Math.min(hi, Math.max(lo, x)));

/**
 * The delay in ms before reconnect attempt `attempt` (0-based), given a
 * uniform `sample` in [0, 1): `d = min(initial * multiplier^attempt, max)`,
 * then `d * (1 - jitter * sample)`. Never more than `max`, never negative,
 * finite at any attempt number. A sample or jitter outside [0, 1] is clamped.
 */
export function backoffDelay(b: Backoff, attempt: number, sample: number): number {
  const exponent = clamp(Math.floor(attempt), 0, MAX_BACKOFF_EXPONENT);
  const factor = Math.max(1, b.multiplier) ** exponent;
  const base = Math.min(Math.max(0, b.initialMs) * factor, Math.max(0, b.maxMs));
  const jitter = clamp(b.jitter, 0, 1) * clamp(sample, 0, 1);
  return Math.max(0, base * (1 - jitter));
}

/**
 * A deterministic source of samples in [0, 1) (xorshift, as the Rust
 * client's jitter), for tests and for reproducing a schedule. Pages use
 * `Math.random` by default.
 */
export function seededRandom(seed: number): () => number {
  // Spread nearby seeds apart (Fibonacci hashing); xorshift needs a non-zero state.
  let x = BigInt.asUintN(64, (BigInt(Math.floor(seed)) + 1n) * 0x9e3779b97f4a7c15n) | 1n;
  return () => {
    x ^= BigInt.asUintN(64, x << 13n);
    x ^= x >> 7n;
    x ^= BigInt.asUintN(64, x << 17n);
    return Number(x >> 11n) / 2 ** 53;
  };
}
