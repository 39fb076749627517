//! `edgeshard-s3-server ROOT --port P [--access-key K --secret-key S]`: an S3-compatible server on
//! 127.0.0.1 over a directory (each bucket a folder), for edgeshard's S3 latency benchmarks.
//!
//! It is s3s-fs (the s3s project's file-system server, Apache-2.0) with one change that matters
//! for latency: every accepted connection gets TCP_NODELAY. s3s-fs's own binary (0.14-0.17)
//! leaves Nagle's algorithm on, so a response written as headers then body waits for the
//! client's delayed ACK: a 4 KB ranged GET took 55 ms on loopback instead of ~1 ms.

use clap::Parser;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use s3s_fs::FileSystem;
use std::path::PathBuf;
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "An S3-compatible server over a directory (s3s-fs, TCP_NODELAY)"
)]
struct Opt {
    /// Address to listen on (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on.
    #[arg(long)]
    port: u16,
    /// Access key requests must be signed with (with --secret-key); none: unsigned requests.
    #[arg(long, requires = "secret_key")]
    access_key: Option<String>,
    /// Secret key requests must be signed with (with --access-key).
    #[arg(long, requires = "access_key")]
    secret_key: Option<String>,
    /// Directory holding the buckets (one folder each).
    root: PathBuf,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let opt = Opt::parse();
    let fs = FileSystem::new(&opt.root)
        .map_err(|e| format!("cannot serve {}: {e:?}", opt.root.display()))?;
    let mut builder = S3ServiceBuilder::new(fs);
    if let (Some(access), Some(secret)) = (opt.access_key, opt.secret_key) {
        builder.set_auth(SimpleAuth::from_single(access, secret));
    }
    let service = builder.build();
    let listener = TcpListener::bind((opt.host.as_str(), opt.port)).await?;
    eprintln!(
        "edgeshard-s3-server: http://{} serving {}",
        listener.local_addr()?,
        opt.root.display()
    );
    let http = ConnBuilder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let socket = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(e) => {
                    eprintln!("edgeshard-s3-server: accept failed: {e}");
                    continue;
                }
            },
            _ = ctrl_c.as_mut() => break,
        };
        // The point of this binary: answers leave at once, not after the peer's delayed ACK.
        let _ = socket.set_nodelay(true);
        let connection = http.serve_connection(TokioIo::new(socket), service.clone());
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    graceful.shutdown().await;
    Ok(())
}
