//! The kept visual features of a video: per sampled frame its pooled Swin
//! vector, its last-stage token grid (f16) and its labels, in
//! `KINO_HOME/features/<video id>.kfeat` (format: [`kino_fusion::features`]).
//!
//! `kino train` learns the fusion weights from them and a video stale only
//! for its fusion weights is re-fused from them without decoding
//! ([`super::refuse`]). The folder has a size cap (`features_max_gb`,
//! `KINO_FEATURES_MAX_GB`): a video that would go past it keeps its pooled
//! vectors only (about 1.5 KB per frame instead of 75 KB for Swin-T).
//!
//! The file is written beside its final name (`.partial`) as the frames pass
//! and renamed in place when the video's index is replaced, so a crash never
//! leaves a half-written features file under the final name.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kino_fusion::features::{FeatureShape, FeatureWriter, FrameRecord};
use kino_vision::FrameFeatures;

/// The features file of video `id` under `dir`.
pub fn features_path(dir: &Path, video_id: i64) -> PathBuf {
    dir.join(format!("{video_id}.kfeat"))
}

/// Bytes of the files in `dir` (0 when it does not exist).
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Writes one video's features as its frames pass.
pub struct FeatureSink {
    dir: PathBuf,
    video_id: i64,
    /// Bytes the folder may still take for this video before it keeps
    /// pooled vectors only.
    budget: u64,
    writer: Option<FeatureWriter>,
    /// Frames without features were seen (the vision branch missed some):
    /// the file would be incomplete and is not kept.
    incomplete: bool,
}

impl FeatureSink {
    /// A sink for video `video_id` in `dir` under a cap of `max_bytes` for
    /// the whole folder; `expected_frames` sizes the decision to keep grids.
    pub fn new(dir: &Path, video_id: i64, max_bytes: u64) -> FeatureSink {
        let final_path = features_path(dir, video_id);
        let used = dir_bytes(dir).saturating_sub(std::fs::metadata(&final_path).map(|m| m.len()).unwrap_or(0));
        FeatureSink {
            dir: dir.to_path_buf(),
            video_id,
            budget: max_bytes.saturating_sub(used),
            writer: None,
            incomplete: false,
        }
    }

    /// Adds one frame (in time order); `None`: the frame has no features.
    pub fn push(&mut self, pts_ms: i64, features: Option<&FrameFeatures>, expected_frames: u64) -> Result<()> {
        let Some(f) = features else {
            self.incomplete = true;
            return Ok(());
        };
        if self.incomplete {
            return Ok(());
        }
        if self.writer.is_none() {
            std::fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
            let full = FeatureShape {
                pooled_dim: f.pooled.len(),
                grid_tokens: f.grid_tokens,
                grid_dim: f.hidden,
            };
            // Grids only when the whole video fits under the cap with them.
            let shape = if (full.bytes_per_frame() as u64).saturating_mul(expected_frames.max(1)) <= self.budget {
                full
            } else {
                tracing::info!(
                    video = self.video_id,
                    "the features folder is near its cap (features_max_gb): keeping pooled vectors only"
                );
                full.pooled_only()
            };
            let partial = self.partial();
            self.writer = Some(FeatureWriter::create(&partial, shape)?);
        }
        let record = FrameRecord {
            pts_ms,
            pooled: f.pooled.clone(),
            grid: if self.writer.as_ref().is_some_and(|w| w.shape().has_grid()) {
                f.grid.clone()
            } else {
                Vec::new()
            },
            labels: f.labels.clone(),
        };
        if let Some(w) = self.writer.as_mut() {
            w.push(&record)?;
        }
        Ok(())
    }

    fn partial(&self) -> PathBuf {
        features_path(&self.dir, self.video_id).with_extension("kfeat.partial")
    }

    /// Puts the file in place (called when the video's index is replaced);
    /// returns whether a complete features file is kept. An incomplete one
    /// (some frames without features) is removed, with any older file.
    pub fn finish(self) -> Result<bool> {
        let final_path = features_path(&self.dir, self.video_id);
        match self.writer {
            Some(w) if !self.incomplete && w.frames() > 0 => {
                w.finish(&final_path)?;
                Ok(true)
            }
            _ => {
                let _ = std::fs::remove_file(self.partial());
                let _ = std::fs::remove_file(&final_path);
                Ok(false)
            }
        }
    }
}

/// Stored cues (`cues`, any order) embedded by `text`, in time order, as the
/// segment builder takes them (re-fusion and `kino train` read them back).
pub fn embed_stored_cues(
    text: &kino_language::SentenceEncoder,
    mut cues: Vec<kino_store::CueRecord>,
) -> Result<Vec<kino_fusion::TimedText>> {
    cues.sort_by_key(|c| (c.start_ms, c.end_ms));
    let texts: Vec<&str> = cues.iter().map(|c| c.text.as_str()).collect();
    let mut embeddings = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(64) {
        embeddings.extend(text.encode_whole(chunk).context("encoding the stored cues")?);
    }
    Ok(cues
        .into_iter()
        .zip(embeddings)
        .map(|(c, embedding)| kino_fusion::TimedText {
            start_ms: c.start_ms,
            end_ms: c.end_ms,
            text: c.text,
            source: c.source,
            embedding,
        })
        .collect())
}

/// A kept frame as the segment builder takes it (no grid: alignment needs
/// times, pooled vectors and labels).
pub fn frame_visual(record: &FrameRecord) -> kino_fusion::FrameVisual {
    kino_fusion::FrameVisual {
        pts_ms: record.pts_ms,
        pooled: record.pooled.clone(),
        grid: Vec::new(),
        grid_tokens: 0,
        hidden: 0,
        labels: record.labels.clone(),
    }
}

/// The mean token grid of each segment (`frames[k]`: the record indices of
/// segment `k`, as [`kino_fusion::features::read_without_grids`] numbers
/// them), read from the features file one grid at a time; `None` for a
/// segment none of whose frames kept a grid.
pub fn segment_grids(path: &Path, frames: &[Vec<usize>]) -> Result<Vec<Option<kino_fusion::VisualGrid>>> {
    let mut of_frame: std::collections::HashMap<usize, Vec<usize>> = std::collections::HashMap::new();
    for (k, indices) in frames.iter().enumerate() {
        for i in indices {
            of_frame.entry(*i).or_default().push(k);
        }
    }
    let mut sums: Vec<Option<(Vec<f32>, usize)>> = vec![None; frames.len()];
    let shape = kino_fusion::features::for_each_grid(path, |i, grid| {
        for k in of_frame.get(&i).into_iter().flatten() {
            match &mut sums[*k] {
                Some((sum, n)) if sum.len() == grid.len() => {
                    sum.iter_mut().zip(grid).for_each(|(a, b)| *a += b);
                    *n += 1;
                }
                Some(_) => {}
                slot @ None => *slot = Some((grid.to_vec(), 1)),
            }
        }
    })
    .with_context(|| format!("reading the grids of {}", path.display()))?;
    Ok(sums
        .into_iter()
        .map(|s| {
            s.map(|(mut sum, n)| {
                sum.iter_mut().for_each(|x| *x /= n as f32);
                kino_fusion::VisualGrid {
                    tokens: shape.grid_tokens,
                    hidden: shape.grid_dim,
                    data: sum,
                }
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_grids_are_the_means_of_their_frames_grids() {
        let dir = tempfile::tempdir().unwrap();
        let (partial, file) = (dir.path().join("1.kfeat.partial"), dir.path().join("1.kfeat"));
        let shape = FeatureShape {
            pooled_dim: 2,
            grid_tokens: 2,
            grid_dim: 3,
        };
        let mut w = FeatureWriter::create(&partial, shape).unwrap();
        for k in 0..4 {
            w.push(&FrameRecord {
                pts_ms: 1000 * k as i64,
                pooled: vec![k as f32, 0.0],
                grid: (0..6).map(|i| (k * 10 + i) as f32).collect(),
                labels: Vec::new(),
            })
            .unwrap();
        }
        w.finish(&file).unwrap();
        let grids = segment_grids(&file, &[vec![0, 1], vec![2], vec![], vec![1, 3]]).unwrap();
        let data = |g: &Option<kino_fusion::VisualGrid>| g.as_ref().map(|g| (g.tokens, g.hidden, g.data.clone()));
        assert_eq!(data(&grids[0]), Some((2, 3, vec![5.0, 6.0, 7.0, 8.0, 9.0, 10.0])));
        assert_eq!(data(&grids[1]), Some((2, 3, vec![20.0, 21.0, 22.0, 23.0, 24.0, 25.0])));
        assert_eq!(data(&grids[2]), None, "a segment without frames has no grid");
        assert_eq!(data(&grids[3]), Some((2, 3, vec![20.0, 21.0, 22.0, 23.0, 24.0, 25.0])));

        // A pooled-only file: no segment has a grid.
        let mut w = FeatureWriter::create(&partial, shape.pooled_only()).unwrap();
        w.push(&FrameRecord {
            pts_ms: 0,
            pooled: vec![1.0, 2.0],
            ..Default::default()
        })
        .unwrap();
        w.finish(&file).unwrap();
        assert_eq!(segment_grids(&file, &[vec![0]]).unwrap(), vec![None]);
    }
}
