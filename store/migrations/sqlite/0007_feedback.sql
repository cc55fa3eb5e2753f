-- Marks users put on search results (right or wrong), for `kino train`:
-- the query's text joins the marked moment's frames as an extra positive
-- (right) or a hard negative (wrong). The moment is kept by its video and
-- time span, which survive reindexing (segment ids do not).
CREATE TABLE feedback (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    query      TEXT    NOT NULL,
    video_id   INTEGER  NOT NULL,
    start_ms   INTEGER  NOT NULL,
    end_ms     INTEGER  NOT NULL,
    verdict    INTEGER  NOT NULL CHECK (verdict IN (-1, 1)),
    created_ms INTEGER  NOT NULL
);
CREATE INDEX feedback_video ON feedback (video_id);
