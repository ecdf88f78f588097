//! Serves the counter service.
//!
//! ```text
//! cargo run --release -p hardlight-server --example counter-server -- --listen 127.0.0.1:9000 [--cores N]
//! ```
//!
//! Over TLS (wss://), in development mode: a fresh self-signed certificate
//! for `localhost`, whose PEM is written to the given file for the client to
//! trust (`--tls CERT.pem KEY.pem` serves real files instead):
//!
//! ```text
//! cargo run --release -p hardlight-server --example counter-server -- --listen 127.0.0.1:9443 --tls-self-signed /tmp/hl-dev-cert.pem
//! cargo run --release -p hardlight-client --example counter-client -- wss://localhost:9443 --trust /tmp/hl-dev-cert.pem
//! ```

#[path = "api/counter.rs"]
mod api;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use api::{Counter, CounterError, CounterService};
use hardlight::server::{ConnectContext, Refusal, Server, TlsConfig};

/// Handler for one connection; the value itself is shared by all of them.
struct Handler {
    value: Arc<AtomicU64>,
}

impl Counter for Handler {
    async fn increment(&self, amount: u64) -> u64 {
        self.value.fetch_add(amount, Ordering::Relaxed) + amount
    }

    async fn decrement(&self, amount: u64) -> Result<u64, CounterError> {
        self.value
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(amount))
            .map(|old| old - amount)
            .map_err(|current| CounterError::Underflow { current })
    }

    async fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let mut listen = "127.0.0.1:9000".to_string();
    let mut cores: Option<usize> = None;
    let mut tls: Option<TlsConfig> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().expect("--listen needs an address"),
            "--cores" => cores = Some(args.next().and_then(|n| n.parse().ok()).expect("--cores needs a number")),
            "--tls-self-signed" => {
                let out = args.next().expect("--tls-self-signed needs a file to write the certificate to");
                let (config, cert_pem) = TlsConfig::self_signed(&["localhost"]).unwrap_or_else(|e| fail(e));
                std::fs::write(&out, cert_pem).unwrap_or_else(|e| fail(format!("cannot write {out}: {e}")));
                println!("development TLS: self-signed certificate for localhost written to {out}");
                tls = Some(config);
            }
            "--tls" => {
                let (cert, key) = (args.next(), args.next());
                let (Some(cert), Some(key)) = (cert, key) else { fail("--tls needs CERT.pem KEY.pem") };
                tls = Some(TlsConfig::from_pem_files(cert, key).unwrap_or_else(|e| fail(e)));
            }
            other => {
                eprintln!(
                    "unknown argument {other}\nusage: counter-server [--listen ADDR] [--cores N] [--tls-self-signed CERT_OUT | --tls CERT KEY]"
                );
                std::process::exit(2);
            }
        }
    }
    let value = Arc::new(AtomicU64::new(0));
    let mut builder = Server::builder(listen.parse().expect("--listen must be IP:PORT"));
    if let Some(n) = cores {
        builder = builder.shards(n);
    }
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    let server = builder
        .serve(move |_: &ConnectContext<'_>| Ok::<_, Refusal>(CounterService::new(Handler { value: value.clone() })))
        .unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(1);
        });
    println!(
        "counter listening on {scheme}://{} ({} shards)",
        server.local_addr(),
        cores.unwrap_or_else(|| hardlight::server::online_cpus().len())
    );
    // SIGTERM/SIGINT: stop accepting, let calls in flight finish, Close 1001, exit 0.
    if let Err(e) = server.run_until_signal() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("error: {e}");
    std::process::exit(1);
}
