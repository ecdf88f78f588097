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
  const raw = await rawFloor(calls, total, concurrency);
  return { sequential, concurrent, raw, isolated: self.crossOriginIsolated, userAgent: navigator.userAgent };
}

/**
 * The browser's own floor, without this client: hand-written CALL
 * envelopes for a method id the service does not have (the server answers
 * CALL_ERROR UnknownMethod without running a handler) on a bare WebSocket.
 */
async function rawFloor(calls: number, total: number, concurrency: number): Promise<{ sequential: Figures; concurrent: Figures }> {
  const ws = new WebSocket(params.get("ws") ?? `ws://${location.hostname}:9001`, ["hl.1"]);
  ws.binaryType = "arraybuffer";
  await new Promise((ok) => (ws.onopen = ok));
  const sent = new Float64Array(256);
  const run = (n: number, inFlight: number) =>
    new Promise<Figures>((ok) => {
      const lat: number[] = [];
      let started = 0;
      const t0 = performance.now();
      const send = (id: number) => {
        started++;
        sent[id] = performance.now();
        ws.send(new Uint8Array([0x01, id, 0xff, 0xff]));
      };
      ws.onmessage = (ev) => {
        const b = new Uint8Array(ev.data as ArrayBuffer);
        if (b[0] !== 0x12) return;
        lat.push(performance.now() - sent[b[1]]);
        if (lat.length === n) ok(figures(lat, performance.now() - t0));
        else if (started < n) send(b[1]);
      };
      for (let i = 0; i < inFlight; i++) send(i);
    });
  const sequential = await run(calls, 1);
  const concurrent = await run(Math.floor(total / concurrency) * concurrency, concurrency);
  ws.close();
  return { sequential, concurrent };
}

run().then(
  (r) => fetch("/bench-result", { method: "POST", body: JSON.stringify(r) }),
  (e) => fetch("/bench-result", { method: "POST", body: JSON.stringify({ error: String(e) }) }),
);
