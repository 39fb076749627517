//! A real static HTTP server for tests: nginx (Debian's, installed by scripts/setup.sh) serving a
//! folder on 127.0.0.1, with Range and ETag support as any static host or CDN has. Started per
//! test on a free port, stopped when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

/// How the server misbehaves, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMode {
    /// Range requests answered with 206, ETags, If-Match honoured.
    Normal,
    /// `max_ranges 0`: Range headers ignored, every GET answered 200 with the whole body.
    IgnoresRange,
    /// Every response labelled `Content-Encoding: gzip`, as a host compressing on the fly would.
    Gzip,
}

pub struct StaticServer {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    _state: TempDir,
}

impl StaticServer {
    /// Serves `root`. Panics with a clear message when nginx is missing (run scripts/setup.sh).
    pub fn start(root: &Path, mode: ServerMode) -> Self {
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nginx is not installed: run scripts/setup.sh (apt package nginx-light)");
        let state = tempfile::Builder::new()
            .prefix("edgeshard-nginx-")
            .tempdir()
            .expect("nginx state dir");
        let port = crate::net::free_port();
        let extra = match mode {
            ServerMode::Normal => "",
            ServerMode::IgnoresRange => "max_ranges 0;",
            ServerMode::Gzip => "add_header Content-Encoding gzip always;",
        };
        let s = state.path().display();
        let config = format!(
            "daemon off; master_process off; worker_processes 1;
             error_log {s}/error.log warn; pid {s}/nginx.pid;
             events {{ worker_connections 256; }}
             http {{
               access_log off; sendfile on; default_type application/octet-stream;
               client_body_temp_path {s}/body; proxy_temp_path {s}/proxy;
               fastcgi_temp_path {s}/fastcgi; uwsgi_temp_path {s}/uwsgi; scgi_temp_path {s}/scgi;
               server {{ listen 127.0.0.1:{port}; root {root}; {extra} }}
             }}",
            root = root.display()
        );
        let config_path = state.path().join("nginx.conf");
        std::fs::write(&config_path, config).expect("write nginx.conf");
        let child = Command::new(nginx)
            .arg("-c")
            .arg(&config_path)
            .arg("-p")
            .arg(state.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        crate::net::wait_for_port(
            port,
            Duration::from_secs(10),
            &format!("nginx did not start; see {s}/error.log"),
        );
        Self {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            _state: state,
        }
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
