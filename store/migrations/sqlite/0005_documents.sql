-- Whole videos: one document per video, the video's whole text (cues of
-- every source, in time order, de-duplicated) embedded with sliding windows.
-- `pieces` maps the text back to the timeline: a JSON array of
-- [byte_offset, start_ms, end_ms], one per cue text in `text`. `vector` is
-- the windows pooled into one vector; each window is kept with its time span.
-- `summary` is a JSON array of {start_ms, end_ms, text}: the video's most
-- central sentences in time order. Written in the transaction that replaces
-- the video's segments (or alone, when only the document is stale).
CREATE TABLE documents (
    video_id   INTEGER PRIMARY KEY REFERENCES videos(id) ON DELETE CASCADE,
    version    TEXT    NOT NULL,
    text       TEXT    NOT NULL,
    pieces     TEXT    NOT NULL DEFAULT '[]',
    dim        INTEGER NOT NULL,
    vector     BLOB,
    tokens     INTEGER NOT NULL DEFAULT 0,
    truncated  INTEGER NOT NULL DEFAULT 0,
    summary    TEXT    NOT NULL DEFAULT '[]',
    updated_ms INTEGER NOT NULL
);

CREATE TABLE document_windows (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    video_id   INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    idx        INTEGER NOT NULL,
    start_ms   INTEGER NOT NULL,
    end_ms     INTEGER NOT NULL,
    start_byte INTEGER NOT NULL,
    end_byte   INTEGER NOT NULL,
    text       TEXT    NOT NULL,
    dim        INTEGER NOT NULL,
    vector     BLOB    NOT NULL
);
CREATE INDEX document_windows_video ON document_windows(video_id, idx);
