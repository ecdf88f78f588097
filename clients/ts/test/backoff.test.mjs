// The reconnect schedule (src/backoff.ts) is core/src/backoff.rs in
// TypeScript: same named defaults, same formula; these cases mirror that
// file's tests, with an injected random source for the jitter.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  backoffDelay,
  seededRandom,
  DEFAULT_BACKOFF,
  DEFAULT_BACKOFF_INITIAL_MS,
  DEFAULT_BACKOFF_MAX_MS,
  DEFAULT_BACKOFF_MULTIPLIER,
  DEFAULT_BACKOFF_JITTER,
  MAX_BACKOFF_EXPONENT,
} from "../dist/src/index.js";

test("named defaults are the Rust client's: 100 ms doubling to a 10 s cap, half jitter", () => {
  assert.deepEqual(
    [DEFAULT_BACKOFF_INITIAL_MS, DEFAULT_BACKOFF_MAX_MS, DEFAULT_BACKOFF_MULTIPLIER, DEFAULT_BACKOFF_JITTER],
    [100, 10_000, 2, 0.5],
  );
  assert.deepEqual({ ...DEFAULT_BACKOFF }, { initialMs: 100, maxMs: 10_000, multiplier: 2, jitter: 0.5 });
  assert.ok(Object.isFrozen(DEFAULT_BACKOFF), "a shared default cannot be changed by one connection");
  assert.equal(MAX_BACKOFF_EXPONENT, 64);
});

test("grows exponentially up to the cap, and stays finite at any attempt", () => {
  const b = { ...DEFAULT_BACKOFF, jitter: 0 };
  const ms = Array.from({ length: 9 }, (_, a) => backoffDelay(b, a, 0.7));
  assert.deepEqual(ms, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
  assert.equal(backoffDelay(b, 2 ** 32, 0), 10_000, "no overflow");
  assert.equal(backoffDelay(b, Number.POSITIVE_INFINITY, 0), 10_000);
  assert.equal(backoffDelay({ ...b, maxMs: 250 }, 3, 0), 250, "a configured cap");
  assert.equal(backoffDelay({ ...b, multiplier: 0 }, 5, 0), 100, "a multiplier below 1 does not shrink");
});

test("jitter draws from the stated share below the delay; samples are clamped", () => {
  const b = DEFAULT_BACKOFF;
  assert.equal(backoffDelay(b, 1, 0), 200);
  assert.equal(backoffDelay(b, 1, 0.5), 150);
  assert.ok(backoffDelay(b, 1, 0.999999) >= 100);
  assert.ok(backoffDelay(b, 30, 0.999) >= 5000);
  assert.equal(backoffDelay(b, 30, 0), 10_000);
  assert.ok(backoffDelay({ ...b, jitter: 1 }, 3, 0.9999) < 1, "full jitter reaches down to 0");
  assert.equal(backoffDelay(b, 1, 7), backoffDelay(b, 1, 1), "a sample outside [0, 1) is clamped");
  assert.equal(backoffDelay(b, 1, -3), 200);
  assert.equal(backoffDelay({ ...b, jitter: 9 }, 1, 0.5), backoffDelay({ ...b, jitter: 1 }, 1, 0.5), "jitter is clamped");
});

test("with a seeded random source every delay of a long run lies in [d/2, d] and the run is reproducible", () => {
  const run = (seed) => {
    const random = seededRandom(seed);
    return Array.from({ length: 2000 }, (_, a) => [a % 12, backoffDelay(DEFAULT_BACKOFF, a % 12, random())]);
  };
  const delays = run(42);
  for (const [a, d] of delays) {
    const full = Math.min(100 * 2 ** a, 10_000);
    assert.ok(d >= full / 2 && d <= full, `attempt ${a}: ${d} ms outside [${full / 2}, ${full}]`);
  }
  // The samples spread over the range, not stuck at one end.
  const at3 = delays.filter(([a]) => a === 3).map(([, d]) => d);
  assert.ok(Math.min(...at3) < 450 && Math.max(...at3) > 750, `${Math.min(...at3)}..${Math.max(...at3)}`);
  assert.deepEqual(run(42), delays, "same seed, same schedule");
  assert.notDeepEqual(run(43), delays, "another seed, another schedule");
  const r = seededRandom(7);
  for (let i = 0; i < 10_000; i++) {
    const x = r();
    assert.ok(x >= 0 && x < 1, `${x}`);
  }
});
