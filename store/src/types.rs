//! Plain row types of the store's API.

use serde::{Deserialize, Serialize};

/// A video's indexing status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoStatus {
    /// Waiting for a worker.
    Queued,
    /// A worker is indexing it.
    Indexing,
    /// Indexed and searchable.
    Done,
    /// Indexing failed; `error` says why.
    Failed,
    /// The file is gone; its segments are hidden from search.
    Missing,
    /// Same content as another video (`duplicate_of`); not indexed separately.
    Duplicate,
}

impl VideoStatus {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            VideoStatus::Queued => "queued",
            VideoStatus::Indexing => "indexing",
            VideoStatus::Done => "done",
            VideoStatus::Failed => "failed",
            VideoStatus::Missing => "missing",
            VideoStatus::Duplicate => "duplicate",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => VideoStatus::Queued,
            "indexing" => VideoStatus::Indexing,
            "done" => VideoStatus::Done,
            "failed" => VideoStatus::Failed,
            "missing" => VideoStatus::Missing,
            "duplicate" => VideoStatus::Duplicate,
            _ => return None,
        })
    }
}

/// Media facts of a video file, as found by probing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MediaFacts {
    /// Duration in milliseconds.
    pub duration_ms: Option<i64>,
    /// Display width in pixels.
    pub width: Option<i64>,
    /// Display height in pixels.
    pub height: Option<i64>,
    /// Average frame rate.
    pub fps: Option<f64>,
    /// Codec of the main video stream.
    pub video_codec: Option<String>,
    /// Codec of the main audio stream.
    pub audio_codec: Option<String>,
}

/// A file to record in the library.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewVideo {
    /// Absolute path of the file.
    pub path: String,
    /// blake3 of the content (hex), when known.
    pub content_hash: Option<String>,
    /// File size in bytes.
    pub size_bytes: i64,
    /// Modification time, Unix ms.
    pub mtime_ms: i64,
}

/// A video row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Video {
    /// Row id.
    pub id: i64,
    /// Absolute path of the file.
    pub path: String,
    /// blake3 of the content (hex).
    pub content_hash: Option<String>,
    /// File size in bytes.
    pub size_bytes: i64,
    /// Modification time, Unix ms.
    pub mtime_ms: i64,
    /// Probed media facts.
    pub facts: MediaFacts,
    /// Indexing status.
    pub status: VideoStatus,
    /// Last error, for failed videos.
    pub error: Option<String>,
    /// For duplicates: the video with the same content.
    pub duplicate_of: Option<i64>,
    /// Text model version of the current index.
    pub text_model: Option<String>,
    /// Vision model version of the current index (None when indexed without vision).
    pub vision_model: Option<String>,
    /// Fusion model version of the current index.
    pub fusion_model: Option<String>,
    /// Indexed without the vision branch (display only: whether a video is
    /// stale is decided from `stage_versions`).
    pub needs_vision: bool,
    /// Version of what each stage of the current index used, by stage name
    /// (`decode`, `vision`, `text`, `fusion`, …); a stage that did not run is
    /// absent. Empty for videos indexed before stage versions were recorded.
    #[serde(default)]
    pub stage_versions: std::collections::BTreeMap<String, String>,
    /// The language its speech is recognised in (a Whisper code such as
    /// `en`), set by the user; `None` detects it.
    #[serde(default)]
    pub language: Option<String>,
    /// Problems met by the last indexing run that did not stop it (an
    /// unreadable audio stream, decoding that stopped early, …).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// When the file was found missing.
    pub missing_since_ms: Option<i64>,
    /// When the current index was committed.
    pub indexed_ms: Option<i64>,
    /// Row creation time.
    pub created_ms: i64,
    /// Last update time.
    pub updated_ms: i64,
}

/// State of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting to be claimed.
    Queued,
    /// Claimed by a worker holding a lease.
    Running,
    /// Finished successfully.
    Done,
    /// Gave up after its attempts; `last_error` says why.
    Failed,
}

impl JobState {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            _ => return None,
        })
    }
}

/// A job row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Row id.
    pub id: i64,
    /// The video it works on.
    pub video_id: i64,
    /// What to do (`index`, `reindex`, …).
    pub kind: String,
    /// Current state.
    pub state: JobState,
    /// How many times it was claimed.
    pub attempts: i64,
    /// Claims allowed before it is failed.
    pub max_attempts: i64,
    /// Worker holding the lease.
    pub lease_owner: Option<String>,
    /// When the lease expires, Unix ms.
    pub lease_expires_ms: Option<i64>,
    /// Progress saved by the worker (opaque JSON).
    pub checkpoint: Option<String>,
    /// Last failure message.
    pub last_error: Option<String>,
    /// Not claimable before this time (backoff), Unix ms.
    pub run_after_ms: i64,
    /// Row creation time.
    pub created_ms: i64,
    /// Last update time.
    pub updated_ms: i64,
}

/// A timed piece of text on a video's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CueRecord {
    /// Start, ms.
    pub start_ms: i64,
    /// End, ms.
    pub end_ms: i64,
    /// The text.
    pub text: String,
    /// Where it came from (`subtitle`, `speech`, `screen`, …).
    pub source: String,
    /// Its language where known (speech: the detected or given language).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// A segment to write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewSegment {
    /// Start, ms.
    pub start_ms: i64,
    /// End, ms.
    pub end_ms: i64,
    /// Transcript text inside the segment.
    pub text: String,
    /// Visual tags (label names).
    pub tags: Vec<String>,
    /// Fused embedding (the searchable one).
    pub fused: Vec<f32>,
    /// Text-only embedding.
    pub text_emb: Option<Vec<f32>>,
    /// Visual-only embedding.
    pub visual_emb: Option<Vec<f32>>,
    /// Model version string of the embeddings.
    pub model_version: String,
    /// Thumbnail reference (file name under the thumbnail folder).
    pub thumbnail: Option<String>,
}

/// A segment's words, without its vectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentWords {
    /// Row id.
    pub id: i64,
    /// Transcript text inside the segment.
    pub text: String,
    /// Visual tags.
    pub tags: Vec<String>,
    /// Thumbnail reference.
    pub thumbnail: Option<String>,
}

/// A stored segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Row id.
    pub id: i64,
    /// Its video.
    pub video_id: i64,
    /// Start, ms.
    pub start_ms: i64,
    /// End, ms.
    pub end_ms: i64,
    /// Transcript text.
    pub text: String,
    /// Visual tags.
    pub tags: Vec<String>,
    /// Fused embedding.
    pub fused: Vec<f32>,
    /// Text-only embedding.
    pub text_emb: Option<Vec<f32>>,
    /// Visual-only embedding.
    pub visual_emb: Option<Vec<f32>>,
    /// Model version string.
    pub model_version: String,
    /// Thumbnail reference.
    pub thumbnail: Option<String>,
}

/// A question or search to record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewQuery {
    /// The question or search text.
    pub question: String,
    /// `search` or `ask`.
    pub kind: String,
    /// Time to answer, ms.
    pub latency_ms: i64,
    /// Model versions used.
    pub model_version: String,
}

/// A mark a user put on a search result: right or wrong for the query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    /// Its id (0 before it is stored).
    pub id: i64,
    /// The query's text.
    pub query: String,
    /// The marked moment's video.
    pub video_id: i64,
    /// The marked moment's start, ms.
    pub start_ms: i64,
    /// The marked moment's end, ms.
    pub end_ms: i64,
    /// Whether the moment was right for the query.
    pub right: bool,
    /// When it was marked, Unix ms (set by the store).
    pub created_ms: i64,
}

/// A recorded question with its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryRecord {
    /// Query id.
    pub id: i64,
    /// The question.
    pub question: String,
    /// `search` or `ask`.
    pub kind: String,
    /// Time to answer, ms.
    pub latency_ms: i64,
    /// Model versions used.
    pub model_version: String,
    /// When it was asked, Unix ms.
    pub created_ms: i64,
    /// The answer text, if one was given.
    pub answer: Option<String>,
    /// The answer's citations (JSON).
    pub citations: serde_json::Value,
}

/// A model known to the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// Name (e.g. `sentence-transformers/all-MiniLM-L6-v2`).
    pub name: String,
    /// `text`, `vision` or `fusion`.
    pub kind: String,
    /// Version string used in segment rows.
    pub version: String,
    /// blake3 of the weights.
    pub checksum: String,
    /// Where it came from.
    pub source: String,
    /// Directory on disk.
    pub path: String,
    /// Last update, Unix ms.
    pub updated_ms: i64,
}
