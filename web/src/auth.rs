//! Token authentication: `Authorization: Bearer TOKEN`, or a session cookie
//! set by the login form. Without a configured token every request passes
//! (the server then only listens on loopback; see [`crate::check_bind`]).
//!
//! Sessions live in the store (as SHA-256 hashes of their ids), so every
//! replica on one database accepts a session any of them handed out; each
//! process caches the sessions it has checked until they expire.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use crate::error::ApiError;
use crate::pages::{esc, layout};
use crate::AppState;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "kino_session";

/// How long a login lasts.
pub const SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// Sessions cached per process at most (the cache is emptied when full).
const SESSION_CACHE: usize = 10_000;

/// The stored form of a session id.
fn session_hash(id: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(id.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares in time independent of where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

async fn authorised(st: &AppState, token: &str, headers: &HeaderMap) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(given) = bearer {
        if constant_time_eq(given.trim().as_bytes(), token.as_bytes()) {
            return true;
        }
    }
    let Some(session) = cookie(headers, SESSION_COOKIE) else {
        return false;
    };
    let hash = session_hash(session);
    let now = kino_store::now_ms();
    let cached = st
        .sessions
        .lock()
        .ok()
        .and_then(|c| c.get(&hash).copied())
        .is_some_and(|expires| expires > now);
    if cached {
        return true;
    }
    match st.store.session_expiry(&hash).await {
        Ok(Some(expires)) => {
            if let Ok(mut c) = st.sessions.lock() {
                if c.len() >= SESSION_CACHE {
                    c.clear();
                }
                c.insert(hash, expires);
            }
            true
        }
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(error = %e, "session not checked");
            false
        }
    }
}

pub(crate) fn is_open_path(path: &str) -> bool {
    path == "/healthz" || path == "/login" || path.starts_with("/static/")
}

fn is_page(path: &str) -> bool {
    !(path.starts_with("/api/")
        || path.starts_with("/media/")
        || path.starts_with("/thumbnails/")
        || path == "/metrics")
}

/// Middleware: lets a request through when no token is configured, the path
/// is open (`/healthz`, `/login`, `/static/…`), or it carries the token or a
/// valid session. Otherwise pages redirect to `/login` and the rest answers 401.
pub async fn require(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(token) = st.token.as_deref() else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    if is_open_path(path) || authorised(&st, token, req.headers()).await {
        return next.run(req).await;
    }
    if is_page(path) && req.method() == axum::http::Method::GET {
        return Redirect::to("/login").into_response();
    }
    let mut res = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "a token is required: send 'Authorization: Bearer TOKEN' or log in at /login",
    )
    .into_response();
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

fn login_form(message: Option<&str>) -> String {
    let msg = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(m)))
        .unwrap_or_default();
    layout(
        "Log in",
        "",
        &format!(
            "<section class=\"login\"><h1>Log in</h1>{msg}<form method=\"post\" action=\"/login\">\
             <label for=\"token\">Access token</label>\
             <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required>\
             <button type=\"submit\">Log in</button></form></section>"
        ),
    )
}

/// `GET /login`: the login form.
pub async fn login_page() -> Html<String> {
    Html(login_form(None))
}

/// Login form fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    /// The access token.
    pub token: String,
}

/// `POST /login`: checks the token, sets the session cookie, redirects home.
pub async fn login(State(st): State<Arc<AppState>>, Form(form): Form<LoginForm>) -> Response {
    let ok = st
        .token
        .as_deref()
        .is_some_and(|t| constant_time_eq(form.token.trim().as_bytes(), t.as_bytes()));
    if !ok {
        return (StatusCode::UNAUTHORIZED, Html(login_form(Some("Wrong token.")))).into_response();
    }
    let session: String = {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    if let Err(e) = st
        .store
        .create_session(&session_hash(&session), SESSION_TTL.as_millis() as i64)
        .await
    {
        tracing::warn!(error = %e, "session not stored");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Html(login_form(Some("The session could not be stored; try again."))),
        )
            .into_response();
    }
    let cookie = format!(
        "{SESSION_COOKIE}={session}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict",
        SESSION_TTL.as_secs()
    );
    let mut res = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}
