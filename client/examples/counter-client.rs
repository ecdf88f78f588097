//! Calls the counter service: increments, decrements and reads it.
//!
//! ```text
//! cargo run --release -p hardlight-server --example counter-server -- --listen 127.0.0.1:9000
//! cargo run --release -p hardlight-client --example counter-client -- ws://127.0.0.1:9000
//! ```
//!
//! Over TLS with the server's development certificate (see the server example):
//!
//! ```text
//! cargo run --release -p hardlight-client --example counter-client -- wss://localhost:9443 --trust /tmp/hl-dev-cert.pem
//! ```

#[allow(dead_code)] // the server half of the API is unused here
#[path = "../../server-uring/examples/api/counter.rs"]
mod api;

use api::{CounterClient, CounterMethod};
use hardlight::client::{ClientConfig, Connection};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "ws://127.0.0.1:9000".to_string());
    // The schema's fingerprint lets a server built from another version of
    // the trait refuse this client at connect time, naming the mismatch.
    let mut config = ClientConfig::default().schema(&CounterMethod::SCHEMA);
    match (args.next().as_deref(), args.next()) {
        (None, _) => {}
        // wss:// with a certificate the public roots do not cover (a dev one).
        (Some("--trust"), Some(pem_file)) => config = config.trust_pem(&std::fs::read_to_string(pem_file)?)?,
        _ => return Err("usage: counter-client [URL] [--trust CERT.pem]".into()),
    }
    let counter = CounterClient::new(Connection::connect_with(&url, config).await?);
    println!("increment(5) -> {}", counter.increment(5).await?);
    println!("increment(3) -> {}", counter.increment(3).await?);
    match counter.decrement(2).await? {
        Ok(v) => println!("decrement(2) -> {v}"),
        Err(e) => println!("decrement(2) -> error: {e}"),
    }
    println!("get() -> {}", counter.get().await?);
    match counter.decrement(1_000).await? {
        Ok(v) => println!("decrement(1000) -> {v}"),
        Err(e) => println!("decrement(1000) -> error: {e}"),
    }
    Ok(())
}
