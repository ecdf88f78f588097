// Browser figures beside the Rust client's, in one sitting: calls/s, p50
// and p99 of the chat service's `history` call on an empty thread, made
// sequentially and with 64 in flight, from Chromium (the chat page's
// generated client) and from the Rust client (`chat-bench` example),
// against one release chat server. Rounds alternate between the two.
//   node test/browser/bench.mjs [--rounds 3] [--calls 5000] [--concurrent-calls 50000]
// Needs release builds of the chat-server and chat-bench examples; pins
// the server to CPU 1 and both clients to CPU 0 (taskset).
import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO, chatServer, chromiumPath, launch, staticServer } from "./harness.mjs";

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

// Chromium and its children on CPU 0, the server on CPU 1.
const wrapper = join(mkdtempSync(join(tmpdir(), "hl-bench-")), "chromium-cpu0");
writeFileSync(wrapper, `#!/bin/sh\nexec taskset -c 0 ${chromiumPath()} "$@"\n`);
chmodSync(wrapper, 0o755);
execFileSync("taskset", ["-cp", "0", String(process.pid)]);

const site = await staticServer();
const server = await chatServer(site.origin);
execFileSync("taskset", ["-acp", "1", String(server.child.pid)]);
const chromium = await launch(wrapper);
const page = await (await chromium.browser.newContext()).newPage();
await page.goto(`${site.origin}/examples/chat/index.html?ws=${encodeURIComponent(server.url)}`);
await page.fill("#name", "bench");
await page.click("#login button");
await page.waitForFunction(() => document.querySelector("#status").textContent === "connected");
if (!(await page.evaluate(() => self.crossOriginIsolated))) console.warn("page not cross-origin isolated: 100 us timers");

async function browserRound() {
  return page.evaluate(
    async ({ calls, total, concurrency }) => {
      const chat = window.hl.chat;
      const pct = (lat) => {
        lat.sort((a, b) => a - b);
        const at = (q) => lat[Math.min(lat.length - 1, Math.floor(lat.length * q))] * 1000;
        return { p50: at(0.5), p99: at(0.99) };
      };
      for (let i = 0; i < 500; i++) await chat.history("bench-empty");
      let lat = [];
      let t0 = performance.now();
      for (let i = 0; i < calls; i++) {
        const t = performance.now();
        await chat.history("bench-empty");
        lat.push(performance.now() - t);
      }
      const seq = { calls, rate: calls / ((performance.now() - t0) / 1000), ...pct(lat) };
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
      const conc = { calls: per * concurrency, rate: (per * concurrency) / ((performance.now() - t0) / 1000), ...pct(lat) };
      return { seq, conc };
    },
    { calls: CALLS, total: CONCURRENT_CALLS, concurrency: CONCURRENCY },
  );
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

const rows = [];
try {
  for (let r = 1; r <= ROUNDS; r++) {
    for (const [client, run] of [["Chromium (TS client)", browserRound], ["Rust client (tokio)", rustRound]]) {
      const { seq, conc } = await run();
      for (const [mode, x] of [["sequential", seq], [`${CONCURRENCY} concurrent`, conc]]) {
        rows.push({ round: r, client, mode, ...x });
        console.log(`round ${r} | ${client} | ${mode} | ${x.calls} | ${x.rate.toFixed(0)} | ${x.p50.toFixed(0)} | ${x.p99.toFixed(0)}`);
      }
    }
  }
} finally {
  await chromium.close();
  server.stop();
  site.server.close();
}

console.log("\nmedians over rounds:\n| client | calls | calls/s | p50 (us) | p99 (us) |\n| --- | --- | --- | --- | --- |");
const med = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const client of ["Chromium (TS client)", "Rust client (tokio)"]) {
  for (const mode of ["sequential", `${CONCURRENCY} concurrent`]) {
    const rs = rows.filter((x) => x.client === client && x.mode === mode);
    console.log(`| ${client}, ${mode} | ${rs[0].calls} | ${med(rs.map((x) => x.rate)).toFixed(0)} | ${med(rs.map((x) => x.p50)).toFixed(0)} | ${med(rs.map((x) => x.p99)).toFixed(0)} |`);
  }
}
