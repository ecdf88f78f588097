//! A real Redis for the broker tests: the one `HARDLIGHT_TEST_REDIS` names,
//! or a `redis-server` child process on a free port (killed on drop). The
//! tests fail and say so without one; they never pass without a broker.

#![allow(dead_code)] // each test binary uses part of it

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable naming a running Redis 6+ to test against.
pub const ENV: &str = "HARDLIGHT_TEST_REDIS";

/// How long a child gets to answer PING after it was started.
const START_WAIT: Duration = Duration::from_secs(10);

/// A redis-server child process without persistence (a restart loses every
/// stream); killed on drop.
pub struct RedisChild {
    pub port: u16,
    child: Option<Child>,
}

impl RedisChild {
    /// Started on a free port.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut r = Self::at(port);
        r.restart();
        r
    }

    /// Not started yet, for `port` (a server that starts before its broker).
    pub fn at(port: u16) -> Self {
        Self { port, child: None }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts redis-server on this port and waits until it answers PING.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): these tests need a real Redis. Install it \
                     (apt-get install redis-server) or set {ENV}=redis://HOST:PORT to a running Redis 6+"
                )
            });
        self.child = Some(child);
        let end = Instant::now() + START_WAIT;
        loop {
            if ping(&self.url()) {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("redis-server on port {} exited at start: {status}", self.port);
            }
            assert!(Instant::now() < end, "redis-server on port {} did not answer PING in {START_WAIT:?}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: Redis dies without a goodbye, and without persistence.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisChild {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether `url` answers PING.
pub fn ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else { return false };
    let Ok(mut con) = client.get_connection_with_timeout(Duration::from_millis(200)) else { return false };
    redis::cmd("PING").query::<String>(&mut con).is_ok_and(|p| p == "PONG")
}

/// The Redis a test talks to: the environment's, or a child of the test.
pub struct Redis {
    pub url: String,
    child: Option<RedisChild>,
}

impl Redis {
    /// The Redis the environment names (it must answer PING), else a child.
    pub fn start() -> Self {
        match std::env::var(ENV) {
            Ok(url) => {
                assert!(ping(&url), "{ENV}={url} does not answer PING");
                Self { url, child: None }
            }
            Err(_) => Self::child(),
        }
    }

    /// Always a child of this test (for tests that kill and restart it).
    pub fn child() -> Self {
        let child = RedisChild::start();
        Self { url: child.url(), child: Some(child) }
    }

    /// Restarts the child (empty: no persistence).
    pub fn restart(&mut self) {
        self.child.as_mut().expect("Redis::child() to restart").restart();
    }

    /// Kills the child.
    pub fn kill(&mut self) {
        self.child.as_mut().expect("Redis::child() to kill").kill();
    }
}
