-- kino schema v1 (SQLite). Times are Unix milliseconds; embeddings are little-endian f32 bytes.
CREATE TABLE videos (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    path            TEXT    NOT NULL UNIQUE,
    content_hash    TEXT,
    size_bytes      INTEGER NOT NULL DEFAULT 0,
    mtime_ms        INTEGER NOT NULL DEFAULT 0,
    duration_ms     INTEGER,
    width           INTEGER,
    height          INTEGER,
    fps             REAL,
    video_codec     TEXT,
    audio_codec     TEXT,
    status          TEXT    NOT NULL DEFAULT 'queued',
    error           TEXT,
    duplicate_of    INTEGER REFERENCES videos(id) ON DELETE SET NULL,
    text_model      TEXT,
    vision_model    TEXT,
    fusion_model    TEXT,
    needs_vision    INTEGER NOT NULL DEFAULT 0,
    missing_since_ms INTEGER,
    indexed_ms      INTEGER,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL
);
CREATE INDEX videos_hash ON videos(content_hash);
CREATE INDEX videos_status ON videos(status);

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    video_id         INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    kind             TEXT    NOT NULL,
    state            TEXT    NOT NULL DEFAULT 'queued',
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL DEFAULT 3,
    lease_owner      TEXT,
    lease_expires_ms INTEGER,
    checkpoint       TEXT,
    last_error       TEXT,
    run_after_ms     INTEGER NOT NULL DEFAULT 0,
    created_ms       INTEGER NOT NULL,
    updated_ms       INTEGER NOT NULL
);
CREATE INDEX jobs_claim ON jobs(state, run_after_ms, id);
CREATE INDEX jobs_video ON jobs(video_id);

CREATE TABLE cues (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    video_id  INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    start_ms  INTEGER NOT NULL,
    end_ms    INTEGER NOT NULL,
    text      TEXT    NOT NULL,
    source    TEXT    NOT NULL
);
CREATE INDEX cues_video ON cues(video_id, start_ms);

CREATE TABLE segments (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    video_id      INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    start_ms      INTEGER NOT NULL,
    end_ms        INTEGER NOT NULL,
    text          TEXT    NOT NULL DEFAULT '',
    tags          TEXT    NOT NULL DEFAULT '[]',
    dim           INTEGER NOT NULL,
    fused         BLOB    NOT NULL,
    text_emb      BLOB,
    visual_emb    BLOB,
    model_version TEXT    NOT NULL,
    thumbnail     TEXT,
    created_ms    INTEGER NOT NULL
);
CREATE INDEX segments_video ON segments(video_id, start_ms);

CREATE TABLE queries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    question     TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    latency_ms   INTEGER NOT NULL,
    model_version TEXT   NOT NULL,
    created_ms   INTEGER NOT NULL
);

CREATE TABLE answers (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    query_id    INTEGER NOT NULL REFERENCES queries(id) ON DELETE CASCADE,
    answer      TEXT    NOT NULL,
    citations   TEXT    NOT NULL DEFAULT '[]',
    created_ms  INTEGER NOT NULL
);
CREATE INDEX answers_query ON answers(query_id);

CREATE TABLE models (
    name        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    version     TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    source      TEXT NOT NULL,
    path        TEXT NOT NULL,
    updated_ms  INTEGER NOT NULL
);
