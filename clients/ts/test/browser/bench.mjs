// Browser figures beside the Rust client's, in one sitting: calls/s, p50
// and p99 of the chat service's `history` call on an empty thread, made
// sequentially and with 64 in flight, from Chromium (examples/chat/bench.ts,
// the generated client) and from the Rust client (the chat-bench example),
// against one release chat server. Rounds alternate between the two.
//   node test/browser/bench.mjs [--rounds 3] [--calls 5000] [--concurrent-calls 50000]
// Needs release builds of the chat-server and chat-bench examples. Chromium
// is started directly, not through playwright: DevTools' instrumentation of
// every WebSocket frame would be measured too. The server runs on CPU 1,
// both clients on CPU 0 (taskset).
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CHROMIUM_FLAGS, REPO, chatServer, chromiumPath, staticServer } from "./harness.mjs";

const arg = (name, d) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : d;
};
const ROUNDS = arg("--rounds", 3);
const CALLS = arg("--calls", 5000);
const CONCURRENT_CALLS = arg("--concurrent-calls", 50000);
const CONCURRENCY = 64;

process.env.HL_CHAT_SERVER ??= join(REPO, "target/release/examples/chat-server");
const rustBench = join(REPO, "target/release/examples/chat-bench");
execFileSync("taskset", ["-cp", "0", String(process.pid)]);

let onResult = () => {};
const site = await staticServer((path, body) => path === "/bench-result" && onResult(JSON.parse(body)));
const server = await chatServer(site.origin);
execFileSync("taskset", ["-acp", "1", String(server.child.pid)]);

async function browserRound() {
  const profile = mkdtempSync(join(tmpdir(), "hl-chromium-"));
  const query = `ws=${encodeURIComponent(server.url)}&calls=${CALLS}&concurrentCalls=${CONCURRENT_CALLS}&concurrency=${CONCURRENCY}`;
  const result = new Promise((ok) => (onResult = ok));
  const child = spawn("taskset", [
    "-c", "0", chromiumPath(), ...CHROMIUM_FLAGS, `--user-data-dir=${profile}`,
    `${site.origin}/examples/chat/bench.html?${query}`,
  ], { stdio: "ignore", detached: true });
  const exited = new Promise((ok) => child.on("exit", ok));
  const timeout = setTimeout(() => onResult({ error: "no result within 300 s" }), 300_000);
  const r = await result;
  clearTimeout(timeout);
  // Chromium and its helper processes (its own process group).
  process.kill(-child.pid, "SIGKILL");
  await exited;
  await new Promise((ok) => setTimeout(ok, 500));
  rmSync(profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  if (r.error) throw new Error(`browser bench: ${r.error}`);
  if (!r.isolated) console.warn("page not cross-origin isolated: its timers are coarsened to 100 us");
  return { seq: r.sequential, conc: r.concurrent, raw: r.raw, ua: r.userAgent };
}

function rustRound() {
  const out = execFileSync("taskset", [
    "-c", "0", rustBench, server.url,
    "--calls", String(CALLS), "--concurrent-calls", String(CONCURRENT_CALLS), "--concurrency", String(CONCURRENCY),
  ]).toString();
  const parse = (what) => {
    const m = out.match(new RegExp(`rust ${what}: (\\d+) calls, (\\d+) calls/s, p50 (\\d+) us, p99 (\\d+) us`));
    if (!m) throw new Error(`unexpected chat-bench output:\n${out}`);
    return { calls: +m[1], rate: +m[2], p50: +m[3], p99: +m[4] };
  };
  return { seq: parse("sequential"), conc: parse(`${CONCURRENCY}-concurrent`) };
}

const RAW = "Chromium, bare WebSocket (floor)";
const rows = [];
try {
  for (let r = 1; r <= ROUNDS; r++) {
    for (const [client, run] of [["Chromium (TS client)", browserRound], ["Rust client (tokio)", async () => rustRound()]]) {
      const { seq, conc, raw, ua } = await run();
      if (ua && r === 1) console.log(`browser: ${ua}`);
      const measured = [[client, "sequential", seq], [client, `${CONCURRENCY} concurrent`, conc]];
      if (raw) {
        measured.push([RAW, "sequential", raw.sequential], [RAW, `${CONCURRENCY} concurrent`, raw.concurrent]);
      }
      for (const [who, mode, x] of measured) {
        rows.push({ round: r, client: who, mode, ...x });
        console.log(`round ${r} | ${who} | ${mode} | ${x.calls} | ${x.rate.toFixed(0)} | ${x.p50.toFixed(0)} | ${x.p99.toFixed(0)}`);
      }
    }
  }
} finally {
  server.stop();
  site.server.close();
}

console.log(`\nload average at the end: ${execFileSync("cat", ["/proc/loadavg"]).toString().trim()}`);
console.log("medians over rounds:\n| client, mode | calls | calls/s | p50 (us) | p99 (us) |\n| --- | --- | --- | --- | --- |");
const med = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const client of ["Chromium (TS client)", RAW, "Rust client (tokio)"]) {
  for (const mode of ["sequential", `${CONCURRENCY} concurrent`]) {
    const rs = rows.filter((x) => x.client === client && x.mode === mode);
    console.log(`| ${client}, ${mode} | ${rs[0].calls} | ${med(rs.map((x) => x.rate)).toFixed(0)} | ${med(rs.map((x) => x.p50)).toFixed(0)} | ${med(rs.map((x) => x.p99)).toFixed(0)} |`);
  }
}
