-- kino schema v1 (Postgres). Times are Unix milliseconds; embeddings are little-endian f32 bytes.
CREATE TABLE videos (
    id              BIGSERIAL PRIMARY KEY,
    path            TEXT    NOT NULL UNIQUE,
    content_hash    TEXT,
    size_bytes      BIGINT  NOT NULL DEFAULT 0,
    mtime_ms        BIGINT  NOT NULL DEFAULT 0,
    duration_ms     BIGINT,
    width           BIGINT,
    height          BIGINT,
    fps             DOUBLE PRECISION,
    video_codec     TEXT,
    audio_codec     TEXT,
    status          TEXT    NOT NULL DEFAULT 'queued',
    error           TEXT,
    duplicate_of    BIGINT  REFERENCES videos(id) ON DELETE SET NULL,
    text_model      TEXT,
    vision_model    TEXT,
    fusion_model    TEXT,
    needs_vision    BIGINT  NOT NULL DEFAULT 0,
    missing_since_ms BIGINT,
    indexed_ms      BIGINT,
    created_ms      BIGINT  NOT NULL,
    updated_ms      BIGINT  NOT NULL
);
CREATE INDEX videos_hash ON videos(content_hash);
CREATE INDEX videos_status ON videos(status);

CREATE TABLE jobs (
    id               BIGSERIAL PRIMARY KEY,
    video_id         BIGINT  NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    kind             TEXT    NOT NULL,
    state            TEXT    NOT NULL DEFAULT 'queued',
    attempts         BIGINT  NOT NULL DEFAULT 0,
    max_attempts     BIGINT  NOT NULL DEFAULT 3,
    lease_owner      TEXT,
    lease_expires_ms BIGINT,
    checkpoint       TEXT,
    last_error       TEXT,
    run_after_ms     BIGINT  NOT NULL DEFAULT 0,
    created_ms       BIGINT  NOT NULL,
    updated_ms       BIGINT  NOT NULL
);
CREATE INDEX jobs_claim ON jobs(state, run_after_ms, id);
CREATE INDEX jobs_video ON jobs(video_id);

CREATE TABLE cues (
    id        BIGSERIAL PRIMARY KEY,
    video_id  BIGINT  NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    start_ms  BIGINT  NOT NULL,
    end_ms    BIGINT  NOT NULL,
    text      TEXT    NOT NULL,
    source    TEXT    NOT NULL
);
CREATE INDEX cues_video ON cues(video_id, start_ms);

CREATE TABLE segments (
    id            BIGSERIAL PRIMARY KEY,
    video_id      BIGINT  NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    start_ms      BIGINT  NOT NULL,
    end_ms        BIGINT  NOT NULL,
    text          TEXT    NOT NULL DEFAULT '',
    tags          TEXT    NOT NULL DEFAULT '[]',
    dim           BIGINT  NOT NULL,
    fused         BYTEA    NOT NULL,
    text_emb      BYTEA,
    visual_emb    BYTEA,
    model_version TEXT    NOT NULL,
    thumbnail     TEXT,
    created_ms    BIGINT  NOT NULL
);
CREATE INDEX segments_video ON segments(video_id, start_ms);

CREATE TABLE queries (
    id           BIGSERIAL PRIMARY KEY,
    question     TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    latency_ms   BIGINT  NOT NULL,
    model_version TEXT   NOT NULL,
    created_ms   BIGINT  NOT NULL
);

CREATE TABLE answers (
    id          BIGSERIAL PRIMARY KEY,
    query_id    BIGINT  NOT NULL REFERENCES queries(id) ON DELETE CASCADE,
    answer      TEXT    NOT NULL,
    citations   TEXT    NOT NULL DEFAULT '[]',
    created_ms  BIGINT  NOT NULL
);
CREATE INDEX answers_query ON answers(query_id);

CREATE TABLE models (
    name        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    version     TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    source      TEXT NOT NULL,
    path        TEXT NOT NULL,
    updated_ms  BIGINT  NOT NULL
);
