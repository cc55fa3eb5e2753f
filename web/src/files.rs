//! Media and thumbnails, served by id only.
//!
//! A video's stored path (or a segment's thumbnail reference) is resolved to
//! a canonical path (symlinks followed) and served only when it lies inside
//! one of the library roots (or the thumbnails folder) and is a regular file.
//! Everything else answers 404, so nothing outside the library can be read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Request, State};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// Canonicalises `path` and returns it when it is a regular file inside one of `roots`
/// (which must already be canonical).
pub fn resolve_inside(path: &Path, roots: &[PathBuf]) -> Option<PathBuf> {
    let canonical = std::fs::canonicalize(path).ok()?;
    if !roots.iter().any(|root| canonical.starts_with(root)) {
        return None;
    }
    std::fs::metadata(&canonical).ok().filter(|m| m.is_file())?;
    Some(canonical)
}

fn parse_id(raw: &str, what: &str) -> ApiResult<i64> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::not_found(format!("no {what} with id '{raw}'")))
}

async fn serve_file(path: PathBuf, req: Request) -> Response {
    match ServeFile::new(path).oneshot(req).await {
        Ok(res) => res.map(Body::new).into_response(),
        Err(never) => match never {},
    }
}

/// `GET /media/{video_id}`: the video file, with HTTP range support and a
/// content type from its extension.
#[utoipa::path(get, path = "/media/{video_id}", tag = "media",
    params(("video_id" = i64, Path, description = "Video id")),
    responses((status = 200, description = "The whole file"), (status = 206, description = "A byte range"),
               (status = 404, description = "No such video, or its file is outside the library", body = crate::error::ErrorBody)))]
pub async fn media(
    State(st): State<Arc<AppState>>,
    UrlPath(raw): UrlPath<String>,
    req: Request,
) -> ApiResult<Response> {
    let id = parse_id(&raw, "video")?;
    let video = st
        .store
        .video(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no video with id {id}")))?;
    let path = resolve_inside(Path::new(&video.path), &st.library_roots).ok_or_else(|| {
        tracing::warn!(video = id, path = %video.path, "media refused: not a file inside the library roots");
        ApiError::not_found(format!("video {id} has no readable file in the library"))
    })?;
    Ok(serve_file(path, req).await)
}

/// `GET /thumbnails/{segment_id}`: a segment's thumbnail image.
#[utoipa::path(get, path = "/thumbnails/{segment_id}", tag = "media",
    params(("segment_id" = i64, Path, description = "Segment id")),
    responses((status = 200, description = "The image"),
               (status = 404, description = "No such segment or thumbnail", body = crate::error::ErrorBody)))]
pub async fn thumbnail(
    State(st): State<Arc<AppState>>,
    UrlPath(raw): UrlPath<String>,
    req: Request,
) -> ApiResult<Response> {
    let id = parse_id(&raw, "segment")?;
    let missing = || ApiError::not_found(format!("segment {id} has no thumbnail"));
    let dir = st.thumbnails_dir.as_ref().ok_or_else(missing)?;
    let seg = st
        .store
        .segments_by_id(&[id])
        .await?
        .into_iter()
        .next()
        .ok_or_else(missing)?;
    let name = seg.thumbnail.ok_or_else(missing)?;
    let path = resolve_inside(&dir.join(&name), std::slice::from_ref(dir)).ok_or_else(|| {
        tracing::warn!(segment = id, thumbnail = %name, "thumbnail refused: not a file inside the thumbnails folder");
        missing()
    })?;
    Ok(serve_file(path, req).await)
}
