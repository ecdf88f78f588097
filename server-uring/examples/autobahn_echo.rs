//! A plain WebSocket echo server on HardLight's transport, for the Autobahn
//! conformance suite (`.ci/autobahn.sh` runs it against `kosoku`).
//!
//! ```text
//! cargo run --release -p hardlight-server --example autobahn_echo -- --listen 127.0.0.1:9001 [--cores N] [--backend ring|glommio]
//! ```
//!
//! Without `--cores` it runs one unpinned shard; without `--backend`, on the
//! default backend (the ring).

use hardlight_server::echo::EchoServer;
use hardlight_server::Backend;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let mut listen = "127.0.0.1:9001".to_string();
    let mut cores: Option<usize> = None;
    let mut backend = Backend::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().expect("--listen needs an address"),
            "--cores" => cores = Some(args.next().and_then(|n| n.parse().ok()).expect("--cores needs a number")),
            "--backend" => {
                backend = match args.next().as_deref() {
                    Some("ring") => Backend::Ring,
                    Some("glommio") => Backend::Glommio,
                    _ => panic!("--backend needs ring or glommio"),
                }
            }
            other => {
                eprintln!("unknown argument {other}\nusage: autobahn_echo [--listen ADDR] [--cores N] [--backend ring|glommio]");
                std::process::exit(2);
            }
        }
    }
    let builder = EchoServer::builder(listen.parse().expect("--listen must be IP:PORT")).backend(backend);
    let builder = match cores {
        Some(n) => builder.shards(n),
        None => builder.unpinned(1),
    };
    let server = builder.serve_echo().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1);
    });
    println!("echo listening on ws://{} ({backend:?})", server.local_addr());
    // SIGTERM/SIGINT: stop accepting, let calls in flight finish, Close 1001, exit 0.
    if let Err(e) = server.run_until_signal() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
