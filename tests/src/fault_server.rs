//! A static HTTP server on 127.0.0.1 that misbehaves on purpose, for the "never a wrong answer"
//! tests: it serves a folder (GET and HEAD, single byte ranges, ETags) like any static host,
//! and damages the responses for the objects whose path ends with a chosen suffix.
//!
//! nginx (tests' `http_server`) is the well-behaved server; this one exists because no real
//! server can be told to truncate a 206 body or flip a bit in transit. Every connection is
//! answered with `Connection: close`, which keeps the parser to one request per connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// What the server does to matching objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answers correctly (a control).
    None,
    /// A 206 answer whose body is half the range asked for (Content-Length says so, the
    /// Content-Range header still claims the whole range): a proxy that cut the stream.
    ShortRangeBody,
    /// Flips one bit in the middle of every body (whole-object and range GETs): damage in
    /// transit that no TCP checksum caught.
    FlipBit,
    /// Flips one bit in the middle of the first range body only (206 responses): damage in
    /// transit that a second read does not meet.
    FlipBitOnce,
    /// Answers every GET with this status and an empty body (HEAD is answered normally, so a
    /// range reader opens the shard and meets the status in the middle of a query): a 403 of a
    /// host whose credentials were revoked, a 401, a 503 that never ends.
    Status(u16),
}

pub struct FaultServer {
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    port: u16,
    stop: Arc<AtomicBool>,
    damaged: Arc<AtomicU64>,
}

impl FaultServer {
    /// Serves `root`, applying `fault` to objects whose path ends with `suffix`.
    pub fn start(root: &Path, fault: Fault, suffix: &str) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind the fault server");
        let port = listener.local_addr().expect("fault server address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let damaged = Arc::new(AtomicU64::new(0));
        {
            let (stop, damaged) = (stop.clone(), damaged.clone());
            let root = root.to_path_buf();
            let suffix = suffix.to_string();
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (root, suffix, damaged) = (root.clone(), suffix.clone(), damaged.clone());
                    thread::spawn(move || {
                        let _ = serve(stream, &root, fault, &suffix, &damaged);
                    });
                }
            });
        }
        Self {
            base_url: format!("http://127.0.0.1:{port}"),
            port,
            stop,
            damaged,
        }
    }

    /// How many responses were damaged so far (a test checks the fault was exercised).
    pub fn damaged(&self) -> u64 {
        self.damaged.load(Ordering::SeqCst)
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag and exits.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(
    stream: TcpStream,
    root: &Path,
    fault: Fault,
    suffix: &str,
    damaged: &AtomicU64,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("range") {
                range = parse_range(value.trim());
            }
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let mut out = stream;
    let Some(path) = resolve(root, target) else {
        return respond(&mut out, "404 Not Found", &[], b"", method == "HEAD");
    };
    let Ok(mut file) = std::fs::File::open(&path) else {
        return respond(&mut out, "404 Not Found", &[], b"", method == "HEAD");
    };
    let mut body = Vec::new();
    file.read_to_end(&mut body)?;
    let total = body.len() as u64;
    // A stable tag per content, as static hosts derive theirs from size and mtime.
    let etag = format!(
        "\"{total:x}-{:x}\"",
        body.iter()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(*b as u64))
    );
    let faulty = path.to_string_lossy().ends_with(suffix);
    if let (Fault::Status(code), true, "GET") = (fault, faulty, method) {
        damaged.fetch_add(1, Ordering::SeqCst);
        return respond(&mut out, &format!("{code} Refused"), &[], b"", false);
    }
    let mut headers = vec![
        ("ETag".to_string(), etag),
        (
            "Last-Modified".to_string(),
            "Wed, 02 Dec 2026 00:00:00 GMT".to_string(),
        ),
        ("Accept-Ranges".to_string(), "bytes".to_string()),
    ];
    let (status, mut slice) = match range {
        Some((start, end)) if start < total => {
            let end = end.unwrap_or(total - 1).min(total - 1);
            headers.push((
                "Content-Range".to_string(),
                format!("bytes {start}-{end}/{total}"),
            ));
            (
                "206 Partial Content",
                body[start as usize..=end as usize].to_vec(),
            )
        }
        Some(_) => {
            headers.push(("Content-Range".to_string(), format!("bytes */{total}")));
            return respond(
                &mut out,
                "416 Range Not Satisfiable",
                &headers,
                b"",
                method == "HEAD",
            );
        }
        None => ("200 OK", body),
    };
    if faulty && method == "GET" {
        match fault {
            Fault::None | Fault::Status(_) => {}
            Fault::ShortRangeBody if status.starts_with("206") => {
                slice.truncate(slice.len() / 2);
                damaged.fetch_add(1, Ordering::SeqCst);
            }
            Fault::ShortRangeBody => {}
            Fault::FlipBitOnce => {
                let middle = slice.len() / 2;
                if status.starts_with("206") && damaged.load(Ordering::SeqCst) == 0 {
                    if let Some(byte) = slice.get_mut(middle) {
                        *byte ^= 0x10;
                        damaged.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            Fault::FlipBit => {
                let middle = slice.len() / 2;
                if let Some(byte) = slice.get_mut(middle) {
                    *byte ^= 0x10;
                    damaged.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }
    if method == "HEAD" {
        headers.push(("Content-Length".to_string(), total.to_string()));
        return respond(&mut out, status, &headers, b"", true);
    }
    respond(&mut out, status, &headers, &slice, false)
}

/// `bytes=a-b` or `bytes=a-` (a single range; what the readers ask for).
fn parse_range(value: &str) -> Option<(u64, Option<u64>)> {
    let spec = value.strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let start = start.parse().ok()?;
    let end = match end {
        "" => None,
        e => Some(e.parse().ok()?),
    };
    Some((start, end))
}

/// The file a request target names under `root`; `None` for anything that leaves it.
fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split('?').next()?.trim_start_matches('/');
    let mut out = root.to_path_buf();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => return None,
            s => out.push(percent_decode(s)),
        }
    }
    out.is_file().then_some(out)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn respond(
    out: &mut TcpStream,
    status: &str,
    headers: &[(String, String)],
    body: &[u8],
    head: bool,
) -> std::io::Result<()> {
    let mut text = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if !head {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    out.write_all(text.as_bytes())?;
    out.write_all(body)?;
    out.flush()
}
