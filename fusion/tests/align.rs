//! Alignment edge cases: short videos, silences, text without frames, overlapping and out-of-range cues, shot
//! snapping, bad order, and an hours-long video through the streaming builder in bounded memory.

use kino_fusion::align::{AlignedSegment, Segmenter};
use kino_fusion::{FrameVisual, FusionError, TimedText};

fn frame(pts_ms: i64, pooled: Vec<f32>, labels: &[(&str, f32)]) -> FrameVisual {
    FrameVisual {
        pts_ms,
        pooled,
        grid: vec![],
        grid_tokens: 0,
        hidden: 0,
        labels: labels.iter().map(|(n, p)| (n.to_string(), *p)).collect(),
    }
}

fn cue(start_ms: i64, end_ms: i64, text: &str) -> TimedText {
    TimedText {
        start_ms,
        end_ms,
        text: text.into(),
        source: "subtitle".into(),
        embedding: vec![],
    }
}

fn frames_every(step: i64, until: i64) -> Vec<FrameVisual> {
    (0..until / step)
        .map(|i| frame(i * step, vec![1.0, 0.0], &[]))
        .collect()
}

fn bounds(segs: &[AlignedSegment]) -> Vec<(i64, i64)> {
    segs.iter().map(|s| (s.start_ms, s.end_ms)).collect()
}

fn assert_covers(segs: &[AlignedSegment], end: i64) {
    assert_eq!(segs.first().map(|s| s.start_ms), Some(0));
    for w in segs.windows(2) {
        assert_eq!(w[0].end_ms, w[1].start_ms, "segments must tile the timeline");
    }
    assert_eq!(segs.last().map(|s| s.end_ms), Some(end));
}

#[test]
fn video_shorter_than_one_window_is_one_segment() {
    let frames = frames_every(1000, 4000);
    let segs = Segmenter::default()
        .segment(4_000, &frames, &[cue(500, 2500, "hello there")])
        .unwrap();
    assert_eq!(bounds(&segs), vec![(0, 4000)]);
    assert_eq!(segs[0].frame_indices, vec![0, 1, 2, 3]);
    assert_eq!(segs[0].cues, vec![(0, 1.0)]);
    assert_eq!(segs[0].text, "hello there");
}

#[test]
fn cue_across_a_boundary_belongs_to_both_by_overlap() {
    let frames = frames_every(1000, 30_000);
    let segs = Segmenter::default()
        .segment(
            30_000,
            &frames,
            &[cue(8_000, 12_000, "across"), cue(21_000, 22_000, "c")],
        )
        .unwrap();
    assert_eq!(bounds(&segs), vec![(0, 10_000), (10_000, 20_000), (20_000, 30_000)]);
    assert_eq!(segs[0].cues, vec![(0, 0.5)]);
    assert_eq!(segs[1].cues, vec![(0, 0.5)]);
    assert_eq!(segs[0].text, "across");
    assert_eq!(segs[1].text, "across");
    assert_eq!(segs[2].cues, vec![(1, 1.0)]);
    assert_eq!(segs[1].frame_indices, (10..20).collect::<Vec<_>>());
}

#[test]
fn a_short_tail_is_merged_into_the_last_window() {
    let segs = Segmenter::default()
        .segment(21_000, &frames_every(1000, 21_000), &[])
        .unwrap();
    assert_eq!(bounds(&segs), vec![(0, 10_000), (10_000, 21_000)]);
    let segs = Segmenter::default()
        .segment(23_000, &frames_every(1000, 23_000), &[])
        .unwrap();
    assert_eq!(bounds(&segs), vec![(0, 10_000), (10_000, 20_000), (20_000, 23_000)]);
}

#[test]
fn long_silences_give_segments_with_frames_and_no_text() {
    let frames = frames_every(1000, 60_000);
    let segs = Segmenter::default()
        .segment(60_000, &frames, &[cue(0, 5_000, "start"), cue(50_000, 55_000, "end")])
        .unwrap();
    assert_eq!(segs.len(), 6);
    assert_covers(&segs, 60_000);
    assert_eq!(segs[0].text, "start");
    assert_eq!(segs[5].text, "end");
    for s in &segs[1..5] {
        assert!(s.text.is_empty() && s.cues.is_empty());
        assert_eq!(s.frame_indices.len(), 10);
        assert!(!s.is_empty());
    }
}

#[test]
fn text_without_frames_is_segmented_from_the_cues() {
    // Unknown duration (0): the timeline ends with the last cue.
    let cues = [cue(0, 3_000, "one"), cue(25_000, 27_000, "two")];
    let segs = Segmenter::default().segment(0, &[], &cues).unwrap();
    assert_eq!(bounds(&segs), vec![(0, 10_000), (10_000, 20_000), (20_000, 27_000)]);
    assert_eq!(segs[0].text, "one");
    assert!(segs[1].is_empty(), "nothing said, nothing seen");
    assert_eq!(segs[2].text, "two");
    assert!(segs.iter().all(|s| s.frame_indices.is_empty() && s.tags.is_empty()));

    // Streaming with the vision branch off: segments come out as the cues move on, not only at the end.
    let mut b = Segmenter::default().builder(Some(40_000)).unwrap();
    assert!(b.end_frames().is_empty());
    assert!(b.push_cue(&cues[0]).unwrap().is_empty());
    let out = b.push_cue(&cues[1]).unwrap();
    assert_eq!(bounds(&out), vec![(0, 10_000), (10_000, 20_000)]);
    let rest = b.finish();
    assert_eq!(bounds(&rest), vec![(20_000, 30_000), (30_000, 40_000)]);
    assert_eq!(rest[0].text, "two");
}

#[test]
fn overlapping_and_out_of_range_cues() {
    let cues = [
        cue(-5_000, -1_000, "before the start"),
        cue(-1_000, 2_000, "clipped at zero"),
        cue(1_000, 3_000, "overlapping"),
        cue(1_500, 2_500, "said twice"),
        cue(1_600, 2_400, "said twice"),
        cue(5_000, 4_000, "end before start"),
        cue(6_000, 7_000, "   "),
        cue(19_000, 25_000, "runs past the end"),
        cue(30_000, 31_000, "after the end"),
    ];
    let frames = vec![
        frame(-40, vec![], &[]),
        frame(3_000, vec![], &[]),
        frame(25_000, vec![], &[]), // past the duration: goes to the last segment
    ];
    let segs = Segmenter::default().segment(20_000, &frames, &cues).unwrap();
    assert_eq!(bounds(&segs), vec![(0, 10_000), (10_000, 20_000)]);
    assert_eq!(segs[0].frame_indices, vec![0, 1]);
    assert_eq!(segs[1].frame_indices, vec![2]);
    assert_eq!(segs[0].cues, vec![(1, 1.0), (2, 1.0), (3, 1.0), (4, 1.0), (5, 1.0)]);
    assert_eq!(segs[0].text, "clipped at zero overlapping said twice end before start");
    assert_eq!(
        segs[1].cues,
        vec![(7, 1.0)],
        "clipped to the duration, all of what is left lies inside"
    );
    assert_eq!(segs[1].text, "runs past the end");
}

#[test]
fn shot_boundaries_cut_segments_when_snapping() {
    let mut frames = Vec::new();
    for i in 0..40 {
        let pts = i * 500;
        // Shot A until 7 s, a flash frame at 1 s (too early to cut), shot B from 7 s.
        let pooled = if pts == 1_000 || pts >= 7_000 {
            vec![0.0, 1.0]
        } else {
            vec![1.0, 0.0]
        };
        frames.push(frame(pts, pooled, &[]));
    }
    let snap = Segmenter {
        snap_to_shots: true,
        ..Segmenter::default()
    };
    let segs = snap.segment(20_000, &frames, &[]).unwrap();
    assert_eq!(bounds(&segs), vec![(0, 7_000), (7_000, 17_000), (17_000, 20_000)]);
    assert_eq!(segs[1].frame_indices.first(), Some(&14));
    let fixed = Segmenter::default().segment(20_000, &frames, &[]).unwrap();
    assert_eq!(bounds(&fixed), vec![(0, 10_000), (10_000, 20_000)]);
}

#[test]
fn frame_labels_become_segment_tags() {
    let frames = vec![
        frame(0, vec![], &[("tabby cat", 0.7), ("sofa", 0.2)]),
        frame(1_000, vec![], &[("tabby cat", 0.9)]),
        frame(12_000, vec![], &[("thunderstorm", 0.01)]),
    ];
    let segs = Segmenter::default().segment(20_000, &frames, &[]).unwrap();
    assert_eq!(segs[0].tags, vec!["tabby cat", "sofa"]);
    assert_eq!(segs[0].label_text, "tabby cat, sofa");
    assert!(segs[1].tags.is_empty(), "a label below the threshold is no tag");
}

#[test]
fn bad_order_and_bad_configuration_are_clear_errors() {
    let mut b = Segmenter::default().builder(None).unwrap();
    b.push_frame(&frame(1_000, vec![], &[])).unwrap();
    let err = b.push_frame(&frame(500, vec![], &[])).unwrap_err();
    assert!(matches!(err, FusionError::OutOfOrder { what: "frame", .. }));
    assert!(
        err.to_string().contains("frame at 500 ms arrived after one at 1000 ms"),
        "{err}"
    );
    b.push_cue(&cue(2_000, 3_000, "a")).unwrap();
    assert!(b.push_cue(&cue(1_000, 3_000, "b")).is_err());
    b.end_cues();
    assert!(matches!(
        b.push_cue(&cue(5_000, 6_000, "c")),
        Err(FusionError::Finished("cue"))
    ));
    assert!(b
        .push_frame(&frame(i64::MAX / 2, vec![], &[]))
        .unwrap_err()
        .to_string()
        .contains("limit"));

    for bad in [
        Segmenter {
            window_ms: 0,
            ..Segmenter::default()
        },
        Segmenter {
            min_segment_ms: 10_000,
            ..Segmenter::default()
        },
        Segmenter {
            shot_threshold: f32::NAN,
            ..Segmenter::default()
        },
    ] {
        let err = bad.builder(None).unwrap_err();
        assert!(matches!(err, FusionError::Config(_)), "{err}");
    }
    assert!(Segmenter::default().segment(10_000, &[], &[]).unwrap().len() == 1);
    assert!(
        Segmenter::default().segment(0, &[], &[]).unwrap().is_empty(),
        "nothing at all, no timeline"
    );
}

#[test]
fn streaming_in_any_interleaving_matches_the_batch() {
    let frames = frames_every(700, 45_000);
    let cues: Vec<TimedText> = (0..15)
        .map(|i| cue(i * 3_000, i * 3_000 + 4_500, &format!("cue {i}")))
        .collect();
    let seg = Segmenter::default();
    let batch = seg.segment(45_000, &frames, &cues).unwrap();

    // Frames first, then cues: everything waits for the cues, nothing is lost.
    let mut b = seg.builder(Some(45_000)).unwrap();
    let mut out = Vec::new();
    for f in &frames {
        out.extend(b.push_frame(f).unwrap());
    }
    assert!(out.is_empty(), "segments wait until the cues have moved past them");
    for c in &cues {
        out.extend(b.push_cue(c).unwrap());
    }
    out.extend(b.finish());
    assert_eq!(out, batch);

    // Interleaved by time.
    let mut b = seg.builder(Some(45_000)).unwrap();
    let mut out = Vec::new();
    let mut ci = 0;
    for f in &frames {
        while ci < cues.len() && cues[ci].start_ms <= f.pts_ms {
            out.extend(b.push_cue(&cues[ci]).unwrap());
            ci += 1;
        }
        out.extend(b.push_frame(f).unwrap());
    }
    for c in &cues[ci..] {
        out.extend(b.push_cue(c).unwrap());
    }
    out.extend(b.finish());
    assert_eq!(out, batch);
}

#[test]
fn hours_long_video_streams_in_bounded_memory() {
    const HOURS: i64 = 3;
    let duration = HOURS * 3_600_000;
    let seg = Segmenter {
        snap_to_shots: true,
        ..Segmenter::default()
    };
    let mut b = seg.builder(Some(duration)).unwrap();
    let pooled_a: Vec<f32> = (0..768).map(|i| (i as f32).sin()).collect();
    let mut max = (0, 0, 0);
    let mut segments: Vec<AlignedSegment> = Vec::new();
    let mut cue_weight = vec![0f32; (duration / 4_000) as usize];
    let (mut next_cue, mut frames) = (0i64, 0usize);
    let mut t = 0;
    while t < duration {
        // A cue every 4 s lasting 3 s, pushed as the timeline reaches it.
        while next_cue * 4_000 <= t {
            let c = cue(next_cue * 4_000, next_cue * 4_000 + 3_000, "some words are said here");
            segments.extend(b.push_cue(&c).unwrap());
            next_cue += 1;
        }
        let f = frame(t, pooled_a.clone(), &[("tabby cat", 0.5)]);
        segments.extend(b.push_frame(&f).unwrap());
        frames += 1;
        let now = b.buffered();
        max = (max.0.max(now.segments), max.1.max(now.cues), max.2.max(now.frames));
        t += 500;
    }
    segments.extend(b.finish());
    assert_eq!(frames, 21_600);
    assert_eq!(segments.len(), (duration / 10_000) as usize);
    assert_covers(&segments, duration);
    assert!(
        max.0 <= 2 && max.1 <= 3 && max.2 <= 20,
        "buffered (segments, cues, frames) peaked at {max:?}"
    );
    let total_frames: usize = segments.iter().map(|s| s.frame_indices.len()).sum();
    assert_eq!(total_frames, frames);
    for s in &segments {
        for &(i, w) in &s.cues {
            cue_weight[i] += w;
        }
    }
    assert!(
        cue_weight.iter().all(|w| (w - 1.0).abs() < 1e-5),
        "every cue is assigned exactly once in total"
    );
    assert_eq!(segments[100].tags, vec!["tabby cat"]);
}

#[test]
fn cues_until_moves_segments_on_between_cues_found_while_frames_pass() {
    // On-screen text is found as frames pass: cues arrive late and in
    // pieces; `cues_until` lets finished segments out meanwhile.
    let cfg = Segmenter::default();
    let mut b = cfg.builder(Some(60_000)).unwrap();
    let mut out = Vec::new();
    for i in 0..60i64 {
        out.extend(b.push_frame(&frame(i * 1000, vec![1.0, 0.0], &[])).unwrap());
        if i == 25 {
            out.extend(b.push_cue(&cue(21_000, 25_000, "slide two")).unwrap());
        }
        out.extend(b.cues_until(if i < 25 { 21_000.min(i * 1000) } else { i * 1000 }));
        // Never more than two windows wait.
        assert!(b.buffered().segments <= 2, "{:?} at {i}", b.buffered());
    }
    // A cue before the watermark is refused.
    assert!(matches!(
        b.push_cue(&cue(10_000, 12_000, "late")),
        Err(FusionError::OutOfOrder { .. })
    ));
    out.extend(b.finish());
    assert_covers(&out, 60_000);
    assert_eq!(out[2].text, "slide two");
    assert_eq!(out[2].cues, vec![(0, 1.0)]);
    assert!(out.iter().filter(|s| !s.text.is_empty()).count() == 1);
}
