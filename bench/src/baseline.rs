//! What the tokio baseline servers (`baseline-tokio`, and the plain echo
//! peers `echo-tokio-tungstenite`, `echo-fastwebsockets` and
//! `echo-tokio-websockets`, in `src/bin`) share: the command line, the
//! pinned tokio runtime, and the accept loop.
//!
//! Command line: `--listen ADDR [--cpu N] [--threads T]`.
//!
//! - `--listen ADDR`: where to listen; port 0 picks a free port. The server
//!   prints `listening on ADDR` (the address actually bound) on stdout once
//!   it accepts connections, then serves until killed.
//! - `--cpu N`: pin every runtime thread to CPU `N` (with `core_affinity`,
//!   from the runtime's `on_thread_start`). Without it nothing is pinned.
//! - `--threads T`: tokio worker threads. Default: 1 when pinned (more
//!   workers on one CPU only time-slice each other), otherwise one per
//!   available CPU, as `#[tokio::main]` would do.

use std::future::Future;
use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// Parsed command line of a baseline server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerArgs {
    /// Address to bind (anything `TcpListener::bind` accepts).
    pub listen: String,
    /// CPU to pin every runtime thread to.
    pub cpu: Option<usize>,
    /// Tokio worker threads.
    pub threads: usize,
}

/// Usage text for the shared command line.
pub const USAGE: &str = "--listen ADDR [--cpu N] [--threads T]";

impl ServerArgs {
    /// Parses the arguments after the program name.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut listen = None;
        let mut cpu = None;
        let mut threads = None;
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--listen" => listen = Some(value()?),
                "--cpu" => cpu = Some(value()?.parse::<usize>().map_err(|e| format!("--cpu: {e}"))?),
                "--threads" => {
                    let t = value()?.parse::<NonZeroUsize>().map_err(|e| format!("--threads: {e}"))?;
                    threads = Some(t.get());
                }
                "-h" | "--help" => return Err(format!("usage: {USAGE}")),
                other => return Err(format!("unknown argument `{other}`; usage: {USAGE}")),
            }
        }
        let listen = listen.ok_or_else(|| format!("--listen is required; usage: {USAGE}"))?;
        let threads = threads.unwrap_or_else(|| match cpu {
            Some(_) => 1,
            None => std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
        });
        Ok(Self { listen, cpu, threads })
    }

    /// A multi-thread runtime with `threads` workers, each pinned to `cpu` if set.
    pub fn runtime(&self) -> io::Result<tokio::runtime::Runtime> {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(self.threads).enable_all();
        if let Some(cpu) = self.cpu {
            let core = core_affinity::get_core_ids()
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.id == cpu)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("--cpu {cpu}: no such CPU")))?;
            // The thread calling `block_on` only waits for the accept task;
            // pin it too so that nothing of this process runs elsewhere.
            core_affinity::set_for_current(core);
            // Runs on every thread the runtime starts: workers and the
            // blocking pool alike.
            builder.on_thread_start(move || {
                if !core_affinity::set_for_current(core) {
                    eprintln!("warning: could not pin a runtime thread to CPU {}", core.id);
                }
            });
        }
        builder.build()
    }
}

/// Runs a baseline server: parses the command line, builds the runtime,
/// binds, prints `listening on ADDR`, and spawns `handle` (one task) for
/// every accepted connection, with TCP_NODELAY set, until killed.
pub fn run<F, Fut>(name: &str, handle: F) -> ExitCode
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let args = match ServerArgs::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match args.runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The accept loop runs as a task, so that it runs on the (pinned) workers.
    let served = rt.block_on(async move {
        tokio::spawn(async move {
            let listener = TcpListener::bind(&args.listen).await?;
            let addr = listener.local_addr()?;
            {
                let mut out = io::stdout().lock();
                writeln!(out, "listening on {addr}")?;
                out.flush()?;
            }
            accept_loop(listener, handle).await
        })
        .await
    });
    match served {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{name}: accept loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn accept_loop<F, Fut>(listener: TcpListener, handle: F) -> io::Result<()>
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                // Replies are small and batched by the server itself; Nagle
                // would only delay them.
                if let Err(e) = stream.set_nodelay(true) {
                    eprintln!("warning: TCP_NODELAY: {e}");
                }
                tokio::spawn(handle(stream));
            }
            // Out of descriptors or memory, or the peer gave up before the
            // accept: none of these should end the server.
            Err(e) => {
                eprintln!("warning: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ServerArgs, String> {
        ServerArgs::parse(s.split_whitespace().map(str::to_string))
    }

    #[test]
    fn pinned_defaults_to_one_thread() {
        let a = parse("--listen 127.0.0.1:0 --cpu 1").unwrap();
        assert_eq!(a, ServerArgs { listen: "127.0.0.1:0".into(), cpu: Some(1), threads: 1 });
        let a = parse("--cpu 0 --threads 3 --listen x:1").unwrap();
        assert_eq!((a.cpu, a.threads), (Some(0), 3));
        let a = parse("--listen 127.0.0.1:0").unwrap();
        assert_eq!(a.cpu, None);
        assert!(a.threads >= 1);
    }

    #[test]
    fn bad_arguments_are_reported() {
        assert!(parse("--cpu 1").unwrap_err().contains("--listen is required"));
        assert!(parse("--listen").unwrap_err().contains("needs a value"));
        assert!(parse("--listen a --threads 0").unwrap_err().contains("--threads"));
        assert!(parse("--listen a --bogus").unwrap_err().contains("unknown argument"));
    }
}
