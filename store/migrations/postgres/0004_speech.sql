-- Speech (and the other cue sources after it): a cue's language where known,
-- a per-video language override for speech recognition (a Whisper code such
-- as "en"; NULL: detect), and the problems met while indexing a video that
-- did not stop it (e.g. "audio stream unreadable: ..."), as a JSON array of
-- strings, rewritten by every indexing run.
ALTER TABLE cues ADD COLUMN language TEXT;
ALTER TABLE videos ADD COLUMN language TEXT;
ALTER TABLE videos ADD COLUMN warnings TEXT NOT NULL DEFAULT '[]';
