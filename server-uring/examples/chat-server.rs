//! Serves the chat service.
//!
//! ```text
//! cargo run --release -p hardlight-server --example chat-server -- --listen 127.0.0.1:9001 --data DIR [--cores N] [--broker redis://127.0.0.1:6379] [--allow-origin http://127.0.0.1:8080 ...]
//! ```
//!
//! With `--allow-origin` (repeatable), browsers may connect only from the
//! listed origins (403 otherwise); the browser chat page in
//! `clients/ts/examples/chat/` logs in by setting the `hl_user` cookie.
//!
//! With `--broker`, messages posted on any chat server bridged to the same
//! Redis reach the thread's followers on every one of them (each server
//! keeps its own log and history).

#[allow(dead_code)] // the client half of the API is unused here
#[path = "api/chat.rs"]
mod api;
#[path = "support/chat_server.rs"]
mod chat_server;

use hardlight::server::Server;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let mut listen = "127.0.0.1:9001".to_string();
    let mut data = "chat-data".to_string();
    let mut cores: Option<usize> = None;
    let mut broker: Option<String> = None;
    let mut origins: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().expect("--listen needs an address"),
            "--data" => data = args.next().expect("--data needs a directory"),
            "--cores" => cores = Some(args.next().and_then(|n| n.parse().ok()).expect("--cores needs a number")),
            "--broker" => broker = Some(args.next().expect("--broker needs a redis:// URL")),
            "--allow-origin" => origins.push(args.next().expect("--allow-origin needs an origin")),
            other => {
                eprintln!(
                    "unknown argument {other}\nusage: chat-server [--listen ADDR] [--data DIR] [--cores N] [--broker redis://HOST:PORT] [--allow-origin ORIGIN]..."
                );
                std::process::exit(2);
            }
        }
    }
    let store = chat_server::Store::open(std::path::Path::new(&data)).unwrap_or_else(|e| {
        eprintln!("error: cannot open {data}: {e}");
        std::process::exit(1);
    });
    let mut builder = Server::builder(listen.parse().expect("--listen must be IP:PORT"));
    if let Some(n) = cores {
        builder = builder.shards(n);
    }
    if let Some(url) = &broker {
        builder = builder.broker(url.clone());
    }
    if !origins.is_empty() {
        builder = builder.allowed_origins(origins);
    }
    let server = builder.serve(chat_server::factory(store.clone())).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1);
    });
    println!("chat listening on ws://{} (log: {})", server.local_addr(), store.path().display());
    if let Some(url) = &broker {
        println!("bridged to other chat servers through {url}");
    }
    // SIGTERM/SIGINT: stop accepting, let calls in flight finish, Close 1001, exit 0.
    if let Err(e) = server.run_until_signal() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
