//! Test servers: the embedded HardLight server, and a plain blocking
//! WebSocket echo server (thread per connection) that can stall on purpose.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hardlight::protocol::frame::{apply_mask, parse_header, write_frame, Opcode, Role};
use hardlight_loadgen::engine::{Mode, RunConfig};
use hardlight_loadgen::scenario::Scenario;
use hardlight_loadgen::server::{start_embedded, start_embedded_for, EmbeddedService, ShardPlacement};
use hardlight_loadgen::ws::{accept_key, Target};

/// The embedded HardLight server on a free port, one unpinned shard.
pub fn hardlight() -> hardlight::server::ServerHandle {
    start_embedded("127.0.0.1:0".parse().unwrap(), ShardPlacement::Unpinned).expect("embedded server")
}

/// [`hardlight`] serving `service` (the `state` and `fanout` scenarios' services).
pub fn hardlight_serving(service: EmbeddedService) -> hardlight::server::ServerHandle {
    start_embedded_for("127.0.0.1:0".parse().unwrap(), ShardPlacement::Unpinned, None, service)
        .expect("embedded server")
}

/// A short, unpinned, quiet run config.
pub fn config(target: Target, scenario: Scenario, connections: usize, mode: Mode) -> RunConfig {
    let mut c = RunConfig::new("test", target, scenario);
    c.connections = connections;
    c.mode = mode;
    c.warmup = Duration::from_millis(200);
    c.duration = Duration::from_millis(1000);
    c.drain = Duration::from_secs(2);
    c.client_cpu = None;
    c.progress = false;
    c
}

/// A blocking WebSocket echo server. After `stall_after` messages in total
/// (over all connections), it sleeps `stall` once before echoing.
pub struct EchoServer {
    pub addr: SocketAddr,
    pub messages: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl EchoServer {
    pub fn start(stall_after: Option<u64>, stall: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let messages = Arc::new(AtomicU64::new(0));
        let (stop2, msgs2) = (stop.clone(), messages.clone());
        let accept = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((s, _)) => {
                        let m = msgs2.clone();
                        std::thread::spawn(move || serve(s, m, stall_after, stall));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { addr, messages, stop, accept: Some(accept) }
    }

    pub fn target(&self) -> Target {
        Target::at(self.addr).unwrap()
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

fn serve(mut s: TcpStream, messages: Arc<AtomicU64>, stall_after: Option<u64>, stall: Duration) {
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    // Upgrade.
    let end = loop {
        let Ok(n) = s.read(&mut chunk) else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let req = String::from_utf8_lossy(&buf[..end]).to_string();
    let key = req
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ").or_else(|| l.strip_prefix("sec-websocket-key: ")))
        .unwrap_or("")
        .trim()
        .to_string();
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(&key)
    );
    if s.write_all(resp.as_bytes()).is_err() {
        return;
    }
    buf.drain(..end);
    let mut out = Vec::new();
    loop {
        let mut pos = 0;
        while let Ok(Some(h)) = parse_header(&buf[pos..], Role::Server, 1 << 24) {
            let total = h.header_len + h.payload_len as usize;
            if pos + total > buf.len() {
                break;
            }
            let mut payload = buf[pos + h.header_len..pos + total].to_vec();
            apply_mask(&mut payload, h.mask.unwrap());
            pos += total;
            match h.opcode {
                Opcode::Close => {
                    write_frame(&mut out, Opcode::Close, &payload[..payload.len().min(2)]);
                    let _ = s.write_all(&out);
                    return;
                }
                Opcode::Binary | Opcode::Text => {
                    let n = messages.fetch_add(1, Ordering::SeqCst) + 1;
                    if stall_after == Some(n) {
                        // Flush what is already answered, then stall.
                        if s.write_all(&out).is_err() {
                            return;
                        }
                        out.clear();
                        std::thread::sleep(stall);
                    }
                    write_frame(&mut out, h.opcode, &payload);
                }
                _ => {}
            }
        }
        buf.drain(..pos);
        if !out.is_empty() {
            if s.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
