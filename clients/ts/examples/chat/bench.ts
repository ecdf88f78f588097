/**
 * Measures calls from the page with no tooling attached (the bench script
 * starts Chromium itself, without DevTools, whose per-frame WebSocket
 * instrumentation would be measured too): the chat service's `history`
 * call on an empty thread, sequential and with `concurrency` in flight.
 * Posts the figures to `/bench-result` on the page's origin.
 */
import { ChatClient, connectChat } from "./chat.gen.js";

const params = new URLSearchParams(location.search);
const num = (name: string, d: number) => Number(params.get(name) ?? d);

interface Figures {
  calls: number;
  rate: number;
  p50: number;
  p99: number;
}

/** p50 and p99 in microseconds of latencies in milliseconds. */
function figures(lat: number[], elapsedMs: number): Figures {
  lat.sort((a, b) => a - b);
  const at = (q: number) => lat[Math.min(lat.length - 1, Math.floor(lat.length * q))] * 1000;
  return { calls: lat.length, rate: lat.length / (elapsedMs / 1000), p50: at(0.5), p99: at(0.99) };
}

async function run(): Promise<unknown> {
  const chat = new ChatClient(await connectChat(params.get("ws") ?? `ws://${location.hostname}:9001`));
  const calls = num("calls", 5000);
  const total = num("concurrentCalls", 50000);
  const concurrency = num("concurrency", 64);
  for (let i = 0; i < 500; i++) await chat.history("bench-empty");
  let lat: number[] = [];
  let t0 = performance.now();
  for (let i = 0; i < calls; i++) {
    const t = performance.now();
    await chat.history("bench-empty");
    lat.push(performance.now() - t);
  }
  const sequential = figures(lat, performance.now() - t0);
  const per = Math.floor(total / concurrency);
  lat = [];
  t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = 0; i < per; i++) {
        const t = performance.now();
        await chat.history("bench-empty");
        lat.push(performance.now() - t);
      }
    }),
  );
  const concurrent = figures(lat, performance.now() - t0);
  chat.connection.close();
  return { sequential, concurrent, isolated: self.crossOriginIsolated, userAgent: navigator.userAgent };
}

run().then(
  (r) => fetch("/bench-result", { method: "POST", body: JSON.stringify(r) }),
  (e) => fetch("/bench-result", { method: "POST", body: JSON.stringify({ error: String(e) }) }),
);
