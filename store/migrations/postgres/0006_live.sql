-- Live index across processes, and login sessions shared by replicas.
--
-- `index_generation` is one counter. Every transaction that changes which
-- segments or documents search sees (a video indexed, re-indexed, hidden as
-- missing, shown again or deleted) increments it as its last statement and
-- appends one `index_changes` row with the new value and the video. The
-- counter's row lock orders the writers, so generations commit in order and
-- a reader that has applied everything up to G never misses a change below
-- G. On Postgres the same transaction sends NOTIFY kino_index; other
-- processes apply the changes after G and set G to the newest. Old rows are
-- pruned; a reader behind the oldest row reloads in full.
CREATE TABLE index_generation (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO index_generation (id, value) VALUES (1, 0);

CREATE TABLE index_changes (
    generation BIGINT PRIMARY KEY,
    video_id   BIGINT NOT NULL,
    at_ms      BIGINT NOT NULL
);

-- Login sessions (the web UI's cookie): the SHA-256 of the session id,
-- never the id itself, so any replica serves any logged-in user.
CREATE TABLE sessions (
    id_hash    TEXT   PRIMARY KEY,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX sessions_expiry ON sessions(expires_ms);
