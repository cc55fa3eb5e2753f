//! Errors of the web layer, mapped to JSON responses in one place.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// Errors that stop [`crate::serve`] from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A non-loopback address without a token.
    #[error("refusing to listen on {0} without a token: binding anything but a loopback address needs --token or KINO_TOKEN")]
    NeedsToken(std::net::SocketAddr),
    /// An empty token.
    #[error("the token must not be empty")]
    EmptyToken,
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("web server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// An error answer: `{"error": message, "status": code}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
    /// The HTTP status code.
    pub status: u16,
}

/// An error of a request handler, with the status it answers with.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Message shown to the client.
    pub message: String,
    /// Seconds after which the client may try again (`Retry-After`), if any.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
    /// The same error, answered with `Retry-After: secs`.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// 500 Internal Server Error (the cause is logged).
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!("request failed: {err}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
    }
}

impl From<kino_store::StoreError> for ApiError {
    fn from(e: kino_store::StoreError) -> Self {
        if e.is_transient() {
            tracing::warn!("store unavailable: {e}");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        } else {
            ApiError::internal(e)
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        // A store that cannot be reached, wherever in the chain: 503, so
        // clients retry (the service recovers without a restart).
        let transient = e
            .chain()
            .filter_map(|c| c.downcast_ref::<kino_store::StoreError>())
            .any(|s| s.is_transient());
        if transient {
            tracing::warn!("store unavailable: {e:#}");
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the database is unavailable; try again shortly ({e:#})"),
            );
        }
        ApiError::internal(format!("{e:#}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            status: self.status.as_u16(),
        };
        let mut res = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        res
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
