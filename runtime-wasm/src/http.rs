//! HTTP GETs through the global `fetch` (present in browser pages and workers, Node 18+,
//! workerd/Cloudflare Workers, Deno), looked up on `globalThis` at call time so one build works
//! in all of them. No synchronous XHR, no SharedArrayBuffer, no special headers.
//!
//! Only `Range` is sent, which browsers treat as a CORS-safelisted header for a single
//! `bytes=a-b` range, so cross-origin reads need no preflight. `If-Match` would need one, so
//! ETag pinning compares the ETag of each answer with the one pinned at open instead (the host
//! must expose `ETag` and `Content-Range` through `Access-Control-Expose-Headers` when it is
//! cross-origin). `Accept-Encoding` is a forbidden header in browsers, so a compressing host is
//! detected from `Content-Encoding` and `Content-Range` instead of being asked not to compress.
//!
//! Transient failures (network errors, 5xx, 429, 408) are retried with exponential backoff.

use crate::error::{is_transient_status, Error, Result};
use edgeshard_shared::pages::PageStats;
use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use std::sync::Arc;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// A whole object.
pub struct Whole {
    pub bytes: Vec<u8>,
    pub etag: Option<String>,
}

/// One byte range of an object.
pub struct Ranged {
    pub bytes: Vec<u8>,
    pub etag: Option<String>,
    /// The object's full size, from `Content-Range`.
    pub total: u64,
}

/// Issues GETs with retries, counting requests and bytes.
#[derive(Clone)]
pub struct Fetcher {
    /// Retries after the first attempt of a request.
    pub retries: u32,
    /// First backoff; doubled on each retry.
    pub backoff_ms: u32,
    pub counters: Arc<PageStats>,
}

fn js_detail(value: &JsValue) -> String {
    if let Some(e) = value.dyn_ref::<js_sys::Error>() {
        let cause = Reflect::get(e, &"cause".into())
            .ok()
            .filter(|c| !c.is_undefined())
            .and_then(|c| {
                c.dyn_ref::<js_sys::Error>()
                    .map(|c| String::from(c.message()))
            });
        let message = String::from(e.message());
        return match cause {
            Some(cause) => format!("{message} ({cause})"),
            None => message,
        };
    }
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}

/// `obj[name]`, as an error for the caller when the host's objects are not what fetch returns.
fn get(obj: &JsValue, name: &str, url: &str) -> Result<JsValue> {
    Reflect::get(obj, &JsValue::from_str(name)).map_err(|e| Error::Network {
        url: url.to_string(),
        detail: format!("reading {name}: {}", js_detail(&e)),
    })
}

fn header(response: &JsValue, name: &str, url: &str) -> Result<Option<String>> {
    let headers = get(response, "headers", url)?;
    let get_fn: Function = get(&headers, "get", url)?
        .dyn_into()
        .map_err(|_| Error::Network {
            url: url.to_string(),
            detail: "Response.headers has no get()".into(),
        })?;
    let value = get_fn
        .call1(&headers, &JsValue::from_str(name))
        .map_err(|e| Error::Network {
            url: url.to_string(),
            detail: js_detail(&e),
        })?;
    Ok(value.as_string())
}

/// Waits `ms` milliseconds through the global `setTimeout`.
async fn sleep(ms: u32) {
    let promise = Promise::new(&mut |resolve, _reject| {
        let global = js_sys::global();
        if let Ok(set_timeout) = Reflect::get(&global, &JsValue::from_str("setTimeout"))
            .and_then(|f| f.dyn_into::<Function>())
        {
            let _ = set_timeout.call2(&global, &resolve, &JsValue::from(ms));
        } else {
            let _ = resolve.call0(&JsValue::NULL);
        }
    });
    let _ = JsFuture::from(promise).await;
}

/// A parsed `Content-Range: bytes a-b/total`.
fn parse_content_range(text: &str) -> Option<(u64, u64, u64)> {
    let rest = text.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    Some((
        start.trim().parse().ok()?,
        end.trim().parse().ok()?,
        total.trim().parse().ok()?,
    ))
}

impl Fetcher {
    /// One `fetch` call, resolved to its Response (not yet read).
    async fn send(&self, url: &str, range: Option<(u64, u64)>) -> Result<JsValue> {
        let global = js_sys::global();
        let fetch: Function = get(&global, "fetch", url)?
            .dyn_into()
            .map_err(|_| Error::Unsupported("this JavaScript host has no global fetch".into()))?;
        let init = Object::new();
        if let Some((offset, length)) = range {
            let headers = Object::new();
            let value = format!("bytes={}-{}", offset, offset + length - 1);
            let _ = Reflect::set(&headers, &"Range".into(), &value.into());
            let _ = Reflect::set(&init, &"headers".into(), &headers);
        }
        PageStats::bump(&self.counters.requests);
        let promise: Promise = fetch
            .call2(&global, &JsValue::from_str(url), &init)
            .map_err(|e| Error::Network {
                url: url.to_string(),
                detail: js_detail(&e),
            })?
            .dyn_into()
            .map_err(|_| Error::Unsupported("global fetch did not return a Promise".into()))?;
        JsFuture::from(promise).await.map_err(|e| Error::Network {
            url: url.to_string(),
            detail: js_detail(&e),
        })
    }

    async fn body(&self, response: &JsValue, url: &str) -> Result<Vec<u8>> {
        let read: Function =
            get(response, "arrayBuffer", url)?
                .dyn_into()
                .map_err(|_| Error::Network {
                    url: url.to_string(),
                    detail: "Response has no arrayBuffer()".into(),
                })?;
        let promise: Promise = read
            .call0(response)
            .map_err(|e| Error::Network {
                url: url.to_string(),
                detail: js_detail(&e),
            })?
            .dyn_into()
            .map_err(|_| Error::Network {
                url: url.to_string(),
                detail: "arrayBuffer() did not return a Promise".into(),
            })?;
        let buffer = JsFuture::from(promise).await.map_err(|e| Error::Network {
            url: url.to_string(),
            detail: format!("reading the body: {}", js_detail(&e)),
        })?;
        let bytes = Uint8Array::new(&buffer).to_vec();
        PageStats::add(&self.counters.bytes, bytes.len() as u64);
        Ok(bytes)
    }

    /// One attempt: status and header checks, then the body.
    async fn attempt(
        &self,
        url: &str,
        what: &str,
        range: Option<(u64, u64)>,
    ) -> Result<(Vec<u8>, Option<String>, Option<u64>)> {
        let response = self.send(url, range).await?;
        let status = get(&response, "status", url)?.as_f64().unwrap_or(0.0) as u16;
        if status == 404 || status == 410 {
            return Err(Error::NotFound {
                what: what.to_string(),
                url: url.to_string(),
                status,
            });
        }
        if !(200..300).contains(&status) {
            return Err(Error::Http {
                status,
                url: url.to_string(),
            });
        }
        if let Some(encoding) = header(&response, "content-encoding", url)? {
            let encoding = encoding.trim().to_ascii_lowercase();
            if !encoding.is_empty() && encoding != "identity" {
                return Err(Error::CompressedResponse {
                    url: url.to_string(),
                    encoding,
                });
            }
        }
        let etag = header(&response, "etag", url)?;
        let Some((offset, length)) = range else {
            let bytes = self.body(&response, url).await?;
            return Ok((bytes, etag, None));
        };
        if status != 206 {
            return Err(Error::RangeNotSupported {
                url: url.to_string(),
                status,
            });
        }
        let content_range = header(&response, "content-range", url)?;
        let (start, end, total) = content_range
            .as_deref()
            .and_then(parse_content_range)
            .ok_or_else(|| Error::BadRangeResponse {
                url: url.to_string(),
                detail: format!(
                    "Content-Range is {content_range:?} (a cross-origin host must expose it \
                     with Access-Control-Expose-Headers)"
                ),
            })?;
        let want_end = (offset + length - 1).min(total.saturating_sub(1));
        if start != offset || end != want_end {
            return Err(Error::BadRangeResponse {
                url: url.to_string(),
                detail: format!(
                    "asked for bytes {offset}-{}, got {start}-{end}",
                    offset + length - 1
                ),
            });
        }
        let bytes = self.body(&response, url).await?;
        if bytes.len() as u64 != end - start + 1 {
            return Err(Error::BadRangeResponse {
                url: url.to_string(),
                detail: format!(
                    "Content-Range says {} bytes, the body has {} (was it compressed?)",
                    end - start + 1,
                    bytes.len()
                ),
            });
        }
        Ok((bytes, etag, Some(total)))
    }

    /// Runs `attempt` with retries on transient failures.
    async fn with_retries(
        &self,
        url: &str,
        what: &str,
        range: Option<(u64, u64)>,
    ) -> Result<(Vec<u8>, Option<String>, Option<u64>)> {
        let mut tries = 0;
        loop {
            match self.attempt(url, what, range).await {
                Err(e) if tries < self.retries && is_transient(&e) => {
                    let wait = self.backoff_ms.saturating_mul(1 << tries.min(16));
                    tries += 1;
                    PageStats::bump(&self.counters.retries);
                    sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    /// GET of a whole object.
    pub async fn get_whole(&self, url: &str, what: &str) -> Result<Whole> {
        let (bytes, etag, _) = self.with_retries(url, what, None).await?;
        Ok(Whole { bytes, etag })
    }

    /// GET of `length` bytes from `offset` (fewer at the end of the object).
    pub async fn get_range(
        &self,
        url: &str,
        what: &str,
        offset: u64,
        length: u64,
    ) -> Result<Ranged> {
        let (bytes, etag, total) = self.with_retries(url, what, Some((offset, length))).await?;
        Ok(Ranged {
            bytes,
            etag,
            total: total.unwrap_or(0),
        })
    }
}

fn is_transient(e: &Error) -> bool {
    match e {
        Error::Network { .. } => true,
        Error::Http { status, .. } => is_transient_status(*status),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_bindgen_test::wasm_bindgen_test;

    // This module exists on wasm32 only, where wasm-bindgen-test-runner runs these (in Node).
    #[wasm_bindgen_test]
    fn content_range() {
        assert_eq!(
            parse_content_range("bytes 0-4095/20480"),
            Some((0, 4095, 20480))
        );
        assert_eq!(parse_content_range("bytes */20480"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }
}
