-- Per-stage versions of what produced a video's index, as a JSON object
-- (stage name -> version: {"decode": "fps=1,side=448,seg=10000", "vision": "...",
-- "text": "...", "fusion": "..."}); a stage that did not run is absent. Written
-- in the transaction that replaces the video's segments. Rows indexed before
-- this column keep '{}' and are judged by text_model / vision_model / fusion_model.
ALTER TABLE videos ADD COLUMN stage_versions TEXT NOT NULL DEFAULT '{}';
