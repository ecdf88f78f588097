//! Event fan-out: one emit to N connections spread over the server's shards.
//!
//! Starts the glommio server in-process (shards on the listed CPUs), opens N
//! raw WebSocket connections from a single-threaded client in a child
//! process (one process may not hold 20,000 sockets), subscribes each
//! to one topic, then emits events from a plain thread through
//! `ServerHandle::emitter()`, one at a time. Every delivery's latency (emit to
//! receipt, one process clock) goes into an HdrHistogram; for each emit it
//! records the time until the last of the N deliveries arrived.
//!
//! The service (`hardlight_bench::fan`) is the one loadgen's `fanout`
//! scenario drives; this binary differs in scale (10,000 connections in a
//! second process) and in emitting from a thread outside the server.
//!
//! ```text
//! cargo run --release -p hardlight-bench --bin fanout -- --connections 10000 --emits 20 --out results/fanout
//! cargo run --release -p hardlight-bench --bin fanout -- --backend ring --out results/fanout-ring
//! ```

use std::cell::RefCell;
use std::io::Write as _;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hardlight::protocol::frame::{self, Opcode, Role};
use hardlight::server::{Backend, ConnectContext, Refusal, Server};
use hardlight_bench::fan::{FanHandler, FanMethod, FanService, FanSubscribeInput, Tick, FAN_TOPIC};
use hardlight_bench::fan_floor::{FloorMode, FloorServer};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// CLOCK_MONOTONIC in ns: comparable between the server process and the
/// client process on one machine.
fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes only into the struct we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

const UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: f\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: hl/1\r\n\r\n";

struct Shared {
    latency: Histogram<u64>,
    /// Per emit: number of deliveries and the latest receipt time.
    per_emit: Vec<(u64, u64)>,
    emitted_at: Vec<u64>,
}

struct Args {
    connections: usize,
    emits: u32,
    gap: Duration,
    server_cpus: Vec<usize>,
    client_cpu: Option<usize>,
    out: Option<String>,
    /// Child mode: connect to this address as the client side.
    client_of: Option<String>,
    /// The server's event loop, or `None` for the kernel floor.
    backend: Option<Backend>,
    /// With `backend: None`: how the floor server sends.
    floor: FloorMode,
}

fn parse_args() -> Args {
    let mut a = Args {
        connections: 10_000,
        emits: 20,
        gap: Duration::from_millis(200),
        server_cpus: vec![0, 1],
        client_cpu: Some(0),
        out: None,
        client_of: None,
        backend: Some(Backend::Ring),
        floor: FloorMode::Send,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--connections" => a.connections = v().parse().expect("--connections N"),
            "--emits" => a.emits = v().parse().expect("--emits N"),
            "--gap-ms" => a.gap = Duration::from_millis(v().parse().expect("--gap-ms MS")),
            "--server-cpus" => a.server_cpus = v().split(',').map(|c| c.parse().expect("cpu id")).collect(),
            "--client-cpu" => a.client_cpu = v().parse().ok(),
            "--out" => a.out = Some(v()),
            "--backend" => {
                (a.backend, a.floor) = match v().as_str() {
                    "glommio" => (Some(Backend::Glommio), FloorMode::Send),
                    "ring" => (Some(Backend::Ring), FloorMode::Send),
                    "floor-send" => (None, FloorMode::Send),
                    "floor-uring" => (None, FloorMode::Uring),
                    other => panic!("--backend glommio|ring|floor-send|floor-uring, not {other}"),
                }
            }
            "--client-of" => a.client_of = Some(v()),
            other => {
                eprintln!("unknown argument {other}\nusage: fanout [--connections N] [--emits N] [--gap-ms MS] [--server-cpus 0,1] [--client-cpu C|none] [--backend glommio|ring|floor-send|floor-uring] [--out DIR]");
                std::process::exit(2);
            }
        }
    }
    a
}

/// Both ends of every connection live in this process: 2 fds per connection.
fn raise_fd_limit(need: u64) {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < need {
            let want = libc::rlimit { rlim_cur: need, rlim_max: rl.rlim_max.max(need) };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) != 0 {
                eprintln!(
                    "warning: could not raise the open-file limit to {need} (have {}): connections may fail",
                    rl.rlim_cur
                );
            }
        }
    }
}

fn main() {
    let args = parse_args();
    raise_fd_limit(args.connections as u64 + 1024);
    match args.client_of.clone() {
        Some(addr) => client(&args, addr.parse().expect("--client-of ADDR")),
        None => parent(&args),
    }
}

/// The server under test: HardLight, or the kernel floor (`fan_floor`).
enum Target {
    HardLight(Box<hardlight::server::ServerHandle>, hardlight::server::Emitter),
    Floor(FloorServer),
}

impl Target {
    fn start(args: &Args) -> Self {
        let Some(backend) = args.backend else {
            return Target::Floor(FloorServer::start(args.connections, args.server_cpus.first().copied(), args.floor));
        };
        let server = Server::builder("127.0.0.1:0".parse().unwrap())
            .cores(args.server_cpus.clone())
            .max_connections_per_shard(args.connections + 16)
            .backend(backend)
            .serve(|ctx: &ConnectContext<'_>| Ok::<_, Refusal>(FanService::new(FanHandler { events: ctx.events() })))
            .expect("server starts");
        let emitter = server.emitter();
        Target::HardLight(Box::new(server), emitter)
    }

    fn addr(&self) -> std::net::SocketAddr {
        match self {
            Target::HardLight(s, _) => s.local_addr(),
            Target::Floor(f) => f.local_addr(),
        }
    }

    /// Emits one tick; the floor also says how long its sends took.
    fn emit(&self, tick: Tick) -> Option<Duration> {
        match self {
            Target::HardLight(_, e) => {
                e.to_topic(FAN_TOPIC, &tick).expect("emit");
                None
            }
            Target::Floor(f) => Some(f.emit(tick)),
        }
    }
}

/// The server side: serve, spawn the client process, emit, report.
fn parent(args: &Args) {
    let target = Target::start(args);
    let addr = target.addr();
    // The client runs in its own process: each process may hold only so many
    // sockets, and 10,000 connections need 20,000 in one.
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--client-of", &addr.to_string(), "--connections", &args.connections.to_string()])
        .args(["--emits", &args.emits.to_string()])
        .args(["--client-cpu", &args.client_cpu.map_or("none".into(), |c| c.to_string())])
        .args(args.out.as_ref().map(|d| vec!["--out".to_string(), d.clone()]).unwrap_or_default())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("client process starts");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    match lines.next() {
        Some(Ok(l)) if l == "ready" => {}
        other => panic!("client did not get ready: {other:?}"),
    }
    let mut send_ms = Vec::new();
    for seq in 0..args.emits {
        std::thread::sleep(args.gap);
        send_ms.extend(target.emit(Tick { seq, emitted_ns: now_ns() }).map(|d| d.as_secs_f64() * 1e3));
    }
    let summary: String = lines.map_while(Result::ok).collect::<Vec<_>>().join("\n");
    let ok = child.wait().map(|s| s.success()).unwrap_or(false);
    let server = match args.backend {
        Some(Backend::Glommio) => "glommio".to_string(),
        Some(Backend::Ring) => "ring".to_string(),
        None => format!("floor-{}", if args.floor == FloorMode::Send { "send" } else { "uring" }),
    };
    let mut head = format!("{{\n  \"server\": \"{server}\",\n  \"shards\": {},", args.server_cpus.len());
    if !send_ms.is_empty() {
        send_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
        head += &format!("\n  \"server_send_all_ms_median\": {:.3},", send_ms[send_ms.len() / 2]);
    }
    let summary = summary.replacen('{', &head, 1);
    println!("{summary}");
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(format!("{dir}/summary.json"), format!("{summary}\n")).unwrap();
        if let Ok(h) = std::fs::read(format!("{dir}.tmp.hgrm")) {
            std::fs::write(format!("{dir}/delivery-latency.hgrm"), h).unwrap();
            let _ = std::fs::remove_file(format!("{dir}.tmp.hgrm"));
        }
    }
    if let Target::HardLight(server, _) = target {
        server.shutdown();
    }
    if !ok {
        eprintln!("error: not every event reached every connection");
        std::process::exit(1);
    }
}

/// The client side: N connections, subscribe, then record every delivery.
fn client(args: &Args, addr: std::net::SocketAddr) {
    if let Some(cpu) = args.client_cpu {
        core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let shared = Rc::new(RefCell::new(Shared {
        latency: Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap(),
        per_emit: vec![(0, 0); args.emits as usize],
        emitted_at: vec![u64::MAX; args.emits as usize],
    }));
    let subscribed = Arc::new(AtomicU64::new(0));
    let local = tokio::task::LocalSet::new();
    let input = hardlight::protocol::wire::encode(&FanSubscribeInput { topic: FAN_TOPIC.into() }).unwrap().to_vec();
    let emits = args.emits;
    let n = args.connections;
    let total_deliveries = local.block_on(&rt, async {
        eprintln!("opening {n} connections to {addr}...");
        let t_open = Instant::now();
        for i in 0..n {
            tokio::task::spawn_local(connection(addr, i, input.clone(), shared.clone(), subscribed.clone(), emits));
            // Open in waves no larger than the listen backlog.
            if i % 256 == 255 {
                while subscribed.load(Ordering::Relaxed) + 64 < i as u64 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
        while subscribed.load(Ordering::Relaxed) < n as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        eprintln!("{n} connections subscribed in {:?}", t_open.elapsed());
        println!("ready");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let done: u64 = shared.borrow().per_emit.iter().map(|e| e.0).sum();
            if done == n as u64 * emits as u64 || Instant::now() > deadline {
                break done;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let s = shared.borrow();
    let mut last_ms: Vec<f64> =
        s.per_emit.iter().zip(&s.emitted_at).map(|((_, last), at)| last.saturating_sub(*at) as f64 / 1e6).collect();
    last_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let all_delivered = s.per_emit.iter().all(|e| e.0 == n as u64);
    let median_last = last_ms[last_ms.len() / 2];
    let rate = n as f64 / (median_last / 1e3);
    let h = &s.latency;
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
    println!(
        "{{\n  \"connections\": {n},\n  \"emits\": {emits},\n  \"deliveries\": {total_deliveries},\n  \"all_delivered\": {all_delivered},\n  \"time_to_last_delivery_ms\": {{\"min\": {:.3}, \"median\": {:.3}, \"max\": {:.3}}},\n  \"deliveries_per_s_median_emit\": {:.0},\n  \"delivery_latency_us\": {{\"p50\": {:.1}, \"p90\": {:.1}, \"p99\": {:.1}, \"p99_9\": {:.1}, \"max\": {:.1}}}\n}}",
        last_ms[0],
        median_last,
        last_ms[last_ms.len() - 1],
        rate,
        us(0.5),
        us(0.9),
        us(0.99),
        us(0.999),
        h.max() as f64 / 1e3,
    );
    if let Some(dir) = &args.out {
        let mut f = std::fs::File::create(format!("{dir}.tmp.hgrm")).unwrap();
        writeln!(f, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)").unwrap();
        for v in h.iter_quantiles(1) {
            let q = v.quantile_iterated_to();
            let inv = if q < 1.0 { 1.0 / (1.0 - q) } else { f64::INFINITY };
            writeln!(
                f,
                "{:>12.3} {:>14.12} {:>10} {:>14.2}",
                v.value_iterated_to() as f64 / 1e3,
                q,
                v.count_since_last_iteration(),
                inv
            )
            .unwrap();
        }
    }
    if !all_delivered {
        std::process::exit(1);
    }
}

async fn connection(
    addr: std::net::SocketAddr,
    i: usize,
    input: Vec<u8>,
    shared: Rc<RefCell<Shared>>,
    subscribed: Arc<AtomicU64>,
    emits: u32,
) {
    let mut tcp = loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(t) => break t,
            Err(e) => {
                eprintln!("connect {i}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    tcp.set_nodelay(true).unwrap();
    let mut out = UPGRADE.to_vec();
    let mut msg = Vec::new();
    hardlight::protocol::envelope::encode_call(&mut msg, 0, FanMethod::Subscribe.id(), &input);
    frame::write_masked_frame(&mut out, true, Opcode::Binary, &msg, [1, 2, 3, 4]);
    tcp.write_all(&out).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut have = 0usize;
    let mut upgraded = false;
    let mut seen = 0u32;
    loop {
        let r = tcp.read(&mut buf[have..]).await.unwrap_or(0);
        if r == 0 {
            return;
        }
        let t = now_ns();
        have += r;
        let mut at = 0;
        if !upgraded {
            let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            at = end + 4;
            upgraded = true;
        }
        while let Ok(Some(h)) = frame::parse_header(&buf[at..have], Role::Client, usize::MAX) {
            let end = at + h.header_len + h.payload_len as usize;
            if end > have {
                break;
            }
            let p = &buf[at + h.header_len..end];
            match p.first() {
                Some(&hardlight::protocol::envelope::KIND_RESULT_OK) => {
                    subscribed.fetch_add(1, Ordering::Relaxed);
                }
                Some(&hardlight::protocol::envelope::KIND_EVENT) => {
                    let mut ab = hardlight::protocol::wire::AlignedBuf::new();
                    let tick: Tick =
                        <Tick as hardlight::Wire>::decode(hardlight::protocol::wire::align_into(&mut ab, &p[3..]))
                            .unwrap();
                    let mut s = shared.borrow_mut();
                    let _ = s.latency.record(t.saturating_sub(tick.emitted_ns).max(1));
                    let seq = tick.seq as usize;
                    s.emitted_at[seq] = s.emitted_at[seq].min(tick.emitted_ns);
                    let e = &mut s.per_emit[seq];
                    e.0 += 1;
                    e.1 = e.1.max(t);
                    seen += 1;
                }
                _ => {}
            }
            at = end;
        }
        buf.copy_within(at..have, 0);
        have -= at;
        if seen == emits {
            // Stay connected until the process ends, so no close races the rest.
            let _ = tcp.read(&mut buf).await;
            return;
        }
    }
}
