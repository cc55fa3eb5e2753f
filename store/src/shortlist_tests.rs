use super::*;
use crate::index::IndexedSegment;

/// A test's outcome: an error fails it, naming what went wrong.
type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

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
fn shortlists_follow_videos_and_survive_a_save() -> TestResult {
    let dim = 8;
    let mut lists = Shortlists::new(AnnOptions::default(), Mix::default());
    let entries: Vec<IndexedSegment> = (0..40)
        .map(|i| seg(i, i % 4, unit(i as usize, dim), (i == 3).then(|| unit(7, dim))))
        .collect();
    let views: Vec<SegmentView<'_>> = entries.iter().map(IndexedSegment::view).collect();
    lists.add(&views, 2)?;
    assert_eq!(lists.len(), 40);
    // Segment 3 is found by its text vector too: after the five segments
    // whose only vector is the query, and before those with nothing like it.
    let c = lists.candidates(&unit(7, dim), 6)?;
    assert_eq!(c.len(), 6);
    assert!(c.contains(&3), "{c:?}");
    assert!(!lists.candidates(&unit(7, dim), 5)?.contains(&3));
    // Replacing video 1 swaps its segments.
    lists.replace_video(1, &[seg(100, 1, unit(5, dim), None).view()])?;
    assert_eq!(lists.len(), 31);
    let c = lists.candidates(&unit(1, dim), 40)?;
    assert!(!c.contains(&1) && !c.contains(&5) && c.contains(&100), "{c:?}");

    let dir = tempfile::tempdir()?;
    let at = dir.path().join("shortlists");
    lists.save(&at, 42)?;
    lists.save(&at, 43)?;
    let (loaded, generation) =
        Shortlists::load(&at, AnnOptions::default(), Mix::default())?.ok_or("nothing loaded from the saved folder")?;
    assert_eq!(generation, 43);
    assert_eq!(loaded.len(), 31);
    assert_eq!(loaded.source, "loaded");
    let mut a = loaded.candidates(&unit(2, dim), 10)?;
    let mut b = lists.candidates(&unit(2, dim), 10)?;
    a.sort();
    b.sort();
    assert_eq!(a, b);

    // Nothing saved: None; a damaged folder: an error naming it.
    assert!(Shortlists::load(&dir.path().join("none"), AnnOptions::default(), Mix::default())?.is_none());
    // Made with another mix: not used (it would shortlist for another score).
    let other = Mix {
        fused: 1.0,
        ..Mix::default()
    };
    let err = Shortlists::load(&at, AnnOptions::default(), other)
        .err()
        .ok_or("a folder made with another mix was loaded")?
        .to_string();
    assert!(err.contains("mix"), "{err}");
    std::fs::write(at.join("members.bin"), b"short")?;
    let err = Shortlists::load(&at, AnnOptions::default(), Mix::default())
        .err()
        .ok_or("a damaged folder was loaded")?
        .to_string();
    assert!(err.contains("members.bin"), "{err}");
    Ok(())
}

#[test]
fn a_mixed_vector_scores_as_search_does() -> TestResult {
    // Search's score: the weighted mean of the cosine similarities a
    // segment has (a vector of zeros counts as 0, a side it lacks not at all).
    let cos = |a: &[f32], b: &[f32]| {
        let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let d: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        if n(b) == 0.0 {
            0.0
        } else {
            d / (n(a) * n(b))
        }
    };
    let mix = Mix::default();
    let q: Vec<f32> = (0..6).map(|i| (i as f32 - 2.5) / 4.0).collect();
    let qn: f32 = q.iter().map(|x| x * x).sum::<f32>().sqrt();
    let q: Vec<f32> = q.iter().map(|x| x / qn).collect();
    let f = vec![0.3, -1.0, 2.0, 0.5, 0.0, 1.0];
    let t = vec![2.0, 1.0, -0.5, 0.0, 3.0, -1.0];
    let v = vec![-1.0, 0.2, 0.2, 0.7, 1.0, 0.1];
    let zeros = vec![0.0; 6];
    // (fused, text, visual, search's score)
    type Case = (Vec<f32>, Option<Vec<f32>>, Option<Vec<f32>>, f32);
    let cases: Vec<Case> = vec![
        (
            f.clone(),
            Some(t.clone()),
            Some(v.clone()),
            0.5 * cos(&q, &f) + 0.3 * cos(&q, &t) + 0.2 * cos(&q, &v),
        ),
        (
            f.clone(),
            None,
            Some(v.clone()),
            (0.5 * cos(&q, &f) + 0.2 * cos(&q, &v)) / 0.7,
        ),
        (vec![], Some(t.clone()), None, cos(&q, &t)),
        (f.clone(), Some(zeros.clone()), None, 0.5 * cos(&q, &f) / 0.8),
        // A side of another length does not count.
        (f.clone(), Some(vec![1.0; 4]), None, cos(&q, &f)),
    ];
    for (i, (fused, text, visual, want)) in cases.into_iter().enumerate() {
        let e = IndexedSegment {
            segment_id: i as i64,
            video_id: 1,
            start_ms: 0,
            end_ms: 1,
            fused,
            text,
            visual,
        };
        let m = mix.of(&e.view(), None).ok_or(format!("case {i}: nothing mixed"))?;
        let got: f32 = q.iter().zip(&m).map(|(a, b)| a * b).sum();
        assert!((got - want).abs() < 1e-5, "case {i}: {got} against {want}");
        // Lifted to unit length: the query's cosine with it is the score.
        let l = lifted(m);
        let norm: f32 = l.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "case {i}: |lifted| {norm}");
        let cosine: f32 = q.iter().chain([&0.0]).zip(&l).map(|(a, b)| a * b).sum();
        assert!((cosine - want).abs() < 1e-5, "case {i}: cosine {cosine} against {want}");
    }
    // Nothing to mix.
    let e = seg(9, 1, vec![], None);
    assert!(mix.of(&e.view(), None).is_none());
    let e = seg(9, 1, zeros.clone(), Some(zeros));
    assert!(mix.of(&e.view(), None).is_none());
    Ok(())
}
