//! A real S3-compatible server for tests: moto's server mode (from PyPI, installed by
//! scripts/setup.sh) on 127.0.0.1, one per test, stopped when dropped.

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
}

impl S3Server {
    /// Starts moto. Panics with a clear message when it is missing (run scripts/setup.sh).
    pub fn start() -> Self {
        let port = crate::net::free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto (python3 -m moto.server); run scripts/setup.sh");
        crate::net::wait_for_port(
            port,
            Duration::from_secs(30),
            "moto did not start: is moto[server] installed? (scripts/setup.sh)",
        );
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
        }
    }

    /// The TCP port it listens on (127.0.0.1), e.g. for a [`crate::proxy::DelayProxy`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Storage options for edgeshard's `OpenOptions` (moto accepts any credentials).
    pub fn storage_options(&self) -> Vec<(String, String)> {
        [
            ("aws_endpoint", self.endpoint.as_str()),
            ("aws_access_key_id", "test"),
            ("aws_secret_access_key", "test"),
            ("aws_region", "us-east-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Creates a bucket (a plain `PUT /bucket`; moto does not check signatures).
    pub fn create_bucket(&self, bucket: &str) {
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
            .with_access_key_id("test")
            .with_secret_access_key("test")
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
