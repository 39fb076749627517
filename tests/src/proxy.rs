//! A TCP proxy on 127.0.0.1 in front of a local server (moto, nginx) that adds a fixed delay to
//! every HTTP request and counts requests and bytes: how benchmarks measure a reader against
//! a "far" object store, and how many requests and bytes a query costs.
//!
//! A request is counted (and delayed once) for each `HTTP/1.1\r\n` request-line ending in the
//! client's stream; the delay is applied before the request is forwarded, so every round trip
//! gets it, including each one on a kept-alive connection. Bytes are counted as they come back
//! from the server (headers included: bytes on the wire).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    bytes_down: AtomicU64,
    connections: AtomicU64,
}

/// Requests and response bytes seen so far (see [`DelayProxy::traffic`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub requests: u64,
    pub bytes_down: u64,
    /// TCP connections the clients opened (a reader that reuses connections opens few).
    pub connections: u64,
}

impl std::ops::Sub for Traffic {
    type Output = Traffic;
    fn sub(self, earlier: Traffic) -> Traffic {
        Traffic {
            requests: self.requests - earlier.requests,
            bytes_down: self.bytes_down - earlier.bytes_down,
            connections: self.connections - earlier.connections,
        }
    }
}

pub struct DelayProxy {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    port: u16,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

impl DelayProxy {
    /// Listens on a free loopback port and forwards every connection to
    /// `127.0.0.1:upstream_port`, delaying each request by `delay`.
    pub fn start(upstream_port: u16, delay: Duration) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (counters, stop) = (counters.clone(), stop.clone());
            thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                        continue;
                    };
                    counters.connections.fetch_add(1, Ordering::SeqCst);
                    let counters = counters.clone();
                    thread::spawn(move || relay(client, server, delay, counters));
                }
            });
        }
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            counters,
            stop,
        }
    }

    pub fn traffic(&self) -> Traffic {
        Traffic {
            requests: self.counters.requests.load(Ordering::SeqCst),
            bytes_down: self.counters.bytes_down.load(Ordering::SeqCst),
            connections: self.counters.connections.load(Ordering::SeqCst),
        }
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag and exits.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn relay(client: TcpStream, server: TcpStream, delay: Duration, counters: Arc<Counters>) {
    // Without TCP_NODELAY small responses stall on Nagle + delayed ACK (tens of ms each).
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(mut client_read), Ok(mut server_write)) = (client.try_clone(), server.try_clone())
    else {
        return;
    };
    let up_counters = counters.clone();
    let upstream = thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let requests = count_request_lines(&buf[..n]);
            if requests > 0 {
                up_counters.requests.fetch_add(requests, Ordering::SeqCst);
                thread::sleep(delay);
            }
            if server_write.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = server_write.shutdown(Shutdown::Write);
    });
    let (mut server_read, mut client_write) = (server, client);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match server_read.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        counters.bytes_down.fetch_add(n as u64, Ordering::SeqCst);
        if client_write.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client_write.shutdown(Shutdown::Both);
    let _ = upstream.join();
}

fn count_request_lines(chunk: &[u8]) -> u64 {
    const END: &[u8] = b" HTTP/1.1\r\n";
    chunk.windows(END.len()).filter(|w| *w == END).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_request_lines_only() {
        assert_eq!(
            count_request_lines(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"),
            1
        );
        assert_eq!(
            count_request_lines(b"HEAD /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"),
            2
        );
        assert_eq!(count_request_lines(b"HTTP/1.1 200 OK\r\n"), 0);
    }
}
