//! `loadgen storm`: the reconnect storm. N clients (reconnect on, resume on,
//! an on-connect hook that subscribes them to the fan topic) are connected
//! to a server process (`loadgen serve --service fan`); the server is then
//! restarted (SIGTERM: graceful drain, Close 1001 to everyone, then a new
//! process on the same port) and the run measures how long until every
//! client is connected again and resumed (its explicit gap notice for the
//! restart received, since a restarted server has no history), how much CPU
//! the new server process used meanwhile, and the latency of established
//! probe clients of another shard (a second server pinned to the same CPU)
//! before and during the storm.
//!
//! Two processes because of file descriptors: N client sockets plus N
//! server sockets do not fit one process's limit here (20,000).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hardlight::client::{Backoff, ClientConfig, Connection, Status};
use hardlight_bench::fan::{FanClient, Tick, FAN_TOPIC};
use hardlight_bench::BenchClient;

use crate::server::{start_embedded_for, EmbeddedService, ShardPlacement};

/// What to run.
#[derive(Debug, Clone)]
pub struct StormOptions {
    /// Clients in the storm.
    pub clients: usize,
    /// Established probe clients on the other shard.
    pub probes: usize,
    /// CPU of the client (this process's runtime).
    pub client_cpu: Option<usize>,
    /// CPU of both servers' shards.
    pub server_cpu: Option<usize>,
    /// The clients' reconnect schedule.
    pub backoff: Backoff,
    /// The command line, for the report.
    pub command: String,
}

/// Figures of one storm.
#[derive(Debug, Clone, Default)]
pub struct StormReport {
    /// Clients connected before the restart.
    pub clients: usize,
    /// Time to connect them all at first.
    pub initial_connect: Duration,
    /// SIGTERM to the old process until it exited (drain and 1001 to all).
    pub drain: Duration,
    /// Exit of the old process until the new one listens.
    pub restart: Duration,
    /// New server listening until every client was connected again.
    pub all_reconnected: Duration,
    /// New server listening until every client had its gap notice (resumed).
    pub all_resumed: Duration,
    /// After that, one tick emitted to the topic: until all clients got it.
    pub tick_to_all: Duration,
    /// CPU of the new server process from its start to `all_resumed`.
    pub server_cpu: Duration,
    /// CPU of this (client) process meanwhile.
    pub client_cpu: Duration,
    /// Probe round trips before the restart: p50, p99, max (µs), count.
    pub probe_before: (u64, u64, u64, usize),
    /// Probe round trips during the storm.
    pub probe_during: (u64, u64, u64, usize),
    /// Calls the probes lost (errors).
    pub probe_errors: u64,
}

impl StormReport {
    /// The report as markdown lines.
    pub fn text(&self, o: &StormOptions) -> String {
        let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
        let p = |x: (u64, u64, u64, usize)| format!("p50 {} µs, p99 {} µs, max {} µs ({} calls)", x.0, x.1, x.2, x.3);
        format!(
            "command: `{}`\n\n| figure | value |\n| --- | --- |\n\
             | clients (reconnect + resume, hook subscribes) | {} |\n\
             | initial connect of all | {} |\n\
             | old server drain (SIGTERM to exit, 1001 to all) | {} |\n\
             | restart (exit to new process listening) | {} |\n\
             | new server listening to all reconnected | {} |\n\
             | new server listening to all resumed (gap notice received) | {} |\n\
             | one tick after that, to all clients | {} |\n\
             | new server process CPU, start to all resumed | {} |\n\
             | client process CPU over the same window | {} |\n\
             | probes on the other shard, before | {} |\n\
             | probes on the other shard, during the storm | {} |\n\
             | probe call errors | {} |\n\
             | backoff | initial {:?}, cap {:?}, x{}, jitter {} |\n",
            o.command,
            self.clients,
            ms(self.initial_connect),
            ms(self.drain),
            ms(self.restart),
            ms(self.all_reconnected),
            ms(self.all_resumed),
            ms(self.tick_to_all),
            ms(self.server_cpu),
            ms(self.client_cpu),
            p(self.probe_before),
            p(self.probe_during),
            self.probe_errors,
            o.backoff.initial,
            o.backoff.max,
            o.backoff.multiplier,
            o.backoff.jitter,
        )
    }
}

/// A server child process.
struct ServerProcess {
    child: Child,
}

impl ServerProcess {
    fn start(listen: &str, cpu: Option<usize>) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let cpu = cpu.map_or("none".to_string(), |c| c.to_string());
        let mut child = Command::new(exe)
            .args(["serve", "--service", "fan", "--listen", listen, "--cpu", &cpu])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the server process: {e}"))?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line).map_err(|e| e.to_string())?;
        if !line.starts_with("listening on") {
            let _ = child.kill();
            return Err(format!("server process said {line:?}"));
        }
        Ok(Self { child })
    }

    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let rest = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
        let f: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        // After the state field: utime and stime are the 12th and 13th numbers.
        let ticks = f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_nanos(ticks * 1_000_000_000 / hz)
    }

    /// SIGTERM, then waits for the graceful exit.
    fn stop(mut self) -> Result<(), String> {
        // SAFETY: kill with a pid we spawned and still own.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().map_err(|e| e.to_string())?;
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percentiles(mut v: Vec<u64>) -> (u64, u64, u64, usize) {
    if v.is_empty() {
        return (0, 0, 0, 0);
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99), *v.last().unwrap(), v.len())
}

/// Runs the storm.
pub fn run(o: &StormOptions) -> Result<StormReport, String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?;
    let listen = port.to_string();
    let mut server = Some(ServerProcess::start(&listen, o.server_cpu)?);
    let placement = o.server_cpu.map_or(ShardPlacement::Unpinned, ShardPlacement::Cpu);
    let other = start_embedded_for("127.0.0.1:0".parse().unwrap(), placement, None, EmbeddedService::Bench)?;
    if let Some(c) = o.client_cpu {
        crate::cpu::pin_to(c);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let url = format!("ws://{listen}");
    let other_url = format!("ws://{}", other.local_addr());
    let mut report = StormReport { clients: o.clients, ..StormReport::default() };

    rt.block_on(async {
        let config = ClientConfig::default().reconnect(o.backoff).call_timeout(Duration::from_secs(60)).on_connect(
            |conn: Connection| async move {
                FanClient::new(conn).subscribe(FAN_TOPIC.into()).await.map_err(|e| e.to_string())
            },
        );
        let started = Instant::now();
        let mut conns = Vec::with_capacity(o.clients);
        let mut pending = futures::stream::FuturesUnordered::new();
        let mut next = 0;
        use futures::StreamExt;
        while conns.len() < o.clients {
            while next < o.clients && pending.len() < 256 {
                let (url, config) = (url.clone(), config.clone());
                pending.push(async move { Connection::connect_with(&url, config).await });
                next += 1;
            }
            match pending.next().await {
                Some(Ok(c)) => conns.push(c),
                Some(Err(e)) => return Err(format!("client {} did not connect: {e}", conns.len())),
                None => break,
            }
        }
        report.initial_connect = started.elapsed();
        let mut streams: Vec<_> = conns.iter().map(|c| c.events::<Tick>()).collect();
        // One tick first, so that every client has a position to resume.
        emit_and_wait(&conns[0], &mut streams, 0).await?;

        // Probes on the other server, on a thread (and runtime) of their own
        // so that the storm clients' runtime does not delay them: one call
        // each every 10 ms, timestamped.
        let samples: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
        let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let probes = {
            let (samples, errors, stop, n, cpu) =
                (samples.clone(), errors.clone(), stop.clone(), o.probes, o.client_cpu);
            let url = other_url.clone();
            std::thread::spawn(move || probe_thread(&url, n, cpu, samples, errors, stop))
        };
        tokio::time::sleep(Duration::from_secs(2)).await;

        // The restart.
        let gaps_before: Vec<u64> = conns.iter().map(|c| c.gaps_reported()).collect();
        let t0 = Instant::now();
        let old = server.take().expect("running");
        blocking(move || old.stop()).await?;
        report.drain = t0.elapsed();
        let t_exit = Instant::now();
        let (listen2, cpu) = (listen.clone(), o.server_cpu);
        let new = blocking(move || ServerProcess::start(&listen2, cpu)).await?;
        let t_up = Instant::now();
        report.restart = t_up - t_exit;
        let cpu0 = new.cpu();
        let client0 = crate::cpu::this_thread();
        let deadline = t_up + Duration::from_secs(300);
        let (mut reconnected, mut resumed) = (None, None);
        while resumed.is_none() {
            if Instant::now() > deadline {
                return Err("not every client reconnected and resumed within 300 s".into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            if reconnected.is_none() && conns.iter().all(|c| c.status() == Status::Connected) {
                reconnected = Some(t_up.elapsed());
            }
            if reconnected.is_some() && conns.iter().zip(&gaps_before).all(|(c, &g)| c.gaps_reported() > g) {
                resumed = Some(t_up.elapsed());
            }
        }
        report.all_reconnected = reconnected.unwrap_or_default();
        report.all_resumed = resumed.unwrap_or_default();
        report.server_cpu = new.cpu().saturating_sub(cpu0);
        report.client_cpu = Duration::from_nanos(crate::cpu::this_thread().since(&client0).total_ns);
        let t_done = Instant::now();
        let t = Instant::now();
        emit_and_wait(&conns[0], &mut streams, 1).await?;
        report.tick_to_all = t.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        blocking(move || probes.join().map_err(|_| "probe thread panicked".to_string())?).await?;
        let s = samples.lock().unwrap();
        report.probe_before = percentiles(s.iter().filter(|(at, _)| *at < t0).map(|(_, us)| *us).collect());
        report.probe_during =
            percentiles(s.iter().filter(|(at, _)| *at >= t0 && *at <= t_done).map(|(_, us)| *us).collect());
        report.probe_errors = errors.load(std::sync::atomic::Ordering::Relaxed);
        server = Some(new);
        Ok(())
    })?;
    drop(server);
    other.shutdown();
    Ok(report)
}

/// The probe clients' thread: `n` connections to `url`, each calling every
/// 10 ms until `stop`.
fn probe_thread(
    url: &str,
    n: usize,
    cpu: Option<usize>,
    samples: Arc<Mutex<Vec<(Instant, u64)>>>,
    errors: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<(), String> {
    if let Some(c) = cpu {
        crate::cpu::pin_to(c);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..n {
            let client = BenchClient::new(Connection::connect(url).await.map_err(|e| e.to_string())?);
            let (samples, errors, stop) = (samples.clone(), errors.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    tick.tick().await;
                    let t = Instant::now();
                    match client.add(1, 2).await {
                        Ok(_) => samples.lock().unwrap().push((t, t.elapsed().as_micros() as u64)),
                        Err(_) => {
                            errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        Ok(())
    })
}

/// Emits tick `seq` through `via` and waits until every stream has it.
async fn emit_and_wait(
    via: &Connection,
    streams: &mut [hardlight::client::EventStream<Tick>],
    seq: u32,
) -> Result<(), String> {
    let ok = FanClient::new(via.clone()).emit(Tick { seq, emitted_ns: 0 }).await.map_err(|e| e.to_string())?;
    if !ok {
        return Err("the server refused the emit".into());
    }
    for (i, s) in streams.iter_mut().enumerate() {
        loop {
            match tokio::time::timeout(Duration::from_secs(60), s.recv()).await {
                Ok(Ok(t)) if t.seq == seq => break,
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => return Err(format!("client {i}: {e}")),
                Err(_) => return Err(format!("client {i} did not get tick {seq} in 60 s")),
            }
        }
    }
    Ok(())
}

/// Runs a blocking step (waiting for a process) off the runtime's only thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, String> + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f).await.map_err(|e| e.to_string())?
}
