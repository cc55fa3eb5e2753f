-- Whole videos: one document per video, the video's whole text (cues of
-- every source, in time order, de-duplicated) embedded with sliding windows.
-- `pieces` maps the text back to the timeline: a JSON array of
-- [byte_offset, start_ms, end_ms], one per cue text in `text`. `vector` is
-- the windows pooled into one vector; each window is kept with its time span.
-- `summary` is a JSON array of {start_ms, end_ms, text}: the video's most
-- central sentences in time order. Written in the transaction that replaces
-- the video's segments (or alone, when only the document is stale).
CREATE TABLE documents (
    video_id   BIGINT  PRIMARY KEY REFERENCES videos(id) ON DELETE CASCADE,
    version    TEXT    NOT NULL,
    text       TEXT    NOT NULL,
    pieces     TEXT    NOT NULL DEFAULT '[]',
    dim        BIGINT  NOT NULL,
    vector     BYTEA,
    tokens     BIGINT  NOT NULL DEFAULT 0,
    truncated  BIGINT  NOT NULL DEFAULT 0,
    summary    TEXT    NOT NULL DEFAULT '[]',
    updated_ms BIGINT  NOT NULL
);

CREATE TABLE document_windows (
    id         BIGSERIAL PRIMARY KEY,
    video_id   BIGINT  NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    idx        BIGINT  NOT NULL,
    start_ms   BIGINT  NOT NULL,
    end_ms     BIGINT  NOT NULL,
    start_byte BIGINT  NOT NULL,
    end_byte   BIGINT  NOT NULL,
    text       TEXT    NOT NULL,
    dim        BIGINT  NOT NULL,
    vector     BYTEA    NOT NULL
);
CREATE INDEX document_windows_video ON document_windows(video_id, idx);
