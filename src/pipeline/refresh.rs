//! Refreshing a video whose index is stale only for speech (a speech model
//! arrived, or `speech` changed): the speech stage and the text after it
//! run again, and the segments are re-fused from what is stored, without
//! decoding or seeing a single frame.
//!
//! In: the video's stored segments (their spans, tags, visual vectors and
//! thumbnails) and its file's audio and subtitles. Out: the same segment
//! spans (plus any new ones where speech now gives text), re-fused, written
//! in one transaction with the new stage versions.
//!
//! This equals a full run when the segments are fixed windows (no snapping
//! to shots) and fusion reads no token grids (the default weights): the
//! stored visual vector is then exactly the label embedding a full run
//! would compute again. Otherwise the whole video is indexed again.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::anyhow;
use kino_fusion::{AlignedSegment, FusionError, SegmentInputs};
use kino_ingest::MediaInfo;
use kino_store::{NewSegment, Video};

use super::{IndexError, IndexOutcome, Loaded, Pipeline, Progress};
use crate::staleness;

impl Pipeline {
    /// Whether `video` can be refreshed for speech alone with these models.
    pub(super) fn can_refresh_speech(&self, video: &Video, loaded: &Loaded) -> bool {
        video.status == kino_store::VideoStatus::Done
            && !self.opts.segmenter.snap_to_shots
            && !loaded.engines.fusion.reads_grids()
            && !loaded.engines.fusion.reads_pooled()
            && staleness::only_speech_stale(video, &loaded.versions)
    }

    /// Runs the speech stage and re-fuses the stored segments (see the
    /// module documentation).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn refresh_speech(
        &self,
        video: &Video,
        path: &Path,
        info: &MediaInfo,
        loaded: &Loaded,
        cancel: &AtomicBool,
        progress: &dyn Fn(Progress),
        started: Instant,
    ) -> Result<IndexOutcome, IndexError> {
        let db = |e: kino_store::StoreError| IndexError::Transient(anyhow::Error::from(e));
        let engines = &loaded.engines;
        let stored = self.rt.block_on(self.store.segments(video.id)).map_err(db)?;
        let (timed, warnings) = self.gather_cues(video, path, info, loaded, 0, i64::MAX, cancel, progress)?;

        let bad = |e: FusionError| IndexError::BadInput(format!("{}: {e}", path.display()));
        let mut builder = self.opts.segmenter.builder(Some(info.duration_ms)).map_err(bad)?;
        let mut aligned: Vec<AlignedSegment> = Vec::new();
        for c in &timed {
            aligned.extend(builder.push_cue(c).map_err(bad)?);
        }
        aligned.extend(builder.end_cues());
        aligned.extend(builder.finish());

        let old: HashMap<(i64, i64), &kino_store::Segment> =
            stored.iter().map(|s| ((s.start_ms, s.end_ms), s)).collect();
        let model_version = loaded.versions.combined();
        let mut segments = Vec::new();
        for seg in &aligned {
            if cancel.load(Ordering::Relaxed) {
                return Err(IndexError::Cancelled);
            }
            let before = old.get(&(seg.start_ms, seg.end_ms));
            let inputs = SegmentInputs {
                text: seg.cues.iter().map(|(i, _)| timed[*i].embedding.clone()).collect(),
                text_weights: seg.cues.iter().map(|(_, w)| *w).collect(),
                grids: Vec::new(),
                labels: before.and_then(|s| s.visual_emb.clone()),
                pooled: None,
            };
            let fused = match engines.fusion.fuse(&inputs) {
                Ok(f) => f,
                Err(FusionError::NothingToFuse) => continue,
                Err(e) => return Err(IndexError::Transient(anyhow!(e).context("fusing a segment"))),
            };
            segments.push(NewSegment {
                start_ms: seg.start_ms,
                end_ms: seg.end_ms,
                text: seg.text.clone(),
                tags: before.map(|s| s.tags.clone()).unwrap_or_default(),
                fused: fused.fused,
                text_emb: fused.text,
                visual_emb: fused.visual,
                model_version: model_version.clone(),
                thumbnail: before.and_then(|s| s.thumbnail.clone()),
            });
        }
        let vision_ran = video.stage_versions.contains_key("vision");
        let versions = loaded.versions.recorded_for(vision_ran, video.language.as_deref());
        let document = self.document_of(video.id, &engines.text)?;
        self.rt
            .block_on(
                self.store
                    .replace_segments_and_document(video.id, &segments, &versions, document.as_ref()),
            )
            .map_err(db)?;
        for w in &warnings {
            tracing::warn!(video = %path.display(), "{w}");
        }
        self.rt
            .block_on(self.store.set_video_warnings(video.id, &warnings))
            .map_err(db)?;
        tracing::info!(
            video = %path.display(),
            segments = segments.len(),
            cues = timed.len(),
            "speech refreshed from the stored index (no frame decoded)"
        );
        metrics::histogram!("kino_stage_seconds", "stage" => "video").record(started.elapsed().as_secs_f64());
        Ok(IndexOutcome {
            segments: segments.len(),
            frames: 0,
            cues: timed.len(),
            warnings,
            needs_vision: !vision_ran,
            versions: Box::new(loaded.versions.clone()),
        })
    }
}
