//! The chat server's logic: an append-only message log and the handler.
//! Shared by the chat example and its tests.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hardlight::server::{ConnectContext, ConnectionEvents, Refusal};
use hardlight::{Features, StateHandle};

use super::api::{Chat, ChatError, ChatMessage, ChatMethod, ChatService, ChatState};

/// The cookie a web page sets at log-in; the factory takes the user's name
/// from it (the browser sends the page's cookies on the upgrade).
pub const USER_COOKIE: &str = "hl_user";

/// Longest message accepted.
pub const MAX_TEXT: usize = 4096;

/// The event topic of a chat thread. Connections that joined the thread
/// subscribe to it; with a broker (`--broker`) it is also the topic that
/// carries the thread's messages between chat servers.
pub fn topic(thread: &str) -> String {
    format!("chat:{thread}")
}

/// The message log: one line per message in `DIR/messages.log`, written
/// and synced before `send_message` returns, so nothing acknowledged is lost
/// across a restart.
pub struct Store {
    file: Mutex<File>,
    history: Mutex<HashMap<String, Vec<ChatMessage>>>,
    path: PathBuf,
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n")
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Store {
    /// Opens (or creates) the log under `dir` and loads its history.
    pub fn open(dir: &Path) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("messages.log");
        let mut history: HashMap<String, Vec<ChatMessage>> = HashMap::new();
        if let Ok(f) = File::open(&path) {
            for line in BufReader::new(f).lines() {
                let line = line?;
                let parts: Vec<&str> = line.splitn(4, '\t').collect();
                // A torn last line (crash mid-write, never acknowledged) is skipped.
                if let [seq, thread, user, text] = parts[..] {
                    if let Ok(seq) = seq.parse() {
                        let m =
                            ChatMessage { seq, thread: unescape(thread), user: unescape(user), text: unescape(text) };
                        history.entry(m.thread.clone()).or_default().push(m);
                    }
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Arc::new(Self { file: Mutex::new(file), history: Mutex::new(history), path }))
    }

    /// Where the log lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends and syncs a message, assigning its sequence number. Blocking:
    /// call it off the executor.
    pub fn append(&self, thread: &str, user: &str, text: &str) -> std::io::Result<ChatMessage> {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let seq = history.values().map(|v| v.len() as u64).sum::<u64>() + 1;
        let m = ChatMessage { seq, thread: thread.to_string(), user: user.to_string(), text: text.to_string() };
        writeln!(file, "{}\t{}\t{}\t{}", seq, escape(thread), escape(user), escape(text))?;
        file.sync_data()?;
        history.entry(m.thread.clone()).or_default().push(m.clone());
        Ok(m)
    }

    /// The messages of `thread`, oldest first.
    pub fn history(&self, thread: &str) -> Vec<ChatMessage> {
        self.history.lock().unwrap_or_else(|p| p.into_inner()).get(thread).cloned().unwrap_or_default()
    }
}

/// One connection's handler.
pub struct ChatHandler {
    store: Arc<Store>,
    state: StateHandle<ChatState>,
    events: ConnectionEvents,
    features: Features,
}

impl Chat for ChatHandler {
    async fn join(&self, user: String, thread: String) -> Vec<ChatMessage> {
        {
            let mut s = self.state.lock();
            s.user = user;
            if !s.threads.contains(&thread) {
                s.threads.push(thread.clone());
            }
        }
        self.events.subscribe(&topic(&thread));
        // Posting makes sense once a thread is joined: the client sees it
        // in its feature set.
        self.features.enable([ChatMethod::SendMessage as u16]);
        self.store.history(&thread)
    }

    async fn leave(&self, thread: String) {
        let none_left = {
            let mut s = self.state.lock();
            s.threads.retain(|t| *t != thread);
            s.threads.is_empty()
        };
        self.events.unsubscribe(&topic(&thread));
        if none_left {
            self.features.disable([ChatMethod::SendMessage as u16]);
        }
    }

    async fn send_message(&self, thread: String, text: String) -> Result<u64, ChatError> {
        if text.len() > MAX_TEXT {
            return Err(ChatError::TooLong(MAX_TEXT as u32));
        }
        let user = self.state.read(|s| s.threads.contains(&thread).then(|| s.user.clone()));
        let Some(user) = user else {
            return Err(ChatError::NotJoined);
        };
        let store = self.store.clone();
        let t = thread.clone();
        // File I/O and fsync run on the shard's blocking pool, not on the shard.
        let msg = hardlight::server::rt::spawn_blocking(move || store.append(&t, &user, &text))
            .await
            .map_err(|e| ChatError::Storage(e.to_string()))?;
        let seq = msg.seq;
        // Every connection subscribed to the thread's topic, on every core,
        // and on every other chat server bridged to the same broker.
        if let Err(e) = self.events.emitter().to_topic(&topic(&thread), &msg) {
            tracing::warn!(error = %e, "chat message persisted but not delivered everywhere");
        }
        Ok(seq)
    }

    async fn history(&self, thread: String) -> Vec<ChatMessage> {
        self.store.history(&thread)
    }
}

/// The connection factory for the chat server. A browser's log-in cookie
/// ([`USER_COOKIE`]) names the user before any call; `send_message` is
/// disabled until the connection joins a thread.
pub fn factory(
    store: Arc<Store>,
) -> impl Fn(&ConnectContext<'_>) -> Result<ChatService<ChatHandler>, Refusal> + Send + Sync {
    move |ctx: &ConnectContext<'_>| {
        let user = ctx.request.cookie(USER_COOKIE).unwrap_or_default();
        let features = ctx.features();
        features.disable([ChatMethod::SendMessage as u16]);
        Ok(ChatService::new(ChatHandler {
            store: store.clone(),
            state: ctx.state(ChatState { user, threads: Vec::new() }),
            events: ctx.events(),
            features,
        }))
    }
}
