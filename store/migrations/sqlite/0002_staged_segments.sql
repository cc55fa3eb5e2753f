-- Checkpoints of long videos: segments finished so far by a running job, kept
-- apart from `segments` (search never sees them) until the video's index is
-- replaced in one transaction.
CREATE TABLE staged_segments (
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
CREATE INDEX staged_segments_video ON staged_segments(video_id, start_ms);
