//! Handing a video's cues to the segment builder in start order while
//! on-screen text is found as the frames pass (see [`super::screen`]).
//!
//! In: the subtitle and speech cues (embedded, sorted), the screen stage's
//! reads frame by frame. Out: segments the builder finished, and the
//! screen cues stored (at checkpoints and at the end).

use super::*;

/// Hands the video's cues to the segment builder in start order: the
/// subtitle and speech cues (`timed[..texts]`, sorted) and, when on-screen
/// text is read, the screen cues found as the frames pass (appended to
/// `timed` as they are found).
pub(super) struct CueFeed {
    /// The next subtitle or speech cue to hand on.
    pub(super) next: usize,
    /// How many of `timed` are subtitle or speech cues.
    pub(super) texts: usize,
    /// The on-screen text stage's cues (`None`: not read).
    pub(super) screen: Option<ScreenCues>,
    /// The embedding of the last screen text (consecutive pieces repeat it).
    pub(super) last_embedding: Option<(String, Vec<f32>)>,
    /// Screen cue records already stored.
    pub(super) stored_screen: usize,
}

impl CueFeed {
    /// Hands on the subtitle and speech cues that start before `until`.
    pub(super) fn texts_until(
        &mut self,
        builder: &mut kino_fusion::align::SegmentBuilder,
        timed: &[TimedText],
        until: i64,
    ) -> Result<Vec<AlignedSegment>, FusionError> {
        let mut done = Vec::new();
        while self.next < self.texts && timed[self.next].start_ms < until {
            done.extend(builder.push_cue_with_index(self.next, &timed[self.next])?);
            self.next += 1;
        }
        Ok(done)
    }
}

impl Pipeline {
    /// The frame at `pts_ms` passed with its screen read: the screen cues it
    /// completed go to the builder (after the text cues starting before
    /// them), and the builder learns that no cue starts before the screen
    /// stage's watermark.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn feed_screen(
        &self,
        feed: &mut CueFeed,
        builder: &mut kino_fusion::align::SegmentBuilder,
        timed: &mut Vec<TimedText>,
        state: &VideoState,
        pts_ms: i64,
        read: Option<&ScreenRead>,
    ) -> Result<Vec<AlignedSegment>, IndexError> {
        let Some(sc) = feed.screen.as_mut() else {
            return Ok(Vec::new());
        };
        let pieces = sc.frame(pts_ms, read);
        let watermark = sc.watermark();
        let mut done = Vec::new();
        for p in pieces {
            done.extend(self.push_screen_piece(feed, builder, timed, state, p)?);
        }
        let bad = |e: FusionError| IndexError::BadInput(e.to_string());
        done.extend(feed.texts_until(builder, timed, watermark).map_err(bad)?);
        done.extend(builder.cues_until(watermark));
        Ok(done)
    }

    /// Embeds one screen cue and hands it to the builder.
    pub(super) fn push_screen_piece(
        &self,
        feed: &mut CueFeed,
        builder: &mut kino_fusion::align::SegmentBuilder,
        timed: &mut Vec<TimedText>,
        state: &VideoState,
        mut piece: TimedText,
    ) -> Result<Vec<AlignedSegment>, IndexError> {
        let bad = |e: FusionError| IndexError::BadInput(e.to_string());
        let mut done = feed.texts_until(builder, timed, piece.start_ms + 1).map_err(bad)?;
        piece.embedding = match &feed.last_embedding {
            Some((text, e)) if *text == piece.text => e.clone(),
            _ => {
                let t = Instant::now();
                let e = state
                    .engines
                    .text
                    .encode_whole(&[piece.text.as_str()])
                    .map(|mut v| v.pop().unwrap_or_default())
                    .map_err(|e| IndexError::Transient(anyhow!(e).context("encoding on-screen text")))?;
                metrics::histogram!("kino_inference_seconds", "model" => "text").record(t.elapsed().as_secs_f64());
                feed.last_embedding = Some((piece.text.clone(), e.clone()));
                e
            }
        };
        timed.push(piece);
        let index = timed.len() - 1;
        done.extend(builder.push_cue_with_index(index, &timed[index]).map_err(bad)?);
        Ok(done)
    }

    /// Stores the screen cues found so far: those no later frame can
    /// extend, or all of them at the end (`all`).
    pub(super) fn store_screen_cues(&self, feed: &mut CueFeed, video_id: i64, all: bool) -> Result<(), IndexError> {
        let Some(sc) = feed.screen.as_ref() else {
            return Ok(());
        };
        let records = sc.records();
        let upto = if all {
            records.len()
        } else {
            records.len().saturating_sub(1)
        };
        if upto > feed.stored_screen {
            self.rt
                .block_on(self.store.append_cues(video_id, &records[feed.stored_screen..upto]))
                .map_err(|e| IndexError::Transient(anyhow::Error::from(e)))?;
            feed.stored_screen = upto;
        }
        Ok(())
    }
}
