//! The in-process indexes follow other processes' writes: two `Store`s
//! opened on one database (each with its own pool and indexes, as two
//! processes would have) on a real Postgres and a real SQLite file.

use std::time::{Duration, Instant};

use kino_store::{Backend, EmbeddingField, IndexVersions, NewDocument, Store, VideoStatus};

mod common;
use common::*;

fn versions() -> IndexVersions {
    IndexVersions::default().with("text", "t1")
}

fn doc(v: Vec<f32>) -> NewDocument {
    NewDocument {
        version: "d1".into(),
        text: "a talk about rivers".into(),
        pieces: vec![],
        vector: v.clone(),
        tokens: 4,
        truncated: false,
        summary: vec![],
        windows: vec![kino_store::NewWindow {
            start_ms: 0,
            end_ms: 10_000,
            start_byte: 0,
            end_byte: 19,
            text: "a talk about rivers".into(),
            vector: v,
        }],
    }
}

/// Video ids `reader` finds for `q` in its segment index.
async fn found(reader: &Store, q: &[f32]) -> Vec<i64> {
    let mut ids: Vec<i64> = reader
        .with_index(|i| i.search(EmbeddingField::Fused, q, 50, None))
        .await
        .unwrap()
        .iter()
        .map(|h| h.video_id)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

async fn documents(reader: &Store) -> usize {
    reader.with_documents(|d| d.len()).await.unwrap()
}

both_backends!(
    another_processs_writes_reach_the_index_one_video_at_a_time,
    |writer: Store, url: String| async move {
        let reader = Store::open(&url).await.unwrap();
        let q = [1.0, 0.0, 0.0];
        let a = add_video(&writer, "/lib/a.mp4").await;
        writer
            .replace_segments(a, &[segment(0, "a", vec![1.0, 0.0, 0.0])], &versions())
            .await
            .unwrap();
        // The reader loads what is there.
        assert_eq!(found(&reader, &q).await, vec![a]);
        assert_eq!(documents(&reader).await, 0);
        let loaded_at = reader.applied_generation();
        assert_eq!(loaded_at, writer.current_generation().await.unwrap());

        // A new video with a document, written by the other process: not
        // seen until the reader syncs; then exactly that video is reloaded.
        let b = add_video(&writer, "/lib/b.mp4").await;
        writer
            .replace_segments_and_document(
                b,
                &[
                    segment(0, "b", vec![0.9, 0.1, 0.0]),
                    segment(10_000, "b2", vec![0.0, 1.0, 0.0]),
                ],
                &versions(),
                Some(&doc(vec![1.0, 0.0, 0.0])),
            )
            .await
            .unwrap();
        assert_eq!(found(&reader, &q).await, vec![a], "no sync yet");
        let r = reader.sync_changes().await.unwrap();
        assert_eq!((r.videos, r.full_reload), (1, false), "{r:?}");
        assert_eq!(r.generation, writer.current_generation().await.unwrap());
        assert_eq!(found(&reader, &q).await, vec![a, b]);
        assert_eq!(reader.with_index(|i| i.len()).await.unwrap(), 3);
        assert_eq!(documents(&reader).await, 1);
        // Nothing changed: nothing reloaded.
        assert_eq!(reader.sync_changes().await.unwrap().videos, 0);

        // Replaced: the old segments are swapped for the new ones.
        writer
            .replace_segments(b, &[segment(0, "b3", vec![0.0, 0.0, 1.0])], &versions())
            .await
            .unwrap();
        reader.sync_changes().await.unwrap();
        assert_eq!(reader.with_index(|i| i.len()).await.unwrap(), 2);
        assert_eq!(found(&reader, &q).await, vec![a, b]);
        let top = reader
            .with_index(|i| i.search(EmbeddingField::Fused, &[0.0, 0.0, 1.0], 1, None))
            .await
            .unwrap();
        assert_eq!(top[0].video_id, b);
        assert!(top[0].score > 0.99);

        // Missing, restored, deleted.
        writer.mark_video_missing(a).await.unwrap();
        reader.sync_changes().await.unwrap();
        assert_eq!(found(&reader, &q).await, vec![b]);
        writer.set_video_status(a, VideoStatus::Done, None).await.unwrap();
        reader.sync_changes().await.unwrap();
        assert_eq!(found(&reader, &q).await, vec![a, b]);
        writer.delete_video(b).await.unwrap();
        reader.sync_changes().await.unwrap();
        assert_eq!(found(&reader, &q).await, vec![a]);
        assert_eq!(documents(&reader).await, 0);
        // A status change that does not change visibility logs nothing.
        let before = writer.current_generation().await.unwrap();
        writer.set_video_status(a, VideoStatus::Indexing, None).await.unwrap();
        writer.set_video_status(a, VideoStatus::Done, None).await.unwrap();
        assert_eq!(writer.current_generation().await.unwrap(), before);

        // The writer's own index never steps back to an older state when
        // its own change comes round through the log.
        assert_eq!(found(&writer, &q).await, vec![a]);
        assert_eq!(writer.sync_changes().await.unwrap().videos, 0);
        reader.close().await;
    }
);

both_backends!(
    a_reader_behind_the_pruned_log_reloads_in_full,
    |writer: Store, url: String| async move {
        let reader = Store::open(&url).await.unwrap();
        let a = add_video(&writer, "/lib/a.mp4").await;
        writer
            .replace_segments(a, &[segment(0, "a", vec![1.0, 0.0])], &versions())
            .await
            .unwrap();
        assert_eq!(found(&reader, &[1.0, 0.0]).await, vec![a]);
        let b = add_video(&writer, "/lib/b.mp4").await;
        writer
            .replace_segments(b, &[segment(0, "b", vec![0.0, 1.0])], &versions())
            .await
            .unwrap();
        writer.mark_video_missing(a).await.unwrap();
        // The log no longer reaches back to the reader's watermark.
        sqlx::query("DELETE FROM index_changes WHERE generation < (SELECT MAX(generation) FROM index_changes)")
            .execute(writer.pool())
            .await
            .unwrap();
        let r = reader.sync_changes().await.unwrap();
        assert!(r.full_reload, "{r:?}");
        assert_eq!(found(&reader, &[1.0, 1.0]).await, vec![b]);
        reader.close().await;
    }
);

both_backends!(
    a_follower_sees_a_write_within_a_second,
    |writer: Store, url: String| async move {
        let reader = Store::open(&url).await.unwrap();
        assert!(found(&reader, &[1.0, 0.0]).await.is_empty());
        // Postgres: the timer is a minute, so only the notification can
        // bring the change in time; SQLite: the counter is polled.
        let poll = match reader.backend() {
            Backend::Postgres => Duration::from_secs(60),
            Backend::Sqlite => Duration::from_millis(200),
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let follower = reader.clone();
        let task = tokio::spawn(async move {
            follower
                .follow_changes(poll, async {
                    let _ = stop_rx.await;
                })
                .await
        });
        tokio::time::sleep(Duration::from_millis(300)).await; // listening
        let a = add_video(&writer, "/lib/a.mp4").await;
        let t = Instant::now();
        writer
            .replace_segments(a, &[segment(0, "a", vec![1.0, 0.0])], &versions())
            .await
            .unwrap();
        loop {
            if found(&reader, &[1.0, 0.0]).await == vec![a] {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(1), "not seen within a second");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("{:?}: seen after {:?}", reader.backend(), t.elapsed());
        let _ = stop_tx.send(());
        task.await.unwrap();
        reader.close().await;
    }
);
