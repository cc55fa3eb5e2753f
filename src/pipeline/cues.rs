//! The text inputs of a video: subtitle cues, speech cues (the speech
//! stage, [`super::speech`]), their sentence embeddings, stored as the
//! video's cues.
//!
//! In: the video, its probed facts, the models of the run. Out: the timed,
//! embedded cues (`TimedText`, in time order) and the warnings met.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::anyhow;
use kino_fusion::TimedText;
use kino_ingest::MediaInfo;
use kino_store::{CueRecord, Video};

use super::{screen, speech, IndexError, Loaded, Pipeline, Progress};
use crate::config::SpeechMode;

impl Pipeline {
    /// Reads the subtitles, runs the speech stage where it is wanted,
    /// embeds every cue and stores the cues (replacing the video's).
    /// `resume_from > 0`: a resumed job, which reuses the speech cues its
    /// first run stored. The stored on-screen text cues that start before
    /// `screen_until` are kept (a resumed job's, up to its checkpoint; a
    /// refresh's, all of them): the frames they were read from are not
    /// decoded again.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gather_cues(
        &self,
        video: &Video,
        path: &Path,
        info: &MediaInfo,
        loaded: &Loaded,
        resume_from: i64,
        screen_until: i64,
        cancel: &AtomicBool,
        progress: &dyn Fn(Progress),
    ) -> Result<(Vec<TimedText>, Vec<String>), IndexError> {
        let db = |e: kino_store::StoreError| IndexError::Transient(anyhow::Error::from(e));
        let engines = &loaded.engines;
        let cue_set = kino_ingest::subtitles::read_cues(path).map_err(|e| IndexError::BadInput(e.to_string()))?;
        let mut warnings = cue_set.warnings.clone();
        let mut cues = cue_set.cues;

        // Speech: transcribed unless off, or (auto) subtitles cover the file.
        let speech_wanted = engines.speech.as_ref().filter(|s| match s.mode {
            SpeechMode::Always => true,
            SpeechMode::Auto => !speech::subtitles_cover(&cues, info.duration_ms),
            SpeechMode::Off => false,
        });
        let mut heard_anything = false;
        if let Some(sp) = speech_wanted {
            let t = Instant::now();
            // A resumed job takes the speech cues its first run stored.
            let stored: Vec<kino_ingest::Cue> = if resume_from > 0 {
                let rows = self.rt.block_on(self.store.cues(video.id)).map_err(db)?;
                rows.into_iter()
                    .filter(|c| c.source == speech::SOURCE)
                    .map(|c| kino_ingest::Cue {
                        start_ms: c.start_ms,
                        end_ms: c.end_ms,
                        text: c.text,
                        source: c.source,
                        origin: speech::SOURCE.into(),
                        language: c.language,
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let mut speech_cues = if !stored.is_empty() {
                stored
            } else {
                let report = |ms: i64| {
                    progress(Progress {
                        video_id: video.id,
                        done_ms: ms,
                        duration_ms: info.duration_ms,
                        frames: 0,
                    })
                };
                // On the speech stage's share of the cores (see `speech_threads`).
                let pool = loaded.speech_pool.as_ref();
                let heard = speech::hear(sp, path, video.language.as_deref(), true, pool, cancel, &report)?;
                tracing::debug!(
                    video = %path.display(),
                    cues = heard.cues.len(),
                    language = heard.language.as_deref().unwrap_or("-"),
                    windows = heard.stats.windows,
                    gated_ms = heard.stats.gated_ms,
                    "speech heard"
                );
                warnings.extend(heard.warnings);
                heard.cues
            };
            heard_anything = true;
            if sp.mode == SpeechMode::Auto {
                speech_cues = speech::drop_covered(speech_cues, &cues);
            }
            cues.extend(speech_cues);
            metrics::histogram!("kino_stage_seconds", "stage" => "speech").record(t.elapsed().as_secs_f64());
        }
        if screen_until > 0 {
            let rows = self.rt.block_on(self.store.cues(video.id)).map_err(db)?;
            cues.extend(
                rows.into_iter()
                    .filter(|c| c.source == screen::SOURCE && c.start_ms < screen_until)
                    .map(|c| kino_ingest::Cue {
                        start_ms: c.start_ms,
                        end_ms: c.end_ms.min(screen_until),
                        text: c.text,
                        source: c.source,
                        origin: screen::SOURCE.into(),
                        language: c.language,
                    }),
            );
        }
        cues.sort_by_key(|c| (c.start_ms, c.end_ms));
        if !info.has_video && cues.is_empty() {
            if !heard_anything {
                let why = match &engines.speech_off_reason {
                    Some(r) => format!("speech is off: {r}"),
                    None => "subtitles cover it".into(),
                };
                return Err(IndexError::BadInput(format!(
                    "{}: no video stream and no subtitles, and {why}: nothing to index",
                    path.display()
                )));
            }
            warnings.push("no speech heard in this audio file: nothing to search in it".into());
        }
        let t = Instant::now();
        let texts: Vec<&str> = cues.iter().map(|c| c.text.as_str()).collect();
        let mut embeddings = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(64) {
            if cancel.load(Ordering::Relaxed) {
                return Err(IndexError::Cancelled);
            }
            embeddings.extend(
                engines
                    .text
                    .encode_whole(chunk)
                    .map_err(|e| anyhow!(e).context("encoding subtitles"))?,
            );
        }
        metrics::histogram!("kino_inference_seconds", "model" => "text").record(t.elapsed().as_secs_f64());
        let timed: Vec<TimedText> = cues
            .iter()
            .zip(embeddings)
            .map(|(c, e)| TimedText {
                start_ms: c.start_ms,
                end_ms: c.end_ms,
                text: c.text.clone(),
                source: c.source.clone(),
                embedding: e,
            })
            .collect();
        let records: Vec<CueRecord> = cues
            .iter()
            .map(|c| CueRecord {
                start_ms: c.start_ms,
                end_ms: c.end_ms,
                text: c.text.clone(),
                source: c.source.clone(),
                language: c.language.clone(),
            })
            .collect();
        self.rt
            .block_on(self.store.replace_cues(video.id, &records))
            .map_err(anyhow::Error::from)?;

        Ok((timed, warnings))
    }
}
