//! Visual tags: a segment's frame labels aggregated into its top tags and a label text.
//!
//! Each frame carries the vision branch's top classifier labels with probabilities. A segment's score for a
//! label is its mean probability over the segment's frames (a frame that does not list the label counts as 0), so
//! a concept seen in one frame out of ten weighs a tenth of one seen throughout. Tags are the labels whose mean
//! reaches [`TagOptions::min_score`], best first, at most [`TagOptions::top_k`]. The label text joins them with
//! `", "` ("tabby cat, sofa"); the caller embeds it with the text encoder so that a query naming the concept
//! finds the segment even when nothing is said in it.

use std::collections::HashMap;

/// How tags are chosen. The defaults: at most 3 tags with a mean probability of at least 0.05.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TagOptions {
    /// The most tags a segment keeps.
    pub top_k: usize,
    /// The least mean probability a label needs to become a tag.
    pub min_score: f32,
}

impl Default for TagOptions {
    fn default() -> Self {
        Self {
            top_k: 3,
            min_score: 0.05,
        }
    }
}

/// A segment's visual tags.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SegmentTags {
    /// Tags with their mean probability, best first.
    pub tags: Vec<(String, f32)>,
    /// The tags joined with `", "`: the text to embed for the visual-concept path. Empty when there are no tags.
    pub label_text: String,
}

impl SegmentTags {
    /// Just the tag names, best first.
    pub fn names(&self) -> Vec<String> {
        self.tags.iter().map(|(n, _)| n.clone()).collect()
    }
}

/// Accumulates frame labels one frame at a time (memory: one entry per distinct label).
#[derive(Debug, Clone, Default)]
pub struct LabelAccumulator {
    sums: HashMap<String, f32>,
    frames: usize,
}

impl LabelAccumulator {
    /// Adds one frame's labels. A label listed twice for one frame counts once (its highest probability).
    pub fn add(&mut self, labels: &[(String, f32)]) {
        self.frames += 1;
        let mut seen: HashMap<&str, f32> = HashMap::new();
        for (name, p) in labels {
            let name = name.trim();
            if name.is_empty() || !p.is_finite() || *p <= 0.0 {
                continue;
            }
            let e = seen.entry(name).or_insert(0.0);
            *e = e.max(p.min(1.0));
        }
        for (name, p) in seen {
            *self.sums.entry(name.to_string()).or_insert(0.0) += p;
        }
    }

    /// Number of frames added.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The tags under `opts`.
    pub fn finish(&self, opts: &TagOptions) -> SegmentTags {
        if self.frames == 0 {
            return SegmentTags::default();
        }
        let n = self.frames as f32;
        let mut scored: Vec<(String, f32)> = self
            .sums
            .iter()
            .map(|(k, s)| (k.clone(), s / n))
            .filter(|(_, m)| *m >= opts.min_score)
            .collect();
        // Best first; ties by name so the result does not depend on hash order.
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        scored.truncate(opts.top_k);
        let label_text = scored.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ");
        SegmentTags {
            tags: scored,
            label_text,
        }
    }
}

/// Aggregates the labels of `frames` (each a list of `(label, probability)`) into tags.
pub fn aggregate<'a, I>(frames: I, opts: &TagOptions) -> SegmentTags
where
    I: IntoIterator<Item = &'a [(String, f32)]>,
{
    let mut acc = LabelAccumulator::default();
    for labels in frames {
        acc.add(labels);
    }
    acc.finish(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, f32)]) -> Vec<(String, f32)> {
        pairs.iter().map(|(n, p)| (n.to_string(), *p)).collect()
    }

    #[test]
    fn mean_over_frames_ranks_persistent_concepts_first() {
        let f1 = l(&[("tabby cat", 0.8), ("sofa", 0.1)]);
        let f2 = l(&[("tabby cat", 0.6), ("sofa", 0.3)]);
        let f3 = l(&[("television", 0.9)]);
        let tags = aggregate([f1.as_slice(), f2.as_slice(), f3.as_slice()], &TagOptions::default());
        let names = tags.names();
        assert_eq!(names, vec!["tabby cat", "television", "sofa"]);
        assert!((tags.tags[0].1 - 1.4 / 3.0).abs() < 1e-6);
        assert_eq!(tags.label_text, "tabby cat, television, sofa");
    }

    #[test]
    fn threshold_top_k_and_bad_values() {
        let f = l(&[
            ("a", 0.5),
            ("b", 0.04),
            ("c", f32::NAN),
            ("", 0.9),
            ("a", 0.7),
            ("d", 0.2),
            ("e", 0.3),
        ]);
        let tags = aggregate(
            [f.as_slice()],
            &TagOptions {
                top_k: 2,
                min_score: 0.05,
            },
        );
        assert_eq!(tags.names(), vec!["a", "e"]);
        assert!(
            (tags.tags[0].1 - 0.7).abs() < 1e-6,
            "duplicate label counts once, at its best"
        );
        let none = aggregate(std::iter::empty::<&[(String, f32)]>(), &TagOptions::default());
        assert!(none.tags.is_empty() && none.label_text.is_empty());
    }
}
