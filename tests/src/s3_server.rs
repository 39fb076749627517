//! S3-compatible servers for tests and benchmarks on 127.0.0.1, one per use, stopped when
//! dropped: moto's server mode (PyPI, scripts/setup.sh), which the correctness tests use, and
//! edgeshard-s3-server (tests/s3-server: s3s-fs with TCP_NODELAY, scripts/setup-bench.sh), which
//! the benchmarks that measure latency use ([`S3Server::start_fast`]): moto takes ~5 ms per
//! request on this machine, edgeshard-s3-server ~1.5 ms.

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, PutPayload};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    port: u16,
    /// edgeshard-s3-server's data folder (buckets are its subfolders); `None` for moto.
    data: Option<tempfile::TempDir>,
}

/// The access key and secret every server here is started with (moto accepts any).
const ACCESS_KEY: &str = "test";
const SECRET_KEY: &str = "test-secret";

impl S3Server {
    /// Starts moto. Panics with a clear message when it is missing (run scripts/setup.sh).
    pub fn start() -> Self {
        Self::spawn(
            None,
            "moto (python3 -m moto.server): run scripts/setup.sh",
            |port| {
                let mut command = Command::new("python3");
                command.args([
                    "-m",
                    "moto.server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ]);
                command
            },
        )
    }

    /// Starts edgeshard-s3-server over a fresh temporary folder: the server for measuring
    /// latency. Objects must be uploaded through it (it then keeps their ETags; files placed in
    /// its folder directly would be hashed on every request). Panics with a clear message when
    /// it is not installed (run scripts/setup-bench.sh).
    pub fn start_fast() -> Self {
        let tools = std::env::var("EDGESHARD_TOOLS_DIR").unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_default();
            format!("{home}/.cache/edgeshard-tools")
        });
        let binary = format!("{tools}/s3-server/bin/edgeshard-s3-server");
        let data = tempfile::tempdir().expect("temp dir for edgeshard-s3-server");
        let folder = data.path().to_path_buf();
        let what = format!("{binary}: run scripts/setup-bench.sh");
        Self::spawn(Some(data), &what, |port| {
            let mut command = Command::new(&binary);
            command
                .args(["--port", &port.to_string(), "--access-key", ACCESS_KEY])
                .args(["--secret-key", SECRET_KEY])
                .arg(&folder);
            command
        })
    }

    /// Starts the server `command(port)` makes on a free port and waits until it listens;
    /// `what` names it (and what to run) when it does not start.
    fn spawn(
        data: Option<tempfile::TempDir>,
        what: &str,
        command: impl FnOnce(u16) -> Command,
    ) -> Self {
        let port = crate::net::free_port();
        let child = command(port)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {what} ({e})"));
        crate::net::wait_for_port(
            port,
            Duration::from_secs(30),
            &format!("{what} did not start"),
        );
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            data,
        }
    }

    /// The TCP port it listens on (127.0.0.1), e.g. for a [`crate::proxy::DelayProxy`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Storage options for edgeshard's `OpenOptions` (the server's credentials).
    pub fn storage_options(&self) -> Vec<(String, String)> {
        [
            ("aws_endpoint", self.endpoint.as_str()),
            ("aws_access_key_id", ACCESS_KEY),
            ("aws_secret_access_key", SECRET_KEY),
            ("aws_region", "us-east-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Creates a bucket: a folder for edgeshard-s3-server, a plain `PUT /bucket` for moto (which
    /// does not check signatures).
    pub fn create_bucket(&self, bucket: &str) {
        if let Some(data) = &self.data {
            std::fs::create_dir_all(data.path().join(bucket)).expect("create the bucket folder");
            return;
        }
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        write!(
            stream,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .expect("send CreateBucket");
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "CreateBucket: {response}"
        );
    }

    /// Uploads every file under `dir` to `s3://bucket/prefix/...` (single-part PUTs, as the
    /// `aws s3 cp` of a small snapshot would).
    pub fn upload_dir(&self, dir: &Path, bucket: &str, prefix: &str) {
        let store = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_region("us-east-1")
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .build()
            .expect("S3 client");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        for file in crate::walk(dir)
            .into_iter()
            .filter(|f| dir.join(f).is_file())
        {
            let bytes = std::fs::read(dir.join(&file)).expect("read file to upload");
            let key = StorePath::from(format!("{prefix}/{file}"));
            runtime
                .block_on(store.put(&key, PutPayload::from(bytes)))
                .unwrap_or_else(|e| panic!("upload {key}: {e}"));
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
