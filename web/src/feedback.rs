//! `POST /api/feedback`: a user marks a search result right or wrong for
//! the query. The mark is stored with the query's text and the moment's video
//! and span (`kino_store::Feedback`); `kino train` uses it as an extra
//! positive (right) or a hard negative (wrong) for that moment's frames.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// Body of `POST /api/feedback`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct FeedbackRequest {
    /// The query the result answered.
    pub query: String,
    /// The result's segment (`segment_id` of a search result).
    pub segment_id: i64,
    /// `true`: the moment is right for the query; `false`: wrong.
    pub right: bool,
}

/// `POST /api/feedback` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedbackResponse {
    /// The stored mark's id.
    pub id: i64,
    /// The marked moment's video.
    pub video_id: i64,
    /// The marked moment's span, ms.
    pub start_ms: i64,
    /// End of the span, ms.
    pub end_ms: i64,
    /// The verdict stored.
    pub right: bool,
}

/// The longest query text a mark keeps.
const MAX_QUERY_CHARS: usize = 2_000;

/// Marks a search result right or wrong for its query.
#[utoipa::path(post, path = "/api/feedback", tag = "search", request_body = FeedbackRequest,
    responses((status = 200, body = FeedbackResponse), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn feedback(
    State(st): State<Arc<AppState>>,
    body: Result<Json<FeedbackRequest>, JsonRejection>,
) -> ApiResult<Json<FeedbackResponse>> {
    let Json(req) = body.map_err(|e| {
        ApiError::new(
            e.status(),
            format!(
                "{}; expected {{\"query\": \"…\", \"segment_id\": 12, \"right\": true}}",
                e.body_text()
            ),
        )
    })?;
    let query = req.query.trim();
    if query.is_empty() {
        return Err(ApiError::bad_request(
            "query is empty: a mark needs the query it answers",
        ));
    }
    if query.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::bad_request(format!(
            "query is longer than {MAX_QUERY_CHARS} characters"
        )));
    }
    let seg = st
        .store
        .segments_by_id(&[req.segment_id])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found(format!("no segment with id {} (reindexed since?)", req.segment_id)))?;
    let mark = kino_store::Feedback {
        id: 0,
        query: query.to_string(),
        video_id: seg.video_id,
        start_ms: seg.start_ms,
        end_ms: seg.end_ms,
        right: req.right,
        created_ms: 0,
    };
    let id = st.store.record_feedback(&mark).await?;
    tracing::info!(segment = req.segment_id, right = req.right, "search result marked");
    Ok(Json(FeedbackResponse {
        id,
        video_id: seg.video_id,
        start_ms: seg.start_ms,
        end_ms: seg.end_ms,
        right: req.right,
    }))
}
