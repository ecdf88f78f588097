// What the browser tests need around Chromium: a static file server for
// the page, the real chat server (default backend) as a child process, and
// Debian's chromium under playwright-core.
import { spawn, execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, readdirSync, existsSync, rmSync } from "node:fs";
import { createServer as netServer, connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join, normalize, extname, resolve } from "node:path";
import { chromium } from "playwright-core";

export const TS_ROOT = resolve(import.meta.dirname, "../..");
export const REPO = resolve(TS_ROOT, "../..");
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".map": "application/json" };

/**
 * Serves clients/ts/ on 127.0.0.1 (the page and the compiled runtime);
 * a POST's body goes to `onPost(path, body)`.
 */
export async function staticServer(onPost = () => {}) {
  const server = createServer((req, res) => {
    if (req.method === "POST") {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        res.writeHead(204).end();
        onPost(req.url, body);
      });
      return;
    }
    const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname)).replace(/^(\.\.[/\\])+/, "");
    const file = join(TS_ROOT, path);
    if (!file.startsWith(TS_ROOT) || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    // Cross-origin isolation gives the page 5 us timers instead of 100 us
    // (performance.now), which the browser measurements need.
    res.writeHead(200, {
      "content-type": TYPES[extname(file)] ?? "application/octet-stream",
      "cross-origin-opener-policy": "same-origin",
      "cross-origin-embedder-policy": "require-corp",
    });
    res.end(readFileSync(file));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { server, origin: `http://127.0.0.1:${server.address().port}` };
}

export async function freePort() {
  const s = netServer();
  await new Promise((r) => s.listen(0, "127.0.0.1", r));
  const port = s.address().port;
  await new Promise((r) => s.close(r));
  return port;
}

/** The chat example's binary: HL_CHAT_SERVER, or the workspace's debug build. */
export function chatBinary() {
  const bin = process.env.HL_CHAT_SERVER ?? join(REPO, "target/debug/examples/chat-server");
  if (!existsSync(bin)) {
    throw new Error(`${bin} missing: cargo build -p hardlight-server --example chat-server (or set HL_CHAT_SERVER)`);
  }
  return bin;
}

/**
 * Starts the real chat server with one shard and an origin allow-list;
 * resolves once it listens. `at` restarts one on a given port and data
 * directory (a server that was killed: its message log survives).
 */
export async function chatServer(allowedOrigin, extraArgs = [], at = {}) {
  const port = at.port ?? (await freePort());
  const data = at.data ?? mkdtempSync(join(tmpdir(), "hl-chat-"));
  const child = spawn(
    chatBinary(),
    ["--listen", `127.0.0.1:${port}`, "--data", data, "--cores", "1", "--allow-origin", allowedOrigin, ...extraArgs],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: "warn" } },
  );
  let out = "";
  await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`chat server did not start:\n${out}`)), 20_000);
    const seen = (b) => {
      out += b;
      if (out.includes("chat listening")) {
        clearTimeout(timer);
        ok();
      }
    };
    child.stdout.on("data", seen);
    child.stderr.on("data", seen);
    child.on("exit", (code) => fail(new Error(`chat server exited (${code}):\n${out}`)));
  });
  return {
    url: `ws://127.0.0.1:${port}`,
    port,
    data,
    child,
    /** SIGKILL, keeping the data directory for a restart. */
    async kill() {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGKILL");
      await exited;
    },
    /**
     * SIGSTOP, returning once every thread of the server is stopped. A
     * stop signal is taken by one thread, which then stops the others: on
     * a busy machine a shard thread can serve a call several milliseconds
     * after kill(2) returned (a browser test saw an answer "while
     * stopped"). Polls /proc until each thread's state is T.
     */
    async pause() {
      child.kill("SIGSTOP");
      const deadline = Date.now() + 10_000;
      while (!allStopped(child.pid)) {
        if (Date.now() > deadline) throw new Error(`chat server ${child.pid} did not stop within 10 s`);
        await new Promise((r) => setTimeout(r, 2));
      }
    },
    resume() {
      child.kill("SIGCONT");
    },
    stop() {
      child.kill("SIGKILL");
      rmSync(data, { recursive: true, force: true });
    },
  };
}

/** Whether every thread of process `pid` is stopped (state T in /proc/PID/task/TID/stat). */
function allStopped(pid) {
  const tasks = readdirSync(`/proc/${pid}/task`);
  return tasks.every((tid) => {
    let stat;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    } catch {
      return true; // the thread ended since the listing
    }
    // The state follows the parenthesised command name, which may hold spaces.
    const state = stat.lastIndexOf(")") + 2;
    return stat[state] === "T";
  });
}

/** Flags Debian's chromium needs here: headless, and no background connections (refused by this machine's closed network). */
export const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Debian's chromium, headless, with the flags this machine's closed network needs. */
export function chromiumPath() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  try {
    return execFileSync("which", ["chromium"]).toString().trim();
  } catch {
    return null;
  }
}

export async function launch(executablePath = chromiumPath(), extraArgs = []) {
  // playwright-core gives each launch a fresh profile directory of its own
  // (it refuses a --user-data-dir argument), which is what Chromium needs here.
  const browser = await chromium.launch({
    executablePath,
    args: [...CHROMIUM_FLAGS, ...extraArgs],
  });
  return {
    browser,
    async close() {
      await browser.close();
    },
  };
}

/**
 * A TCP proxy on 127.0.0.1 to `port`, between a page and the server, that
 * cuts every connection through it on command (the page sees the
 * connection drop mid-stream, as on a network change). `stall()` stops
 * forwarding what the pages send on the open connections, so their calls
 * stay pending until the cut; `refuse(true)` closes new connections at
 * once (a server out of reach).
 */
export async function tcpProxy(port) {
  const pairs = new Set();
  let accepted = 0;
  let refusing = false;
  const server = netServer((client) => {
    accepted++;
    if (refusing) {
      client.destroy();
      return;
    }
    const up = netConnect(port, "127.0.0.1");
    const pair = { client, up, stalled: false };
    pairs.add(pair);
    client.on("data", (d) => pair.stalled || up.write(d));
    up.on("data", (d) => client.write(d));
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      up.destroy();
    };
    for (const s of [client, up]) {
      s.on("close", end);
      s.on("error", end);
    }
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `ws://127.0.0.1:${server.address().port}`,
    get accepted() {
      return accepted;
    },
    get open() {
      return pairs.size;
    },
    stall() {
      for (const p of pairs) p.stalled = true;
    },
    refuse(on) {
      refusing = on;
    },
    cut() {
      for (const p of [...pairs]) {
        p.client.destroy();
        p.up.destroy();
      }
      pairs.clear();
    },
    close() {
      this.cut();
      server.close();
    },
  };
}
