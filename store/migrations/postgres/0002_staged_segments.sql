-- Checkpoints of long videos: segments finished so far by a running job, kept
-- apart from `segments` (search never sees them) until the video's index is
-- replaced in one transaction.
CREATE TABLE staged_segments (
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
CREATE INDEX staged_segments_video ON staged_segments(video_id, start_ms);
