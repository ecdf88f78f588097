//! SIGTERM under load, with the server as a child process: the ready-made
//! signal path (`ServerHandle::run_until_signal`) drains gracefully.
//!
//! The child is this test binary itself, re-run with an environment
//! variable that makes `child_process_entry` serve instead of returning: a
//! real process with real signal dispositions, and nothing to build
//! besides this test (robust under `cargo test --workspace` on a fresh clone).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hardlight::client::Connection;
use hardlight::{CallError, CallErrorCode};

const CHILD_ENV: &str = "HARDLIGHT_SIGNALS_TEST_CHILD";
const GRACE: Duration = Duration::from_secs(5);
/// Calls in flight when SIGTERM arrives take this long; less than `GRACE`.
const SLOW_CALL_MS: u32 = 1500;

/// Serves until SIGTERM when run as the child; a no-op otherwise.
#[test]
fn child_process_entry() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let (server, _) = start(builder().shutdown_grace(GRACE));
    println!("LISTENING {}", server.local_addr());
    let signal = server.run_until_signal().expect("signal handlers install");
    println!("STOPPED {signal:?}");
}

/// Kills the child if the test fails before it exits.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_refuses_new_connections_completes_calls_closes_1001_and_exits_0() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_process_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("child starts");
    let stdout = child.stdout.take().unwrap();
    let mut child = Reap(child);
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest prints `test child_process_entry ... ` on the same line.
            if let Some(at) = line.find("LISTENING ") {
                let _ = addr_tx.send(line[at + "LISTENING ".len()..].trim().to_string());
            }
        }
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(30)).expect("child server listens");
    let url = format!("ws://{addr}");

    let mut slow = Vec::new();
    let mut load = Vec::new();
    let mut conns = Vec::new();
    for c in 0..4u64 {
        let conn = Connection::connect(&url).await.expect("connects");
        conns.push(conn.clone());
        for i in 0..8u64 {
            let client = ProbeClient::new(conn.clone());
            slow.push(tokio::spawn(async move { (c * 100 + i, client.sleep_echo(SLOW_CALL_MS, c * 100 + i).await) }));
        }
        let client = ProbeClient::new(conn);
        load.push(tokio::spawn(async move {
            let mut ok = 0u64;
            loop {
                match client.increment(1).await {
                    Ok(_) => ok += 1,
                    Err(e) => return (ok, e),
                }
            }
        }));
    }
    // Let the slow calls reach the server.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    assert_eq!(unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) }, 0);

    // New connections are refused while the calls in flight still run.
    let mut refused = false;
    while signalled.elapsed() < Duration::from_millis(SLOW_CALL_MS as u64 - 300) {
        if Connection::connect(&url).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "a new connection was still accepted {:?} after SIGTERM", signalled.elapsed());

    for task in slow {
        let (expected, got) = task.await.unwrap();
        assert_eq!(got.expect("a call in flight at SIGTERM completes"), expected);
    }
    let mut shutting_down = 0;
    for task in load {
        let (ok, err) = task.await.unwrap();
        assert!(ok > 0, "the load ran before the signal");
        match err {
            CallError::Rejected { code: CallErrorCode::ShuttingDown, .. } => shutting_down += 1,
            CallError::Disconnected(_) => {}
            other => panic!("unexpected error during the drain: {other}"),
        }
    }
    assert!(shutting_down > 0, "calls started while draining are refused with ShuttingDown");
    for conn in &conns {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !conn.is_closed() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let reason = conn.close_reason().expect("the server closed the connection");
        assert!(reason.contains("1001"), "clients see Close 1001, got: {reason}");
    }

    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(signalled.elapsed() < GRACE + Duration::from_secs(10), "the child did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = signalled.elapsed();
    assert!(status.success(), "the server exits 0 after SIGTERM, got {status}");
    assert!(took < GRACE, "the drain took {took:?}, longer than the grace period {GRACE:?}");
}

/// The trigger is cloneable and `Send`, does not consume the handle, and
/// `join` returns once any clone fired; firing twice is harmless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_trigger_fired_elsewhere_ends_join_after_the_drain() {
    let (server, _) = start(builder().shutdown_grace(GRACE));
    let client = ProbeClient::new(Connection::connect(&url(&server)).await.unwrap());
    let trigger = server.shutdown_trigger();
    assert!(!trigger.is_triggered());
    let joined = std::thread::spawn(move || {
        server.join();
        Instant::now()
    });
    let slow = tokio::spawn(async move { client.sleep_echo(500, 7).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let other = trigger.clone();
    std::thread::spawn(move || other.shutdown()).join().unwrap();
    trigger.shutdown();
    assert!(trigger.is_triggered());
    assert_eq!(slow.await.unwrap().expect("the call in flight completes"), 7);
    let joined_at = tokio::task::spawn_blocking(move || joined.join().unwrap()).await.unwrap();
    assert!(joined_at.elapsed() < Duration::from_secs(5));
}
