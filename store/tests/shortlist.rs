//! Approximate shortlists on a real store (Postgres and SQLite): built in
//! the background while search stays exact, close to exact once in use,
//! kept in step with another process's writes, saved, and loaded again
//! on restart (caught up from the change log), rebuilt when damaged.

use std::path::Path;
use std::time::{Duration, Instant};

use kino_store::{dot, Backend, IndexVersions, Mix, SearchHit, ShortlistConfig, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

mod common;
use common::*;

const DIM: usize = 32;
const VIDEOS: usize = 30;
const PER_VIDEO: usize = 60;

fn versions() -> IndexVersions {
    IndexVersions::default().with("text", "t1")
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    kino_store::normalize_vector(&mut v);
    v
}

/// A vector near one of 12 cluster centres.
fn clustered(rng: &mut StdRng, centres: &[Vec<f32>]) -> Vec<f32> {
    let c = &centres[rng.gen_range(0..centres.len())];
    unit(c.iter().map(|x| x + rng.gen_range(-0.35..0.35)).collect())
}

fn config(dir: &Path, min_segments: usize) -> ShortlistConfig {
    ShortlistConfig {
        min_segments,
        threads: 2,
        dir: Some(dir.to_path_buf()),
        ..ShortlistConfig::default()
    }
}

/// Search's score (the vectors here are unit length): the weighted mean of
/// the similarities a segment has, weighed as the shortlists mix them.
fn scorer(q: &[f32]) -> impl FnMut(&kino_store::SegmentView<'_>) -> Option<f32> + '_ {
    let w = Mix::default();
    move |e| {
        let sides = [(Some(e.fused), w.fused), (e.text, w.text), (e.visual, w.visual)];
        let (sum, total) = sides
            .iter()
            .filter_map(|(v, w)| v.map(|v| (w * dot(v, q), *w)))
            .fold((0.0, 0.0), |(s, t), (x, w)| (s + x, t + w));
        Some(sum / total)
    }
}

async fn approximate_and_exact(store: &Store, q: &[f32], k: usize) -> (Vec<SearchHit>, Vec<SearchHit>, bool) {
    store
        .with_index(|i| {
            (
                i.search_shortlisted(q, k, None, scorer(q)),
                i.search_by(k, None, scorer(q)),
                i.approximate(),
            )
        })
        .await
        .unwrap()
}

async fn wait_ready(store: &Store, queries: &[Vec<f32>]) -> &'static str {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = store.shortlist_status();
        if status.in_use {
            return status.source.unwrap();
        }
        assert!(Instant::now() < deadline, "shortlists never ready: {status:?}");
        // Until they are in use, answers are the exact ones.
        for q in queries.iter().take(3) {
            let (a, e, approximate) = approximate_and_exact(store, q, 10).await;
            if !approximate {
                assert_eq!(a, e);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn recall(store: &Store, queries: &[Vec<f32>]) -> f64 {
    let mut found = 0;
    for q in queries {
        let (a, e, approximate) = approximate_and_exact(store, q, 10).await;
        assert!(approximate);
        found += e
            .iter()
            .filter(|h| a.iter().any(|x| x.segment_id == h.segment_id))
            .count();
    }
    found as f64 / (queries.len() * 10) as f64
}

async fn top_video(store: &Store, q: &[f32]) -> i64 {
    store
        .with_index(|i| i.search_shortlisted(q, 1, None, scorer(q)))
        .await
        .unwrap()[0]
        .video_id
}

fn saved_folder(dir: &Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("db-"))
        .expect("a saved folder")
}

both_backends!(
    shortlists_are_built_followed_saved_and_loaded,
    |writer: Store, url: String| async move {
        let mut rng = StdRng::seed_from_u64(7);
        let centres: Vec<Vec<f32>> = (0..12)
            .map(|_| unit((0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect()))
            .collect();
        // One segment is strong only on its words: its text vector is the
        // query below, its pictures show something else, and its fused
        // vector (of both) carries half of the words.
        let special = unit((0..DIM).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect());
        let mut text_only_video = 0;
        for v in 0..VIDEOS {
            let id = add_video(&writer, &format!("/lib/{v}.mp4")).await;
            let segs: Vec<_> = (0..PER_VIDEO)
                .map(|s| {
                    let mut seg = segment(s as i64 * 10_000, "x", clustered(&mut rng, &centres));
                    seg.text_emb = Some(if v == 11 && s == 5 {
                        let pictures = clustered(&mut rng, &centres);
                        seg.fused = unit(special.iter().zip(&pictures).map(|(a, b)| a + b).collect());
                        seg.visual_emb = Some(pictures);
                        special.clone()
                    } else {
                        clustered(&mut rng, &centres)
                    });
                    seg
                })
                .collect();
            writer.replace_segments(id, &segs, &versions()).await.unwrap();
            if v == 11 {
                text_only_video = id;
            }
        }
        let queries: Vec<Vec<f32>> = (0..40).map(|_| clustered(&mut rng, &centres)).collect();
        let home = tempfile::tempdir().unwrap();

        // Built in the background; exact answers until then.
        let reader = Store::open(&url).await.unwrap();
        reader.enable_shortlists(config(home.path(), 1000));
        reader.load_index().await.unwrap();
        assert_eq!(wait_ready(&reader, &queries).await, "built");
        assert_eq!(reader.shortlist_status().segments, VIDEOS * PER_VIDEO);
        let r = recall(&reader, &queries).await;
        assert!(r >= 0.95, "recall@10 {r}");
        // The segment strong only on its text side is the best (exactly),
        // and the shortlists find it.
        let exact = reader
            .with_index(|i| i.search_by(1, None, scorer(&special)))
            .await
            .unwrap();
        assert_eq!(exact[0].video_id, text_only_video);
        assert_eq!(top_video(&reader, &special).await, text_only_video);
        // One video's search is exact, and stays within the video.
        let one = reader
            .with_index(|i| i.search_shortlisted(&queries[0], 5, Some(text_only_video), scorer(&queries[0])))
            .await
            .unwrap();
        assert_eq!(one.len(), 5);
        assert!(one.iter().all(|h| h.video_id == text_only_video));

        // Another process's new video and deletion reach the shortlists.
        let fresh = unit((0..DIM).map(|i| if i < 3 { 1.0 } else { 0.0 }).collect());
        let new_video = add_video(&writer, "/lib/new.mp4").await;
        writer
            .replace_segments(new_video, &[segment(0, "new", fresh.clone())], &versions())
            .await
            .unwrap();
        writer.delete_video(text_only_video).await.unwrap();
        reader.sync_changes().await.unwrap();
        assert!(reader.shortlist_status().in_use);
        assert_eq!(top_video(&reader, &fresh).await, new_video);
        assert_ne!(top_video(&reader, &special).await, text_only_video);
        assert_eq!(reader.shortlist_status().segments, (VIDEOS - 1) * PER_VIDEO + 1);
        assert!(reader.save_index().await.unwrap(), "changed: saved");
        assert!(!reader.save_index().await.unwrap(), "unchanged: not saved again");
        // The folder is one process's at a time: this one ends.
        reader.close().await;
        drop(reader);

        // A change after the save; a restarted process loads the saved
        // shortlists and catches up from the change log.
        let later = unit((0..DIM).map(|i| if i >= DIM - 3 { 1.0 } else { 0.0 }).collect());
        let later_video = add_video(&writer, "/lib/later.mp4").await;
        writer
            .replace_segments(later_video, &[segment(0, "later", later.clone())], &versions())
            .await
            .unwrap();
        let restarted = Store::open(&url).await.unwrap();
        restarted.enable_shortlists(config(home.path(), 1000));
        restarted.load_index().await.unwrap();
        assert_eq!(wait_ready(&restarted, &queries).await, "loaded");
        assert_eq!(restarted.shortlist_status().segments, (VIDEOS - 1) * PER_VIDEO + 2);
        assert_eq!(top_video(&restarted, &later).await, later_video);
        assert_eq!(top_video(&restarted, &fresh).await, new_video);
        let r = recall(&restarted, &queries).await;
        assert!(r >= 0.95, "recall@10 after loading {r}");

        // A damaged saved folder is rebuilt, not trusted.
        restarted.close().await;
        drop(restarted);
        std::fs::write(
            saved_folder(home.path()).join("snapshot/shortlists/members.bin"),
            b"damaged",
        )
        .unwrap();
        let third = Store::open(&url).await.unwrap();
        third.enable_shortlists(config(home.path(), 1000));
        third.load_index().await.unwrap();
        assert_eq!(wait_ready(&third, &queries).await, "built");
        assert_eq!(top_video(&third, &later).await, later_video);

        // A small library is searched exactly.
        let small = Store::open(&url).await.unwrap();
        small.enable_shortlists(config(home.path(), 1_000_000));
        small.load_index().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let status = small.shortlist_status();
        assert_eq!((status.state, status.in_use), ("off", false));
        let (a, e, approximate) = approximate_and_exact(&small, &queries[0], 10).await;
        assert!(!approximate);
        assert_eq!(a, e);
        for s in [third, small] {
            s.close().await;
        }
    }
);
