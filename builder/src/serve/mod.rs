//! `edgeshard serve`: an HTTP JSON API over one snapshot root (issue 13).
//!
//! - `api`: the endpoints, request checks and the error body;
//! - `state`: the version served, refreshes and pins;
//! - `metrics`: `/metrics` in Prometheus text.
//!
//! The server holds no state of its own beyond caches (the store is the source of truth), so
//! replicas behind a load balancer need no coordination. Reads run on tokio's blocking pool:
//! SQLite and the store's synchronous reads must never stall the async workers that accept and
//! answer requests.

mod api;
mod metrics;
mod state;

use crate::cli::StoreArgs;
use crate::error::{Error, Result};
use crate::versions::RollbackTarget;
use api::ApiError;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use clap::Args;
use edgeshard_shared::ErrorKind;
use metrics::Metrics;
use state::{Refreshed, Source, Versions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tower::ServiceBuilder;

/// The OpenAPI 3 description of every endpoint, served at `/openapi.json`.
const OPENAPI: &str = include_str!("openapi.json");

/// How often a server with no version open tries again (at most), whatever
/// `--refresh-interval` says: it cannot answer anything until then.
const NOT_READY_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address to listen on. The default answers only this machine; give 0.0.0.0:PORT (or a
    /// specific interface) to serve others. Port 0 picks a free port (printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Serve this run's version only; never follow _CURRENT (see `history`).
    #[arg(long, conflicts_with = "manifest_ref")]
    pub run_id: Option<String>,
    /// Serve this manifest only (its URL as `history` or _CURRENT show it, or its path under
    /// the root); never follow _CURRENT.
    #[arg(long = "ref")]
    pub manifest_ref: Option<String>,
    /// How often to check _CURRENT and switch to a newly published version (like 30s, 5m,
    /// 500ms; 0 turns polling off: then only POST /v1/admin/refresh switches). A new version
    /// is served only once its shard files check out; until then the old one stays.
    #[arg(long, default_value = "30s", value_parser = parse_interval)]
    pub refresh_interval: Duration,
    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, default_value_t = 4 << 20)]
    pub max_body_bytes: usize,
    /// Most keys one POST /v1/get may ask for.
    #[arg(long, default_value_t = 10_000)]
    pub max_keys: usize,
    /// Requests answered at once; more wait for a turn (within --request-timeout). Reads
    /// that outlive their request's timeout still count until they end.
    #[arg(long, default_value_t = 256, value_parser = parse_positive_usize)]
    pub max_concurrency: usize,
    /// Longest time a request may take, waiting for its turn included; longer ones get 503
    /// (retryable). Like 30s, 500ms.
    #[arg(long, default_value = "30s", value_parser = parse_interval)]
    pub request_timeout: Duration,
    /// On SIGTERM or Ctrl-C the server stops accepting and lets requests in flight finish,
    /// for at most this long (then it exits with code 1).
    #[arg(long, default_value = "30s", value_parser = parse_interval)]
    pub drain_timeout: Duration,
    /// A file holding a bearer token: every request but /healthz and /readyz must then carry
    /// `Authorization: Bearer <token>` (compared in constant time), else 401.
    #[arg(long)]
    pub auth_token_file: Option<PathBuf>,
    /// Allow browsers on this origin (e.g. `https://app.example`) to call the API (CORS).
    /// Repeatable; `*` allows any origin. Off by default.
    #[arg(long = "cors-origin")]
    pub cors_origins: Vec<String>,
}

/// Request limits the endpoints enforce.
pub(crate) struct Limits {
    pub(crate) max_body_bytes: usize,
    pub(crate) max_keys: usize,
}

/// Everything the endpoints share.
pub(crate) struct App {
    pub(crate) versions: Arc<Versions>,
    pub(crate) metrics: Metrics,
    pub(crate) limits: Limits,
    /// Permits for reads on the blocking pool (see `api::read`).
    pub(crate) reads: Arc<Semaphore>,
    /// On a local root (reads are CPU work on mapped files): one permit per core for reads on
    /// the blocking pool, and lookups run inline (see `api::read`). `None` on a remote root.
    pub(crate) local_cores: Option<Arc<Semaphore>>,
    /// The bearer token, when `--auth-token-file` is given.
    token: Option<Vec<u8>>,
}

/// `500ms`, or what [`crate::cleanup::parse_age`] takes (`30s`, `5m`, `2h`, `0`).
fn parse_interval(text: &str) -> std::result::Result<Duration, String> {
    match text.strip_suffix("ms") {
        Some(millis) => millis
            .parse()
            .map(Duration::from_millis)
            .map_err(|_| format!("{text:?} is not a duration like 500ms, 30s or 5m")),
        None => crate::cleanup::parse_age(text),
    }
}

fn parse_positive_usize(text: &str) -> std::result::Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("expected an integer >= 1, got {text:?}")),
    }
}

/// Runs the server until SIGTERM / Ctrl-C, then drains. Errors: a bad flag, a token file that
/// cannot be read, an address that cannot be bound.
pub fn run(args: ServeArgs) -> Result<()> {
    let token = match &args.auth_token_file {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(Error::io(path.display()))?;
            let token = text.trim();
            if token.is_empty() {
                return Err(Error::Usage(format!(
                    "--auth-token-file {} holds no token",
                    path.display()
                )));
            }
            Some(token.as_bytes().to_vec())
        }
    };
    let cors = cors_layer(&args.cors_origins)?;
    let pin = match (&args.run_id, &args.manifest_ref) {
        (Some(id), _) => Some(RollbackTarget::RunId(id.clone())),
        (None, Some(reference)) => Some(RollbackTarget::ManifestRef(reference.clone())),
        (None, None) => None,
    };
    let versions = Arc::new(Versions::new(Source {
        root: args.store.root.clone(),
        options: args.store.open_options(),
        pin,
    }));
    let app = Arc::new(App {
        versions,
        metrics: Metrics::default(),
        limits: Limits {
            max_body_bytes: args.max_body_bytes,
            max_keys: args.max_keys,
        },
        reads: Arc::new(Semaphore::new(args.max_concurrency)),
        local_cores: matches!(
            edgeshard_native::Root::parse(&args.store.root),
            Ok(edgeshard_native::Root::Local(_))
        )
        .then(|| {
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            Arc::new(Semaphore::new(cores))
        }),
        token,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::io("the server's tokio runtime"))?;
    let outcome = runtime.block_on(serve(app, &args, cors));
    // A refresh still running on the blocking pool must not hold the exit up: it reads a
    // version nobody will serve.
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome
}

fn cors_layer(origins: &[String]) -> Result<Option<tower_http::cors::CorsLayer>> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let values = origins
            .iter()
            .map(|o| {
                HeaderValue::from_str(o)
                    .map_err(|_| Error::Usage(format!("--cors-origin {o:?} is not a valid origin")))
            })
            .collect::<Result<Vec<_>>>()?;
        AllowOrigin::list(values)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION]),
    ))
}

fn router(app: Arc<App>, args: &ServeArgs, cors: Option<tower_http::cors::CorsLayer>) -> Router {
    let timeout = args.request_timeout;
    let guarded = Router::new()
        .route("/v1/get", post(api::get_many))
        .route("/v1/get/{key}", get(api::get_one))
        .route("/v1/search", post(api::search))
        .route("/v1/info", get(api::info))
        .route("/v1/shards", get(api::shards))
        .route("/v1/route/{key}", get(api::route))
        .route("/v1/history", get(api::history))
        .route("/v1/admin/refresh", post(api::refresh))
        .route("/metrics", get(api::metrics))
        .route("/openapi.json", get(openapi))
        .route_layer(middleware::from_fn_with_state(app.clone(), authorize));
    let router = Router::new()
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .merge(guarded)
        .fallback(api::no_route)
        .method_not_allowed_fallback(api::wrong_method)
        .layer(DefaultBodyLimit::max(args.max_body_bytes))
        .layer(
            // Outermost first: count every answer (timeouts included), turn a timeout into
            // the error body, bound the time, then bound how many run at once (one limit
            // shared by every route).
            ServiceBuilder::new()
                .layer(middleware::from_fn_with_state(app.clone(), track))
                .layer(HandleErrorLayer::new(
                    move |e: tower::BoxError| async move { middleware_error(e, timeout) },
                ))
                .layer(tower::timeout::TimeoutLayer::new(timeout))
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                    args.max_concurrency,
                )),
        )
        .with_state(app);
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

fn middleware_error(e: tower::BoxError, timeout: Duration) -> Response {
    if e.is::<tower::timeout::error::Elapsed>() {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Unavailable,
            format!("the request took longer than {timeout:?} (--request-timeout); retry later"),
        )
        .into_response()
    } else {
        ApiError::internal(format!("request middleware failed: {e}")).into_response()
    }
}

/// Counts the request for `/metrics`: endpoint (the route's pattern), status, latency and the
/// error kind of an error answer.
async fn track(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    let kind = response.extensions().get::<ErrorKind>().copied();
    app.metrics.record(
        &endpoint,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
        kind,
    );
    response
}

/// With `--auth-token-file`: 401 unless `Authorization: Bearer <token>` carries the token.
async fn authorize(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    use subtle::ConstantTimeEq;
    let Some(token) = &app.token else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    // ct_eq compares equal-length slices in constant time (and is false at once for another
    // length, which reveals only the length).
    match given {
        Some(given) if bool::from(given.ct_eq(token)) => next.run(request).await,
        _ => {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorKind::PermissionDenied,
                "missing or wrong bearer token (Authorization: Bearer <token>)",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// Opens or refreshes the version served, off the async workers.
async fn refresh_now(app: &Arc<App>) -> std::result::Result<Refreshed, ApiError> {
    let versions = app.versions.clone();
    match tokio::task::spawn_blocking(move || versions.refresh()).await {
        Ok(Ok(done)) => {
            if let Refreshed::Swapped {
                run_id, manifest, ..
            } = &done
            {
                crate::error::warn(&format!(
                    "edgeshard serve: now serving run {run_id} ({manifest})"
                ));
            }
            Ok(done)
        }
        Ok(Err(e)) => {
            let served = match app.versions.current() {
                Some(snap) => format!("still serving {}", snap.manifest_path()),
                None => "no version is served yet".to_string(),
            };
            crate::error::warn(&format!("edgeshard serve: refresh failed ({served}): {e}"));
            Err(e.into())
        }
        Err(e) => Err(ApiError::internal(format!("the refresh task failed: {e}"))),
    }
}

/// Opens the first version, then follows `_CURRENT` every `interval` (unless pinned or 0);
/// while nothing is open it tries again at least every [`NOT_READY_RETRY`].
async fn poll(app: Arc<App>, interval: Duration) {
    loop {
        // Errors are recorded for /readyz and /metrics and printed by refresh_now.
        let _ = refresh_now(&app).await;
        let ready = app.versions.current().is_some();
        let wait = match (ready, interval.is_zero()) {
            (false, true) => NOT_READY_RETRY,
            (false, false) => interval.min(NOT_READY_RETRY),
            (true, _) if app.versions.is_pinned() => return,
            (true, true) => return,
            (true, false) => interval,
        };
        tokio::time::sleep(wait).await;
    }
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = terminate => {},
        () = interrupt => {},
    }
}

async fn serve(
    app: Arc<App>,
    args: &ServeArgs,
    cors: Option<tower_http::cors::CorsLayer>,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(Error::io(format!("listening on {}", args.listen)))?;
    let address = listener
        .local_addr()
        .map_err(Error::io(format!("listening on {}", args.listen)))?;
    // Tests and scripts read this line for the port when --listen asks for port 0.
    crate::error::warn(&format!(
        "edgeshard serve: listening on http://{address} (root {})",
        args.store.root
    ));
    tokio::spawn(poll(app.clone(), args.refresh_interval));
    let stopping = Arc::new(tokio::sync::Notify::new());
    let signal = {
        let stopping = stopping.clone();
        async move {
            shutdown_signal().await;
            crate::error::warn("edgeshard serve: stopping: finishing requests in flight");
            stopping.notify_one();
        }
    };
    let server = axum::serve(listener, router(app, args, cors)).with_graceful_shutdown(signal);
    let drain = args.drain_timeout;
    tokio::select! {
        served = server => {
            served.map_err(Error::io("serving HTTP"))?;
            crate::error::warn("edgeshard serve: stopped");
            Ok(())
        }
        () = async { stopping.notified().await; tokio::time::sleep(drain).await } => {
            Err(Error::Io {
                location: "draining requests".into(),
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("requests still in flight after --drain-timeout {drain:?}"),
                ),
            })
        }
    }
}
