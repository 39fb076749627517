//! Loopback helpers shared by the test servers.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A port free on 127.0.0.1 right now (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Waits until something listens on 127.0.0.1:`port`; panics with `hint` after `timeout`.
pub fn wait_for_port(port: u16, timeout: Duration, hint: &str) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < timeout,
            "nothing listens on 127.0.0.1:{port} after {timeout:?}: {hint}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
