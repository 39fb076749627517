//! `/metrics`: Prometheus text exposition, written by hand (a handful of counters and one
//! histogram family do not need a metrics library and its registry).

use super::state::{RefreshStatus, Versions};
use edgeshard_shared::ErrorKind;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds of the latency histogram's buckets, in seconds: from a warm local get (tens of
/// microseconds) to a cold remote search (seconds).
const BUCKETS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    /// Per bucket of [`BUCKETS`], not cumulative (summed when written).
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Counters {
    /// (endpoint, HTTP status) -> requests.
    requests: BTreeMap<(String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    /// Error kind code -> error answers.
    errors: BTreeMap<&'static str, u64>,
}

#[derive(Default)]
pub(crate) struct Metrics {
    counters: Mutex<Counters>,
}

impl Metrics {
    /// Records one answered request. `endpoint` is the route's pattern (`/v1/get/{key}`), never
    /// the raw path, so a client cannot grow the label set.
    pub(crate) fn record(
        &self,
        endpoint: &str,
        status: u16,
        seconds: f64,
        error: Option<ErrorKind>,
    ) {
        let mut counters = match self.counters.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *counters
            .requests
            .entry((endpoint.to_string(), status))
            .or_default() += 1;
        let histogram = counters.latency.entry(endpoint.to_string()).or_default();
        if let Some(i) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            histogram.counts[i] += 1;
        }
        histogram.count += 1;
        histogram.sum += seconds;
        if let Some(kind) = error {
            *counters.errors.entry(kind.as_str()).or_default() += 1;
        }
    }

    /// The exposition text: request counters and latency per endpoint, errors by kind, the
    /// version served, refreshes, and the served version's storage I/O.
    pub(crate) fn render(&self, versions: &Versions) -> String {
        let mut out = String::new();
        {
            let counters = match self.counters.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            render_counters(&counters, &mut out);
        }
        render_versions(versions, &mut out);
        out
    }
}

fn render_counters(counters: &Counters, out: &mut String) {
    // Writing to a String cannot fail; the results are ignored for that reason.
    let _ = writeln!(
        out,
        "# HELP edgeshard_http_requests_total HTTP requests answered, by endpoint and status.\n\
         # TYPE edgeshard_http_requests_total counter"
    );
    for ((endpoint, status), n) in &counters.requests {
        let _ = writeln!(
            out,
            "edgeshard_http_requests_total{{endpoint=\"{}\",status=\"{status}\"}} {n}",
            label(endpoint)
        );
    }
    let _ = writeln!(
        out,
        "# HELP edgeshard_http_request_duration_seconds Time to answer a request, by endpoint.\n\
         # TYPE edgeshard_http_request_duration_seconds histogram"
    );
    for (endpoint, h) in &counters.latency {
        let endpoint = label(endpoint);
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(h.counts) {
            cumulative += n;
            let _ = writeln!(
                out,
                "edgeshard_http_request_duration_seconds_bucket{{endpoint=\"{endpoint}\",\
                 le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "edgeshard_http_request_duration_seconds_bucket{{endpoint=\"{endpoint}\",le=\"+Inf\"}} \
             {}\n\
             edgeshard_http_request_duration_seconds_sum{{endpoint=\"{endpoint}\"}} {}\n\
             edgeshard_http_request_duration_seconds_count{{endpoint=\"{endpoint}\"}} {}",
            h.count, h.sum, h.count
        );
    }
    let _ = writeln!(
        out,
        "# HELP edgeshard_errors_total Error answers, by error kind (see the README's Errors).\n\
         # TYPE edgeshard_errors_total counter"
    );
    for kind in ErrorKind::ALL {
        let n = counters.errors.get(kind.as_str()).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "edgeshard_errors_total{{kind=\"{}\"}} {n}",
            kind.as_str()
        );
    }
}

fn render_versions(versions: &Versions, out: &mut String) {
    let status: RefreshStatus = versions.status();
    let current = versions.current();
    let _ = writeln!(
        out,
        "# HELP edgeshard_ready Whether a snapshot version is open and served.\n\
         # TYPE edgeshard_ready gauge\n\
         edgeshard_ready {}",
        u8::from(current.is_some())
    );
    if let Some(snap) = &current {
        let _ = writeln!(
            out,
            "# HELP edgeshard_snapshot_info The version served (value always 1).\n\
             # TYPE edgeshard_snapshot_info gauge\n\
             edgeshard_snapshot_info{{run_id=\"{}\",manifest=\"{}\"}} 1",
            label(&snap.manifest().meta.run_id),
            label(snap.manifest_path())
        );
        // Counters of the served version's reader: they start again from 0 at each swap
        // (Prometheus' rate() treats that as a counter reset).
        let stats = snap.stats();
        for (name, help, value) in [
            (
                "store_requests",
                "Requests sent to the store by the served version.",
                stats.requests,
            ),
            (
                "store_bytes",
                "Bytes read from the store by the served version.",
                stats.bytes,
            ),
            (
                "store_rounds",
                "Rounds of parallel range reads of the served version.",
                stats.rounds,
            ),
            (
                "cache_hits",
                "Page or file cache hits of the served version.",
                stats.cache_hits,
            ),
            (
                "store_retries",
                "Store requests retried by the served version.",
                stats.retries,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP edgeshard_{name}_total {help}\n\
                 # TYPE edgeshard_{name}_total counter\n\
                 edgeshard_{name}_total {value}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP edgeshard_refresh_attempts_total Opens and refreshes of the served version.\n\
         # TYPE edgeshard_refresh_attempts_total counter\n\
         edgeshard_refresh_attempts_total {}\n\
         # HELP edgeshard_refresh_failures_total Refreshes that failed (the old version stayed).\n\
         # TYPE edgeshard_refresh_failures_total counter\n\
         edgeshard_refresh_failures_total {}\n\
         # HELP edgeshard_refresh_swaps_total Versions swapped in.\n\
         # TYPE edgeshard_refresh_swaps_total counter\n\
         edgeshard_refresh_swaps_total {}\n\
         # HELP edgeshard_refresh_last_ok Whether the latest refresh succeeded.\n\
         # TYPE edgeshard_refresh_last_ok gauge\n\
         edgeshard_refresh_last_ok {}",
        status.attempts,
        status.failures,
        status.swaps,
        u8::from(status.ok)
    );
}

/// A label value with Prometheus' escapes (backslash, quote, newline).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
