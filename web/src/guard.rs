//! Two defences in front of authentication.
//!
//! - **Cross-site requests**: a request that changes something (any method
//!   but GET, HEAD and OPTIONS) sent by a browser from another site is
//!   refused with 403, whether or not a token is configured: a page on any
//!   site could otherwise post a form to a kino on the visitor's loopback
//!   address, or ride a session cookie. Browsers say where a request comes
//!   from (`Sec-Fetch-Site`, `Origin`); scripts and `curl` send neither and
//!   pass.
//! - **Guessing tokens**: a client address that presented a wrong token or
//!   session [`MAX_FAILURES`] times within [`WINDOW`] is answered 429, with
//!   `Retry-After`, until the window ends, whatever it sends (the open
//!   paths, `/healthz`, `/static/…` and the login page, still answer).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::AppState;

/// Wrong credentials one client address may present per [`WINDOW`].
pub const MAX_FAILURES: u32 = 10;
/// The window [`MAX_FAILURES`] counts in.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Client addresses tracked at most (the oldest windows are dropped first).
const MAX_TRACKED: usize = 10_000;

/// Wrong-credential counts per client address.
#[derive(Debug, Default)]
pub struct Failures {
    by_addr: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Failures {
    /// How long `addr` must wait, if it is blocked now.
    pub fn blocked(&self, addr: IpAddr) -> Option<Duration> {
        let map = self.by_addr.lock().ok()?;
        let (start, n) = map.get(&addr)?;
        let left = WINDOW.checked_sub(start.elapsed())?;
        (*n >= MAX_FAILURES).then_some(left)
    }

    /// Counts one wrong credential from `addr`.
    pub fn record(&self, addr: IpAddr) {
        let Ok(mut map) = self.by_addr.lock() else {
            return;
        };
        if map.len() >= MAX_TRACKED && !map.contains_key(&addr) {
            map.retain(|_, (start, _)| start.elapsed() < WINDOW);
            if map.len() >= MAX_TRACKED {
                if let Some(oldest) = map.iter().min_by_key(|(_, (s, _))| *s).map(|(a, _)| *a) {
                    map.remove(&oldest);
                }
            }
        }
        let entry = map.entry(addr).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
        if entry.1 == MAX_FAILURES {
            tracing::warn!(
                "{addr}: {MAX_FAILURES} wrong tokens within {WINDOW:?}; refusing it for the rest of the window"
            );
        }
    }
}

/// Whether a request from a browser comes from another site: `Sec-Fetch-Site:
/// cross-site`, or an `Origin` whose host and port differ from `Host`.
fn cross_site(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    if text(header::HeaderName::from_static("sec-fetch-site")) == Some("cross-site") {
        return true;
    }
    let Some(origin) = text(header::ORIGIN) else {
        return false;
    };
    // `Origin: null` comes from sandboxed frames and local files.
    let origin_host = origin.split_once("://").map(|(_, rest)| rest.trim_end_matches('/'));
    match (origin_host, text(header::HOST)) {
        (Some(o), Some(host)) => !o.eq_ignore_ascii_case(host),
        _ => true,
    }
}

/// Whether the request presents a credential (a bearer token, a session
/// cookie, or the login form).
fn presents_credential(method: &Method, path: &str, headers: &HeaderMap) -> bool {
    (method == Method::POST && path == "/login")
        || headers.contains_key(header::AUTHORIZATION)
        || crate::auth::cookie(headers, crate::auth::SESSION_COOKIE).is_some()
}

/// Middleware: refuses cross-site writes, and clients that guessed wrong too often.
pub async fn shield(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && cross_site(req.headers()) {
        tracing::warn!("{} {}: cross-site request refused", req.method(), req.uri().path());
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "cross-site request refused: send it from kino's own pages, or without an Origin header",
        )
        .into_response();
    }
    let path = req.uri().path();
    let open = crate::auth::is_open_path(path) && !(path == "/login" && req.method() == Method::POST);
    if st.token.is_none() || open {
        return next.run(req).await;
    }
    let addr = crate::listen::peer(&req).map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    if let Some(left) = st.failures.blocked(addr) {
        let secs = left.as_secs().max(1);
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many wrong tokens from {addr}; try again in {secs} s"),
        )
        .retry_after(secs)
        .into_response();
    }
    let credential = presents_credential(req.method(), req.uri().path(), req.headers());
    let res = next.run(req).await;
    if credential && res.status() == StatusCode::UNAUTHORIZED {
        st.failures.record(addr);
        metrics::counter!("kino_http_wrong_tokens_total").increment(1);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn origins_are_compared_with_the_host() {
        assert!(!cross_site(&headers(&[("host", "127.0.0.1:8080")])));
        assert!(!cross_site(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(cross_site(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example")
        ])));
        assert!(cross_site(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:9090")
        ])));
        assert!(cross_site(&headers(&[("host", "127.0.0.1:8080"), ("origin", "null")])));
        assert!(cross_site(&headers(&[
            ("host", "kino.lan"),
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(!cross_site(&headers(&[
            ("host", "kino.lan"),
            ("sec-fetch-site", "same-origin")
        ])));
    }

    #[test]
    fn a_client_is_blocked_after_too_many_failures_and_others_are_not() {
        let f = Failures::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..MAX_FAILURES - 1 {
            f.record(a);
        }
        assert!(f.blocked(a).is_none());
        f.record(a);
        let left = f.blocked(a).expect("blocked");
        assert!(left <= WINDOW && left > WINDOW - Duration::from_secs(5));
        assert!(f.blocked(b).is_none());
    }

    #[test]
    fn the_table_stays_bounded() {
        let f = Failures::default();
        for i in 0..(MAX_TRACKED as u32 + 50) {
            f.record(IpAddr::V4(Ipv4Addr::from(i)));
        }
        assert!(f.by_addr.lock().unwrap().len() <= MAX_TRACKED);
    }
}
