//! The kernel's floor for event fan-out: how fast one core can put one small
//! WebSocket message on each of N loopback TCP connections when nothing but
//! the send is done, so that `fanout`'s HardLight figures can be read
//! against what the socket layer allows on the same machine, in the same
//! sitting, with the same client.
//!
//! The floor server speaks just enough of the protocol for `fanout`'s
//! client: it answers the upgrade and the subscribe call with fixed bytes,
//! then sends each emitted `Tick` as a pre-framed EVENT to every connection,
//! either with one `send(2)` per connection ([`FloorMode::Send`]) or with
//! one io_uring submission holding every send ([`FloorMode::Uring`], the
//! batching a thread-per-core server can do at best). No registry, no
//! outbox, no per-connection task: the message is framed once.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hardlight::protocol::envelope::{KIND_EVENT, KIND_RESULT_OK};
use hardlight::protocol::frame::{self, Opcode};

use crate::fan::Tick;

/// How the floor server writes one message to every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorMode {
    /// One blocking `send(2)` per connection.
    Send,
    /// One io_uring submission carrying every send (in chunks of the ring's
    /// size), completions reaped after.
    Uring,
}

/// Ring entries per submission: sends beyond it go in the next chunk.
const RING_ENTRIES: u32 = 4096;

/// A running floor server on one pinned thread.
pub struct FloorServer {
    addr: SocketAddr,
    emits: mpsc::Sender<Tick>,
    /// Per emit, the time the server took to hand every send to the kernel.
    done: mpsc::Receiver<Duration>,
}

impl FloorServer {
    /// Listens on 127.0.0.1, accepts `connections` on a thread pinned to
    /// `cpu`, then sends each emitted tick to all of them.
    pub fn start(connections: usize, cpu: Option<usize>, mode: FloorMode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let (emits, rx) = mpsc::channel::<Tick>();
        let (done_tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            if let Some(cpu) = cpu {
                core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
            }
            let socks: Vec<TcpStream> = (0..connections).map(|_| accept_one(&listener)).collect();
            let mut ring = (mode == FloorMode::Uring).then(|| io_uring::IoUring::new(RING_ENTRIES).expect("io_uring"));
            while let Ok(tick) = rx.recv() {
                let msg = event_frame(&tick);
                let t0 = Instant::now();
                match ring.as_mut() {
                    None => send_each(&socks, &msg),
                    Some(ring) => send_batched(ring, &socks, &msg),
                }
                let _ = done_tx.send(t0.elapsed());
            }
        });
        Self { addr, emits, done }
    }

    /// Where the client connects.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends `tick` to every connection; returns the server's time to hand
    /// every send to the kernel.
    pub fn emit(&self, tick: Tick) -> Duration {
        self.emits.send(tick).expect("floor server thread");
        self.done.recv().expect("floor server thread")
    }
}

/// Accepts one connection and answers its upgrade and subscribe call.
fn accept_one(listener: &TcpListener) -> TcpStream {
    let (mut s, _) = listener.accept().expect("accept");
    s.set_nodelay(true).unwrap();
    // The client writes the upgrade and one masked CALL frame together;
    // read until both are here (the frame is the bytes after the header).
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        let n = s.read(&mut chunk).expect("read upgrade");
        assert!(n > 0, "client closed during the upgrade");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = &buf[end + 4..];
            if let Ok(Some(h)) = frame::parse_header(rest, frame::Role::Server, usize::MAX) {
                if rest.len() >= h.header_len + h.payload_len as usize {
                    break;
                }
            }
        }
    }
    let mut out = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".to_vec();
    frame::write_frame(&mut out, Opcode::Binary, &[KIND_RESULT_OK, 0]);
    s.write_all(&out).expect("write upgrade answer");
    s
}

/// One EVENT frame carrying `tick`, as the client parses it.
fn event_frame(tick: &Tick) -> Vec<u8> {
    let archive = hardlight::protocol::wire::encode(tick).expect("tick encodes");
    let mut payload = vec![KIND_EVENT, 0, 0];
    payload.extend_from_slice(&archive);
    let mut out = Vec::new();
    frame::write_frame(&mut out, Opcode::Binary, &payload);
    out
}

fn send_each(socks: &[TcpStream], msg: &[u8]) {
    for s in socks {
        // SAFETY: `msg` is valid for `msg.len()` bytes and the fd is open
        // (owned by `socks`).
        let n = unsafe { libc::send(s.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        assert_eq!(n, msg.len() as isize, "short send on an empty socket buffer");
    }
}

fn send_batched(ring: &mut io_uring::IoUring, socks: &[TcpStream], msg: &[u8]) {
    for chunk in socks.chunks(RING_ENTRIES as usize) {
        {
            let mut sq = ring.submission();
            for s in chunk {
                let op =
                    io_uring::opcode::Send::new(io_uring::types::Fd(s.as_raw_fd()), msg.as_ptr(), msg.len() as u32)
                        .build();
                // SAFETY: `msg` and the fds outlive the submission: this
                // function waits for every completion before it returns.
                unsafe { sq.push(&op).expect("chunk fits the ring") };
            }
        }
        ring.submit_and_wait(chunk.len()).expect("io_uring_enter");
        let mut got = 0;
        while got < chunk.len() {
            for cqe in ring.completion() {
                assert_eq!(cqe.result(), msg.len() as i32, "send completed short or failed");
                got += 1;
            }
            if got < chunk.len() {
                ring.submit_and_wait(chunk.len() - got).expect("io_uring_enter");
            }
        }
    }
}
