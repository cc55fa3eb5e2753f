use super::*;
use crate::index::IndexedSegment;

fn seg(id: i64, video: i64, fused: Vec<f32>, text: Option<Vec<f32>>) -> IndexedSegment {
    IndexedSegment {
        segment_id: id,
        video_id: video,
        start_ms: 0,
        end_ms: 1,
        fused,
        text,
        visual: None,
    }
}

fn unit(i: usize, dim: usize) -> Vec<f32> {
    let mut v = vec![0.01; dim];
    v[i % dim] = 1.0;
    v
}

#[test]
fn shortlists_follow_videos_and_survive_a_save() {
    let dim = 8;
    let mut lists = Shortlists::new(AnnOptions::default());
    let entries: Vec<IndexedSegment> = (0..40)
        .map(|i| seg(i, i % 4, unit(i as usize, dim), (i == 3).then(|| unit(7, dim))))
        .collect();
    let views: Vec<SegmentView<'_>> = entries.iter().map(IndexedSegment::view).collect();
    lists.add(&views, 2).unwrap();
    assert_eq!(lists.len(), 40);
    // Segment 3 is found by its text vector too.
    let c = lists.candidates(&unit(7, dim), 1).unwrap();
    assert!(c.contains(&3), "{c:?}");
    // Replacing video 1 swaps its segments.
    lists
        .replace_video(1, &[seg(100, 1, unit(5, dim), None).view()])
        .unwrap();
    assert_eq!(lists.len(), 31);
    let c = lists.candidates(&unit(1, dim), 40).unwrap();
    assert!(!c.contains(&1) && !c.contains(&5) && c.contains(&100), "{c:?}");

    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().join("shortlists");
    lists.save(&at, 42).unwrap();
    lists.save(&at, 43).unwrap();
    let (loaded, generation) = Shortlists::load(&at, AnnOptions::default()).unwrap().unwrap();
    assert_eq!(generation, 43);
    assert_eq!(loaded.len(), 31);
    assert_eq!(loaded.source, "loaded");
    let mut a = loaded.candidates(&unit(2, dim), 10).unwrap();
    let mut b = lists.candidates(&unit(2, dim), 10).unwrap();
    a.sort();
    b.sort();
    assert_eq!(a, b);

    // Nothing saved: None; a damaged folder: an error naming it.
    assert!(Shortlists::load(&dir.path().join("none"), AnnOptions::default())
        .unwrap()
        .is_none());
    std::fs::write(at.join("members.bin"), b"short").unwrap();
    let err = Shortlists::load(&at, AnnOptions::default()).err().unwrap().to_string();
    assert!(err.contains("members.bin"), "{err}");
}
