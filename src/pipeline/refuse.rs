//! Re-fusing a video whose index is stale only for its fusion weights
//! (`kino train` installed new ones, or `kino train --rollback` an older
//! one): its segments are rebuilt from the kept visual features
//! ([`super::features`]) and its stored cues, without decoding a frame.
//!
//! In: the features file (per frame: time, pooled vector, labels) and the
//! stored cues (re-embedded by the current text encoder, which is not stale).
//! Out: the same segments a full run with the new weights would write (same
//! alignment, same tags), with the stored thumbnails, in one transaction.

use std::time::Instant;

use anyhow::anyhow;
use kino_fusion::{FusionError, SegmentInputs};
use kino_store::{NewSegment, Video};

use super::features::features_path;
use super::{mean_pooled, IndexError, IndexOutcome, Loaded, Pipeline};
use crate::staleness::{self, Ask, Stage};

impl Pipeline {
    /// Whether `video` can be re-fused from its kept features: stale for its
    /// fusion weights alone, and its features file is there.
    pub(super) fn can_refuse(&self, video: &Video, loaded: &Loaded) -> bool {
        let Some(dir) = &self.opts.features else {
            return false;
        };
        video.status == kino_store::VideoStatus::Done
            && loaded.vision.is_some()
            && staleness::stale_stage(video, &loaded.versions, Ask::default()) == Some(Stage::Fusion)
            && features_path(dir, video.id).is_file()
    }

    /// Rebuilds the video's segments from its features and stored cues.
    pub(super) fn refuse(&self, video: &Video, loaded: &Loaded, started: Instant) -> Result<IndexOutcome, IndexError> {
        let db = |e: kino_store::StoreError| IndexError::Transient(anyhow::Error::from(e));
        let engines = &loaded.engines;
        let dir = self
            .opts
            .features
            .as_ref()
            .ok_or_else(|| IndexError::Transient(anyhow!("no features folder configured")))?;
        let file = features_path(dir, video.id);
        let frames = kino_fusion::features::read_without_grids(&file)
            .map_err(|e| IndexError::Transient(anyhow!(e).context("reading the kept features")))?;

        // The stored cues, in time order, embedded again.
        let cues = self.rt.block_on(self.store.cues(video.id)).map_err(db)?;
        let timed = super::features::embed_stored_cues(&engines.text, cues)?;

        let bad = |e: FusionError| IndexError::BadInput(format!("{}: {e}", video.path));
        let mut builder = self
            .opts
            .segmenter
            .builder(video.facts.duration_ms.filter(|d| *d > 0))
            .map_err(|e| IndexError::Transient(anyhow!(e)))?;
        let mut aligned = Vec::new();
        for (i, c) in timed.iter().enumerate() {
            aligned.extend(builder.push_cue_with_index(i, c).map_err(bad)?);
        }
        aligned.extend(builder.end_cues());
        for (i, f) in frames.iter().enumerate() {
            let fv = super::features::frame_visual(f);
            aligned.extend(builder.push_frame_with_index(i, &fv).map_err(bad)?);
        }
        aligned.extend(builder.finish());

        let stored = self.rt.block_on(self.store.segments(video.id)).map_err(db)?;
        let thumbs: std::collections::HashMap<(i64, i64), Option<String>> = stored
            .into_iter()
            .map(|s| ((s.start_ms, s.end_ms), s.thumbnail))
            .collect();
        // The mean token grid of each segment, when the weights read grids.
        let grids = if engines.fusion.reads_grids() {
            let frames: Vec<Vec<usize>> = aligned.iter().map(|s| s.frame_indices.clone()).collect();
            super::features::segment_grids(&file, &frames).map_err(IndexError::Transient)?
        } else {
            vec![None; aligned.len()]
        };
        let model_version = loaded.versions.combined();
        let mut segments = Vec::with_capacity(aligned.len());
        for (seg, grid) in aligned.iter().zip(grids) {
            let labels = if seg.label_text.is_empty() {
                None
            } else {
                Some(self.embed_label(engines, &seg.label_text)?)
            };
            let pooled = mean_pooled(
                seg.frame_indices
                    .iter()
                    .filter_map(|i| frames.get(*i))
                    .map(|f| f.pooled.as_slice()),
            );
            let fused = match engines.fusion.fuse(&SegmentInputs {
                text: seg.cues.iter().map(|(i, _)| timed[*i].embedding.clone()).collect(),
                text_weights: seg.cues.iter().map(|(_, w)| *w).collect(),
                grids: grid.into_iter().collect(),
                labels,
                pooled,
            }) {
                Ok(f) => f,
                Err(FusionError::NothingToFuse) => continue,
                Err(e) => return Err(IndexError::Transient(anyhow!(e).context("fusing a segment"))),
            };
            segments.push(NewSegment {
                start_ms: seg.start_ms,
                end_ms: seg.end_ms,
                text: seg.text.clone(),
                tags: seg.tags.clone(),
                fused: fused.fused,
                text_emb: fused.text,
                visual_emb: fused.visual,
                model_version: model_version.clone(),
                thumbnail: thumbs.get(&(seg.start_ms, seg.end_ms)).cloned().flatten(),
            });
        }
        let versions = loaded.versions.recorded_for(true, video.language.as_deref());
        self.rt
            .block_on(self.store.replace_segments(video.id, &segments, &versions))
            .map_err(db)?;
        tracing::info!(
            video = %video.path,
            segments = segments.len(),
            frames = frames.len(),
            "re-fused from the kept features (no frame decoded)"
        );
        metrics::histogram!("kino_stage_seconds", "stage" => "video").record(started.elapsed().as_secs_f64());
        Ok(IndexOutcome {
            segments: segments.len(),
            frames: frames.len() as u64,
            cues: timed.len(),
            warnings: video.warnings.clone(),
            needs_vision: false,
            versions: Box::new(loaded.versions.clone()),
        })
    }
}
