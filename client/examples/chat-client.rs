//! Joins a chat thread: prints its history, then every message as it
//! arrives, one per line, and sends each line typed on standard input.
//!
//! ```text
//! cargo run --release -p hardlight-client --example chat-client -- ws://127.0.0.1:9001 --user NAME --thread T
//! ```

#[allow(dead_code)] // the server half of the API is unused here
#[path = "../../server-uring/examples/api/chat.rs"]
mod api;

use api::{ChatClient, ChatMessage, ChatMethod};
use hardlight::client::{ClientConfig, Connection};
use tokio::io::{AsyncBufReadExt, BufReader};

fn print(m: &ChatMessage) {
    println!("[{}] {}: {}", m.thread, m.user, m.text);
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut url = "ws://127.0.0.1:9001".to_string();
    let mut user = std::env::var("USER").unwrap_or_else(|_| "anon".into());
    let mut thread = "general".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--user" => user = args.next().ok_or("--user needs a name")?,
            "--thread" => thread = args.next().ok_or("--thread needs a name")?,
            other if other.starts_with("ws://") => url = other.to_string(),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let conn = Connection::connect_with(&url, ClientConfig::default().schema(&ChatMethod::SCHEMA)).await?;
    // Listen before joining so nothing posted in between is missed.
    let mut incoming = conn.events::<ChatMessage>();
    let chat = ChatClient::new(conn.clone());
    let history = chat.join(user, thread.clone()).await?;
    for m in &history {
        print(m);
    }
    // A message posted while joining is both in the history and pushed;
    // print it once. (Not by sequence number alone: with several chat
    // servers bridged through a broker, each numbers its own log.)
    let printed: std::collections::HashSet<(u64, String, String)> =
        history.into_iter().map(|m| (m.seq, m.user, m.text)).collect();
    tokio::spawn(async move {
        while let Ok(m) = incoming.recv().await {
            if !printed.contains(&(m.seq, m.user.clone(), m.text.clone())) {
                print(&m);
            }
        }
    });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        if line.is_empty() {
            continue;
        }
        if let Err(e) = chat.send_message(thread.clone(), line).await? {
            eprintln!("not sent: {e}");
        }
    }
    // Standard input ended: give our last message a moment to come back.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    Ok(())
}
