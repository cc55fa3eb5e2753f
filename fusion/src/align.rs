//! Time alignment: cutting a video's timeline into segments and assigning frames and cues to them.
//!
//! Segments cover the timeline without gaps: fixed windows of [`Segmenter::window_ms`] by default. With
//! [`Segmenter::snap_to_shots`], a shot boundary (consecutive frames whose pooled embeddings differ by more than
//! [`Segmenter::shot_threshold`] in cosine distance) ends the current segment early, so segments follow the
//! video's cuts; a window never grows past `window_ms`, and a boundary closer than [`Segmenter::min_segment_ms`]
//! to the segment's start is ignored. When the duration is known, a last window shorter than `min_segment_ms` is
//! merged into the one before it.
//!
//! A frame belongs to the segment that contains its timestamp. A cue belongs to every segment it overlaps, with
//! the weight `overlap / cue length` (so a cue across a boundary is in both segments and its weights add up to 1);
//! a cue with no length belongs to the segment containing its start, with weight 1.
//!
//! Edge cases, all handled without errors:
//! * a video shorter than one window gives one segment covering it;
//! * silences give segments with frames but no text; stretches with neither still give (empty) segments, so the
//!   timeline stays covered ([`AlignedSegment::is_empty`] lets a caller skip them);
//! * text without frames (audio only, or the vision branch off): segments are cut from the cues alone;
//! * overlapping cues are all kept (a cue repeated verbatim in a row appears once in the text); cues partly
//!   outside `[0, duration)` are clipped, wholly outside ones dropped; a cue whose end is before its start is
//!   taken as a point in time; frames past the duration go to the last segment, negative times count as 0.
//!
//! [`SegmentBuilder`] does this incrementally: frames and cues arrive in time order (each stream on its own) and
//! finished segments come out as soon as neither stream can add to them any more. It keeps only the open
//! segment, the segments waiting for cues, the cues that may still touch a later segment and one pooled vector,
//! so memory does not grow with the video's length.

use std::collections::VecDeque;

use crate::tags::{LabelAccumulator, SegmentTags, TagOptions};
use crate::vecmath::cosine;
use crate::{FrameVisual, FusionError, TimedText};

/// Timestamps beyond this (100 hours) are taken as corrupt rather than cut into millions of empty segments.
pub const MAX_TIMELINE_MS: i64 = 100 * 3600 * 1000;

/// How the timeline is cut. `Segmenter::default()`: 10 s windows, no shot snapping, shot threshold 0.25 (cosine
/// distance), segments at least 2 s, tags as in [`TagOptions::default`].
#[derive(Debug, Clone, PartialEq)]
pub struct Segmenter {
    /// Length of a window, in ms (the longest a segment gets).
    pub window_ms: i64,
    /// End segments at detected shot boundaries too.
    pub snap_to_shots: bool,
    /// Cosine distance between consecutive frames' pooled embeddings above which a shot boundary is declared.
    pub shot_threshold: f32,
    /// Shortest segment that a shot boundary (or a short tail) may create, in ms.
    pub min_segment_ms: i64,
    /// How frame labels become tags.
    pub tags: TagOptions,
}

impl Default for Segmenter {
    fn default() -> Self {
        Self {
            window_ms: 10_000,
            snap_to_shots: false,
            shot_threshold: 0.25,
            min_segment_ms: 2_000,
            tags: TagOptions::default(),
        }
    }
}

/// One segment of a video's timeline with what falls into it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlignedSegment {
    /// Start, in ms (inclusive).
    pub start_ms: i64,
    /// End, in ms (exclusive).
    pub end_ms: i64,
    /// Indices of the frames in it (the order the caller pushed them, or their index in the batch slice).
    pub frame_indices: Vec<usize>,
    /// Indices of the cues overlapping it with the share of each cue that lies inside, in cue order.
    pub cues: Vec<(usize, f32)>,
    /// The cues' text, in order, whitespace collapsed.
    pub text: String,
    /// Top visual tags, best first.
    pub tags: Vec<String>,
    /// The tags as one text to embed ("tabby cat, sofa"); empty without tags.
    pub label_text: String,
}

impl AlignedSegment {
    /// True when neither frames nor text fall into the segment.
    pub fn is_empty(&self) -> bool {
        self.frame_indices.is_empty() && self.cues.is_empty()
    }

    /// Length in ms.
    pub fn duration_ms(&self) -> i64 {
        self.end_ms - self.start_ms
    }
}

impl Segmenter {
    /// Checks that the values make sense.
    pub fn validate(&self) -> Result<(), FusionError> {
        if self.window_ms < 100 {
            return Err(FusionError::Config(format!(
                "window_ms must be at least 100, got {}",
                self.window_ms
            )));
        }
        if self.min_segment_ms < 0 || self.min_segment_ms >= self.window_ms {
            return Err(FusionError::Config(format!(
                "min_segment_ms must be in [0, window_ms = {}), got {}",
                self.window_ms, self.min_segment_ms
            )));
        }
        if !(self.shot_threshold > 0.0 && self.shot_threshold <= 2.0) {
            return Err(FusionError::Config(format!(
                "shot_threshold must be in (0, 2] (a cosine distance), got {}",
                self.shot_threshold
            )));
        }
        Ok(())
    }

    /// A streaming builder for one video. `duration_ms`: the video's duration when known (`None` or a value
    /// `<= 0` when not: the timeline then ends with the last frame or cue).
    pub fn builder(&self, duration_ms: Option<i64>) -> Result<SegmentBuilder, FusionError> {
        SegmentBuilder::new(self.clone(), duration_ms)
    }

    /// Segments a whole video at once. `duration_ms <= 0` means unknown. Frames and cues may come in any order;
    /// indices in the result refer to positions in `frames` and `cues`.
    pub fn segment(
        &self,
        duration_ms: i64,
        frames: &[FrameVisual],
        cues: &[TimedText],
    ) -> Result<Vec<AlignedSegment>, FusionError> {
        let mut b = self.builder(Some(duration_ms))?;
        let mut cue_order: Vec<usize> = (0..cues.len()).collect();
        cue_order.sort_by_key(|&i| cues[i].start_ms);
        let mut frame_order: Vec<usize> = (0..frames.len()).collect();
        frame_order.sort_by_key(|&i| frames[i].pts_ms);
        let mut out = Vec::new();
        for i in cue_order {
            out.extend(b.push_cue_with_index(i, &cues[i])?);
        }
        out.extend(b.end_cues());
        for i in frame_order {
            out.extend(b.push_frame_with_index(i, &frames[i])?);
        }
        out.extend(b.finish());
        Ok(out)
    }
}

#[derive(Debug)]
struct Open {
    start: i64,
    end: i64,
    frames: Vec<usize>,
    labels: LabelAccumulator,
}

#[derive(Debug)]
struct Closed {
    start: i64,
    end: i64,
    frames: Vec<usize>,
    tags: SegmentTags,
}

#[derive(Debug)]
struct PendingCue {
    index: usize,
    start: i64,
    end: i64,
    text: String,
}

impl PendingCue {
    fn is_point(&self) -> bool {
        self.end <= self.start
    }

    /// Share of the cue inside `[s, e)`.
    fn weight_in(&self, s: i64, e: i64) -> f32 {
        if self.is_point() {
            return if self.start >= s && self.start < e { 1.0 } else { 0.0 };
        }
        let overlap = e.min(self.end) - s.max(self.start);
        if overlap > 0 {
            overlap as f32 / (self.end - self.start) as f32
        } else {
            0.0
        }
    }

    /// Whether the cue can still touch a segment starting at `e`.
    fn reaches_past(&self, e: i64) -> bool {
        if self.is_point() {
            self.start >= e
        } else {
            self.end > e
        }
    }
}

/// How much a [`SegmentBuilder`] holds right now (for tests and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffered {
    /// Segments whose boundaries are fixed but which may still receive cues.
    pub segments: usize,
    /// Cues kept because a later segment may still overlap them.
    pub cues: usize,
    /// Frames in the open segment.
    pub frames: usize,
}

/// Builds one video's segments incrementally, in bounded memory.
///
/// Push frames with [`push_frame`](Self::push_frame) in time order and cues with [`push_cue`](Self::push_cue) in
/// start order; the two streams may be interleaved in any way. Every push returns the segments it finished. A
/// segment is finished when frames have moved past its end (or [`end_frames`](Self::end_frames) was called) and
/// cues have moved past it (or [`end_cues`](Self::end_cues) was called): call `end_cues` as soon as a video has no
/// more text (for example right after pushing its subtitle file), or segments wait for [`finish`](Self::finish).
/// `finish` returns the rest, up to the duration.
#[derive(Debug)]
pub struct SegmentBuilder {
    cfg: Segmenter,
    duration: Option<i64>,
    open: Open,
    closed: VecDeque<Closed>,
    cues: Vec<PendingCue>,
    prev_pooled: Vec<f32>,
    last_frame_pts: Option<i64>,
    frame_interval: i64,
    cue_watermark: Option<i64>,
    timeline_end: i64,
    frames_done: bool,
    cues_done: bool,
    next_frame_index: usize,
    next_cue_index: usize,
}

impl SegmentBuilder {
    /// A builder with `cfg` for a video of `duration_ms` (`None` or `<= 0` when unknown).
    pub fn new(cfg: Segmenter, duration_ms: Option<i64>) -> Result<Self, FusionError> {
        cfg.validate()?;
        let duration = duration_ms.filter(|d| *d > 0).map(|d| d.min(MAX_TIMELINE_MS));
        let mut b = Self {
            cfg,
            duration,
            open: Open {
                start: 0,
                end: 0,
                frames: Vec::new(),
                labels: LabelAccumulator::default(),
            },
            closed: VecDeque::new(),
            cues: Vec::new(),
            prev_pooled: Vec::new(),
            last_frame_pts: None,
            frame_interval: 0,
            cue_watermark: None,
            timeline_end: 0,
            frames_done: false,
            cues_done: false,
            next_frame_index: 0,
            next_cue_index: 0,
        };
        b.open.end = b.window_end(0);
        Ok(b)
    }

    /// What the builder holds right now.
    pub fn buffered(&self) -> Buffered {
        Buffered {
            segments: self.closed.len(),
            cues: self.cues.len(),
            frames: self.open.frames.len(),
        }
    }

    fn window_end(&self, start: i64) -> i64 {
        let mut end = start + self.cfg.window_ms;
        if let Some(d) = self.duration {
            if end >= d || d - end < self.cfg.min_segment_ms {
                end = d;
            }
        }
        end
    }

    fn close_open_at(&mut self, at: i64) {
        let next = Open {
            start: at,
            end: self.window_end(at),
            frames: Vec::new(),
            labels: LabelAccumulator::default(),
        };
        let open = std::mem::replace(&mut self.open, next);
        let tags = open.labels.finish(&self.cfg.tags);
        self.closed.push_back(Closed {
            start: open.start,
            end: at,
            frames: open.frames,
            tags,
        });
    }

    fn check_time(what: &'static str, at: i64) -> Result<(), FusionError> {
        if at > MAX_TIMELINE_MS {
            return Err(FusionError::Config(format!(
                "{what} at {at} ms lies beyond the {} h limit of a timeline",
                MAX_TIMELINE_MS / 3_600_000
            )));
        }
        Ok(())
    }

    /// Pushes the next frame, numbering it after the previous one.
    pub fn push_frame(&mut self, frame: &FrameVisual) -> Result<Vec<AlignedSegment>, FusionError> {
        self.push_frame_with_index(self.next_frame_index, frame)
    }

    /// Pushes a frame under the caller's `index`. Frames must come in time order.
    pub fn push_frame_with_index(
        &mut self,
        index: usize,
        frame: &FrameVisual,
    ) -> Result<Vec<AlignedSegment>, FusionError> {
        if self.frames_done {
            return Err(FusionError::Finished("frame"));
        }
        Self::check_time("frame", frame.pts_ms)?;
        let mut pts = frame.pts_ms.max(0);
        if let Some(d) = self.duration {
            pts = pts.min(d - 1);
        }
        if let Some(last) = self.last_frame_pts {
            if pts < last {
                return Err(FusionError::OutOfOrder {
                    what: "frame",
                    at_ms: pts,
                    previous_ms: last,
                });
            }
            if pts > last {
                self.frame_interval = pts - last;
            }
        }
        if self.cfg.snap_to_shots
            && !frame.pooled.is_empty()
            && self.prev_pooled.len() == frame.pooled.len()
            && pts < self.open.end
            && pts - self.open.start >= self.cfg.min_segment_ms
            && 1.0 - cosine(&self.prev_pooled, &frame.pooled) > self.cfg.shot_threshold
        {
            self.close_open_at(pts);
        }
        while pts >= self.open.end {
            self.close_open_at(self.open.end);
        }
        self.open.frames.push(index);
        self.open.labels.add(&frame.labels);
        if self.cfg.snap_to_shots {
            self.prev_pooled.clear();
            self.prev_pooled.extend_from_slice(&frame.pooled);
        }
        self.last_frame_pts = Some(pts);
        self.timeline_end = self.timeline_end.max(pts + 1);
        self.next_frame_index = index + 1;
        Ok(self.drain())
    }

    /// Pushes the next cue, numbering it after the previous one.
    pub fn push_cue(&mut self, cue: &TimedText) -> Result<Vec<AlignedSegment>, FusionError> {
        self.push_cue_with_index(self.next_cue_index, cue)
    }

    /// Pushes a cue under the caller's `index`. Cues must come in order of their start.
    pub fn push_cue_with_index(&mut self, index: usize, cue: &TimedText) -> Result<Vec<AlignedSegment>, FusionError> {
        if self.cues_done {
            return Err(FusionError::Finished("cue"));
        }
        Self::check_time("cue", cue.start_ms)?;
        if let Some(w) = self.cue_watermark {
            if cue.start_ms < w {
                return Err(FusionError::OutOfOrder {
                    what: "cue",
                    at_ms: cue.start_ms,
                    previous_ms: w,
                });
            }
        }
        self.cue_watermark = Some(cue.start_ms);
        self.next_cue_index = index + 1;
        let point = cue.end_ms <= cue.start_ms;
        let start = cue.start_ms.max(0);
        let mut end = if point { start } else { cue.end_ms.min(MAX_TIMELINE_MS) };
        if let Some(d) = self.duration {
            end = end.min(d);
        }
        let inside = match self.duration {
            Some(d) if start >= d => false,
            _ if point => cue.start_ms >= 0,
            _ => end > start,
        };
        let text = collapse_whitespace(&cue.text);
        if inside && !text.is_empty() {
            self.timeline_end = self.timeline_end.max(if point { start + 1 } else { end });
            self.cues.push(PendingCue {
                index,
                start,
                end,
                text,
            });
        }
        Ok(self.drain())
    }

    /// Declares that no cue pushed from now on starts before `ms` (a stream
    /// of cues found while frames pass, such as on-screen text, moves the
    /// segments on this way between its cues). Returns the segments this
    /// finished.
    pub fn cues_until(&mut self, ms: i64) -> Vec<AlignedSegment> {
        if !self.cues_done && self.cue_watermark.is_none_or(|w| ms > w) {
            self.cue_watermark = Some(ms);
        }
        self.drain()
    }

    /// Declares that no more frames will come (audio-only video, vision branch off, or decoding done).
    pub fn end_frames(&mut self) -> Vec<AlignedSegment> {
        self.frames_done = true;
        self.drain()
    }

    /// Declares that no more cues will come.
    pub fn end_cues(&mut self) -> Vec<AlignedSegment> {
        self.cues_done = true;
        self.drain()
    }

    /// Ends both streams and returns the remaining segments, up to the duration (or, when it is unknown, up to the
    /// last frame or cue).
    pub fn finish(mut self) -> Vec<AlignedSegment> {
        let end = match self.duration {
            Some(d) => d,
            None => {
                let after_frames = self.last_frame_pts.map_or(0, |p| p + self.frame_interval.max(1));
                self.timeline_end.max(after_frames)
            }
        };
        if end > 0 {
            while self.open.end < end {
                self.close_open_at(self.open.end);
            }
            if self.open.start < end {
                self.close_open_at(end);
            }
        }
        self.frames_done = true;
        self.cues_done = true;
        self.drain()
    }

    fn drain(&mut self) -> Vec<AlignedSegment> {
        // Without frames, boundaries are fixed windows: close them as the cues move on.
        if self.frames_done && !self.cues_done {
            if let Some(w) = self.cue_watermark {
                let limit = self.duration.unwrap_or(i64::MAX);
                while self.open.end <= w && self.open.end < limit {
                    self.close_open_at(self.open.end);
                }
            }
        }
        let mut out = Vec::new();
        while let Some(front) = self.closed.front() {
            let ready = self.cues_done || self.cue_watermark.is_some_and(|w| w >= front.end);
            if !ready {
                break;
            }
            let c = self.closed.pop_front().expect("front exists");
            out.push(self.emit(c));
        }
        out
    }

    fn emit(&mut self, c: Closed) -> AlignedSegment {
        let mut cues = Vec::new();
        let mut text = String::new();
        let mut last_text: Option<&str> = None;
        for cue in &self.cues {
            if cue.start >= c.end {
                break;
            }
            let w = cue.weight_in(c.start, c.end);
            if w <= 0.0 {
                continue;
            }
            cues.push((cue.index, w));
            if last_text != Some(cue.text.as_str()) {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(&cue.text);
            }
            last_text = Some(cue.text.as_str());
        }
        self.cues.retain(|cue| cue.reaches_past(c.end));
        AlignedSegment {
            start_ms: c.start,
            end_ms: c.end,
            frame_indices: c.frames,
            cues,
            text,
            tags: c.tags.names(),
            label_text: c.tags.label_text,
        }
    }
}

fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
