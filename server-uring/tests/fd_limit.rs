//! At the fd limit every accept fails; the server must say so about once a
//! second, not on every retry. Its own test binary (its own process),
//! because it lowers the process's RLIMIT_NOFILE.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Socket, Type};

/// Counts log lines that report a failed accept.
#[derive(Clone, Default)]
struct Counting(Arc<AtomicUsize>);

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.fetch_add(text.matches("accept failed").count(), Ordering::SeqCst);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn accept_failures_at_the_fd_limit_are_counted_and_logged_about_once_a_second_on_both_backends() {
    let lines = Counting::default();
    let writer = lines.clone();
    tracing_subscriber::fmt().with_env_filter("warn").with_writer(move || writer.clone()).init();
    // One after the other: each lowers this process's descriptor limit.
    for backend in [hardlight::server::Backend::Ring, hardlight::server::Backend::Glommio] {
        at_the_fd_limit(backend, &lines);
    }
}

/// The descriptor limit while a server runs here; low enough to fill.
const LIMIT: u64 = 512;

fn at_the_fd_limit(backend: hardlight::server::Backend, lines: &Counting) {
    // The limit drops before the server starts and the table is then filled
    // up to it: the ring's multishot accept reads the limit once, when it is
    // armed (io_uring keeps the value from the request's preparation), so a
    // limit lowered under a running ring would only count from its next
    // arming. Production sets the limit before start too (systemd's
    // LimitNOFILE).
    let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with valid pointers to local structs.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut old), 0);
        let limit = libc::rlimit { rlim_cur: LIMIT.min(old.rlim_max), rlim_max: old.rlim_max };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    let server = hardlight::server::Server::builder("127.0.0.1:0".parse().unwrap())
        .backend(backend)
        .unpinned(1)
        .serve(|_: &hardlight::server::ConnectContext<'_>| {
            Ok::<_, hardlight::server::Refusal>(common::ProbeService::new(common::ProbeHandler {
                value: Default::default(),
                shard: 0,
                header: String::new(),
            }))
        })
        .expect("server starts");
    // Client sockets made before the table is full, so that connecting them
    // needs no new descriptor; the server's accepts then need one each.
    let sockets: Vec<Socket> = (0..64).map(|_| Socket::new(Domain::IPV4, Type::STREAM, None).unwrap()).collect();
    // Fill the table, then leave 4 descriptors free.
    let mut filler = Vec::new();
    loop {
        // SAFETY: dup of standard input; the copies are closed below.
        let fd = unsafe { libc::dup(0) };
        if fd < 0 {
            break;
        }
        filler.push(fd);
    }
    assert!(filler.len() > 4, "the table filled at {} copies", filler.len());
    for fd in filler.drain(filler.len() - 4..) {
        // SAFETY: a descriptor this test made with dup and closes once.
        unsafe { libc::close(fd) };
    }
    for s in &sockets {
        s.connect(&server.local_addr().into()).expect("the kernel completes the handshake in the backlog");
    }
    let before = lines.0.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(2500));
    let logged = lines.0.load(Ordering::SeqCst) - before;
    let failed = server.stats().accept_errors.get();
    for fd in filler {
        // SAFETY: as above.
        unsafe { libc::close(fd) };
    }
    // SAFETY: as above.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) };
    assert!(failed > 50, "{backend:?}: accepts should keep failing at the fd limit, {failed} did");
    assert!((1..=4).contains(&logged), "{backend:?}: {logged} warnings for {failed} failed accepts in 2.5 s");
    drop(sockets);
    server.shutdown();
}
