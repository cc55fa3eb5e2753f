//! Store tests against a real Postgres (a database created and dropped per
//! test) and a real SQLite file.

use std::collections::HashSet;
use std::time::Duration;

use kino_store::{
    Backend, CueRecord, EmbeddingField, IndexVersions, JobState, ModelRecord, NewQuery, NewSegment, Store, StoreError,
    VideoStatus,
};

mod common;
use common::*;

both_backends!(
    migrations_are_idempotent_and_newer_schema_is_refused,
    |store: Store, url: String| async move {
        store.migrate().await.unwrap();
        assert_eq!(store.schema_version(), 7);
        // Pretend a newer kino migrated this database.
        let sql = match store.backend() {
            Backend::Postgres => {
                "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) \
             VALUES (9999, 'from the future', now(), TRUE, '\\x00'::bytea, 0)"
            }
            Backend::Sqlite => {
                "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) \
             VALUES (9999, 'from the future', CURRENT_TIMESTAMP, TRUE, X'00', 0)"
            }
        };
        sqlx::query(sql).execute(store.pool()).await.unwrap();
        let err = Store::open(&url).await.err().expect("a newer schema must be refused");
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 9999, known: 7 }),
            "{err}"
        );
        assert!(err.to_string().contains("newer than this kino"), "{err}");
    }
);

both_backends!(
    videos_upsert_rename_missing_purge,
    |store: Store, _url: String| async move {
        let id = add_video(&store, "/lib/a.mp4").await;
        let again = add_video(&store, "/lib/a.mp4").await;
        assert_eq!(id, again, "upsert by path keeps the row");
        let v = store.video(id).await.unwrap().unwrap();
        assert_eq!(v.status, VideoStatus::Queued);
        assert_eq!(store.videos_by_hash("hash-/lib/a.mp4").await.unwrap().len(), 1);

        store.rename_video(id, "/lib/b.mp4", 5).await.unwrap();
        assert!(store.video_by_path("/lib/a.mp4").await.unwrap().is_none());
        assert_eq!(store.video_by_path("/lib/b.mp4").await.unwrap().unwrap().id, id);

        store
            .set_video_status(id, VideoStatus::Failed, Some("broken file"))
            .await
            .unwrap();
        assert_eq!(
            store.video(id).await.unwrap().unwrap().error.as_deref(),
            Some("broken file")
        );

        store.mark_video_missing(id).await.unwrap();
        let v = store.video(id).await.unwrap().unwrap();
        assert_eq!(v.status, VideoStatus::Missing);
        assert!(v.missing_since_ms.is_some());
        assert_eq!(
            store.purge_missing(kino_store::now_ms() - 60_000).await.unwrap(),
            0,
            "grace period respected"
        );
        assert_eq!(store.purge_missing(kino_store::now_ms() + 1).await.unwrap(), 1);
        assert!(store.video(id).await.unwrap().is_none());
    }
);

both_backends!(
    video_paths_by_id_skip_unknown_ids,
    |store: Store, _url: String| async move {
        let a = add_video(&store, "/lib/a.mp4").await;
        let b = add_video(&store, "/lib/b.mp4").await;
        let many: Vec<i64> = (0..1200).map(|i| if i % 2 == 0 { a } else { b + 1000 + i }).collect();
        let paths = store.video_paths(&many).await.unwrap();
        assert_eq!(paths.len(), 1, "{paths:?}");
        assert_eq!(paths[&a], "/lib/a.mp4");
        let paths = store.video_paths(&[b, a]).await.unwrap();
        assert_eq!((paths[&a].as_str(), paths[&b].as_str()), ("/lib/a.mp4", "/lib/b.mp4"));
        assert!(store.video_paths(&[]).await.unwrap().is_empty());
    }
);

both_backends!(
    segments_replace_atomically_under_concurrent_readers,
    |store: Store, _url: String| async move {
        let vid = add_video(&store, "/lib/atomic.mp4").await;
        const N: usize = 25;
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                for generation in 0..40 {
                    let segs: Vec<NewSegment> = (0..N)
                        .map(|i| {
                            segment(
                                i as i64 * 10_000,
                                &format!("gen-{generation}"),
                                vec![1.0, generation as f32, i as f32],
                            )
                        })
                        .collect();
                    store
                        .replace_segments(vid, &segs, &IndexVersions::default().with("text", "t"))
                        .await
                        .unwrap();
                }
            })
        };
        let mut readers = Vec::new();
        for _ in 0..3 {
            let store = store.clone();
            readers.push(tokio::spawn(async move {
                let mut seen = HashSet::new();
                for _ in 0..150 {
                    let segs = store.segments(vid).await.unwrap();
                    if segs.is_empty() {
                        continue;
                    }
                    assert_eq!(segs.len(), N, "a reader saw a partial set");
                    let first = &segs[0].text;
                    assert!(
                        segs.iter().all(|s| &s.text == first),
                        "a reader saw a mix of generations"
                    );
                    seen.insert(first.clone());
                }
                seen.len()
            }));
        }
        writer.await.unwrap();
        for r in readers {
            r.await.unwrap();
        }
        let final_segs = store.segments(vid).await.unwrap();
        assert_eq!(final_segs.len(), N);
        assert!(final_segs.iter().all(|s| s.text == "gen-39"));
        assert_eq!(final_segs[3].fused, vec![1.0, 39.0, 3.0]);
        let v = store.video(vid).await.unwrap().unwrap();
        assert_eq!(v.status, VideoStatus::Done);
        assert!(v.needs_vision, "indexed without a vision model");

        // Checkpointed (staged) segments stay invisible until the replace, which clears them.
        store
            .stage_segments(vid, &[segment(0, "staged", vec![0.0, 1.0, 0.0])])
            .await
            .unwrap();
        assert_eq!(store.staged_segments(vid).await.unwrap().len(), 1);
        assert!(store.segments(vid).await.unwrap().iter().all(|s| s.text == "gen-39"));
        let staged = store.staged_segments(vid).await.unwrap();
        store
            .replace_segments(vid, &staged, &IndexVersions::default())
            .await
            .unwrap();
        assert!(store.staged_segments(vid).await.unwrap().is_empty());
        assert_eq!(store.segments(vid).await.unwrap()[0].text, "staged");
    }
);

both_backends!(
    a_video_indexed_since_it_was_read_is_not_queued_again,
    |store: Store, _url: String| async move {
        // A check that reads a queued video, then finds no waiting job
        // because its job finished in between, must not queue a second one.
        let vid = add_video(&store, "/lib/race.mp4").await;
        let seen = store.video(vid).await.unwrap().unwrap();
        let job = store.enqueue_job(vid, "index").await.unwrap();
        let claimed = store.claim_job("w", Duration::from_secs(60)).await.unwrap().unwrap();
        assert_eq!(claimed.id, job.id);
        // While the job runs, the guarded enqueue hands back the running job.
        let running = store.enqueue_job_unless_indexed_since(&seen, "index").await.unwrap();
        assert_eq!(running.map(|j| j.id), Some(job.id));
        store
            .replace_segments(vid, &[segment(0, "one", vec![1.0, 0.0])], &IndexVersions::default())
            .await
            .unwrap();
        // Indexed, its job not marked done yet (a kill lands here): nothing queued.
        assert!(store
            .enqueue_job_unless_indexed_since(&seen, "index")
            .await
            .unwrap()
            .is_none());
        assert!(store.complete_job(job.id, "w").await.unwrap());
        assert!(store
            .enqueue_job_unless_indexed_since(&seen, "index")
            .await
            .unwrap()
            .is_none());
        assert_eq!(store.jobs_of_video(vid).await.unwrap().len(), 1, "one job");
        // Read after that index: a request (a model swap, say) queues one.
        let fresh = store.video(vid).await.unwrap().unwrap();
        let again = store.enqueue_job_unless_indexed_since(&fresh, "reindex").await.unwrap();
        assert!(again.is_some_and(|j| j.id != job.id && j.state == JobState::Queued));
    }
);

both_backends!(
    expired_lease_is_reclaimed_and_old_owner_is_fenced,
    |store: Store, _url: String| async move {
        let vid = add_video(&store, "/lib/lease.mp4").await;
        let job = store.enqueue_job(vid, "index").await.unwrap();
        assert_eq!(
            store.enqueue_job(vid, "index").await.unwrap().id,
            job.id,
            "no duplicate queued job"
        );
        let a = store
            .claim_job("worker-a", Duration::from_millis(200))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.id, job.id);
        assert_eq!(a.attempts, 1);
        assert!(
            store
                .claim_job("worker-b", Duration::from_secs(60))
                .await
                .unwrap()
                .is_none(),
            "leased job is not claimable"
        );
        assert!(store
            .heartbeat_job(a.id, "worker-a", Duration::from_millis(200))
            .await
            .unwrap());
        tokio::time::sleep(Duration::from_millis(400)).await;
        let b = store
            .claim_job("worker-b", Duration::from_secs(60))
            .await
            .unwrap()
            .expect("expired lease is claimable");
        assert_eq!(b.id, job.id);
        assert_eq!(b.attempts, 2);
        assert_eq!(b.lease_owner.as_deref(), Some("worker-b"));
        assert!(
            !store
                .heartbeat_job(a.id, "worker-a", Duration::from_secs(1))
                .await
                .unwrap(),
            "old owner lost the lease"
        );
        assert!(
            !store.complete_job(a.id, "worker-a").await.unwrap(),
            "old owner cannot complete"
        );
        assert!(store
            .checkpoint_job(b.id, "worker-b", r#"{"done_ms":60000}"#)
            .await
            .unwrap());
        assert!(store.complete_job(b.id, "worker-b").await.unwrap());
        let done = store.job(job.id).await.unwrap().unwrap();
        assert_eq!(done.state, JobState::Done);
        assert_eq!(done.checkpoint.as_deref(), Some(r#"{"done_ms":60000}"#));
    }
);

both_backends!(
    failed_job_keeps_its_error_after_its_attempts,
    |store: Store, _url: String| async move {
        let vid = add_video(&store, "/lib/fail.mp4").await;
        let job = store.enqueue_job_with(vid, "index", 2).await.unwrap();
        let c1 = store.claim_job("w", Duration::from_secs(60)).await.unwrap().unwrap();
        let s1 = store
            .fail_job(c1.id, "w", "decoder crashed", true, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(s1, Some(JobState::Queued), "retried while attempts remain");
        let c2 = store.claim_job("w", Duration::from_secs(60)).await.unwrap().unwrap();
        assert_eq!(c2.attempts, 2);
        let s2 = store
            .fail_job(c2.id, "w", "decoder crashed again", true, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(s2, Some(JobState::Failed));
        let j = store.job(job.id).await.unwrap().unwrap();
        assert_eq!(j.state, JobState::Failed);
        assert_eq!(j.last_error.as_deref(), Some("decoder crashed again"));
        assert!(store.claim_job("w", Duration::from_secs(60)).await.unwrap().is_none());

        // A job whose worker vanished on its last attempt is failed, not retried forever.
        let vid2 = add_video(&store, "/lib/vanish.mp4").await;
        let j2 = store.enqueue_job_with(vid2, "index", 1).await.unwrap();
        store.claim_job("w", Duration::from_millis(50)).await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(store.claim_job("w2", Duration::from_secs(60)).await.unwrap().is_none());
        let j2 = store.job(j2.id).await.unwrap().unwrap();
        assert_eq!(j2.state, JobState::Failed);
        assert!(j2.last_error.unwrap().contains("lease expired"));
        let counts = store.job_counts().await.unwrap();
        assert!(counts.contains(&("failed".to_string(), 2)), "{counts:?}");
    }
);

both_backends!(
    stage_versions_are_written_with_the_segments_and_fill_the_model_columns,
    |store: Store, _url: String| async move {
        let v = add_video(&store, "/lib/stages.mp4").await;
        let fresh = store.video(v).await.unwrap().unwrap();
        assert!(fresh.stage_versions.is_empty(), "nothing recorded before indexing");
        let with_vision = IndexVersions::default()
            .with("decode", "fps=1,side=448,seg=10000")
            .with("vision", "swin-v1")
            .with("text", "t1")
            .with("fusion", "f1");
        store
            .replace_segments(v, &[segment(0, "one", vec![1.0, 0.0])], &with_vision)
            .await
            .unwrap();
        let row = store.video(v).await.unwrap().unwrap();
        assert_eq!(row.stage_versions, with_vision.stages);
        assert_eq!(
            (
                row.text_model.as_deref(),
                row.vision_model.as_deref(),
                row.fusion_model.as_deref()
            ),
            (Some("t1"), Some("swin-v1"), Some("f1"))
        );
        assert!(!row.needs_vision);
        // Without the vision stage: absent from the map, needs_vision set.
        let text_only = IndexVersions::default()
            .with("decode", "fps=1,side=448,seg=10000")
            .with("text", "t1")
            .with("fusion", "f1");
        store
            .replace_segments(v, &[segment(0, "one", vec![1.0, 0.0])], &text_only)
            .await
            .unwrap();
        let row = store.video(v).await.unwrap().unwrap();
        assert_eq!(row.stage_versions, text_only.stages);
        assert!(row.vision_model.is_none() && row.needs_vision);
        assert_eq!(store.videos().await.unwrap()[0].stage_versions, text_only.stages);
    }
);

both_backends!(
    exact_search_finds_known_neighbours_and_stays_current,
    |store: Store, _url: String| async move {
        let v1 = add_video(&store, "/lib/one.mp4").await;
        let v2 = add_video(&store, "/lib/two.mp4").await;
        let versions = IndexVersions::default().with("text", "t").with("vision", "v");
        store
            .replace_segments(
                v1,
                &[
                    segment(0, "east", vec![1.0, 0.0, 0.0]),
                    segment(10_000, "north-east", vec![1.0, 1.0, 0.0]),
                ],
                &versions,
            )
            .await
            .unwrap();
        store
            .replace_segments(v2, &[segment(0, "up", vec![0.0, 0.0, 1.0])], &versions)
            .await
            .unwrap();
        store.load_index().await.unwrap();

        let hits = store
            .with_index(|i| i.search(EmbeddingField::Fused, &[0.9, 0.1, 0.0], 2, None))
            .await
            .unwrap();
        assert_eq!(hits.len(), 2);
        assert_eq!((hits[0].video_id, hits[0].start_ms), (v1, 0));
        assert_eq!((hits[1].video_id, hits[1].start_ms), (v1, 10_000));
        assert!(hits[0].score > 0.99 && hits[0].score <= 1.0001);

        let only_v2 = store
            .with_index(|i| i.search(EmbeddingField::Fused, &[1.0, 0.0, 0.0], 5, Some(v2)))
            .await
            .unwrap();
        assert_eq!(only_v2.len(), 1);
        assert_eq!(only_v2[0].video_id, v2);

        // Writes keep the loaded index current.
        store
            .replace_segments(v2, &[segment(0, "east too", vec![2.0, 0.0, 0.0])], &versions)
            .await
            .unwrap();
        let hits = store
            .with_index(|i| i.search(EmbeddingField::Fused, &[1.0, 0.0, 0.0], 3, None))
            .await
            .unwrap();
        assert!(hits.iter().any(|h| h.video_id == v2 && h.score > 0.99));
        store.mark_video_missing(v1).await.unwrap();
        let hits = store
            .with_index(|i| i.search(EmbeddingField::Fused, &[1.0, 0.0, 0.0], 3, None))
            .await
            .unwrap();
        assert!(hits.iter().all(|h| h.video_id != v1), "missing videos are hidden");
        // A fresh load agrees.
        store.load_index().await.unwrap();
        assert_eq!(store.with_index(|i| i.len()).await.unwrap(), 1);
    }
);

both_backends!(cue_sources_of_spans, |store: Store, _url: String| async move {
    let a = add_video(&store, "/lib/sources-a.mp4").await;
    let b = add_video(&store, "/lib/sources-b.mp4").await;
    let cue = |start_ms: i64, end_ms: i64, source: &str| CueRecord {
        start_ms,
        end_ms,
        text: format!("{source} {start_ms}"),
        source: source.into(),
        language: None,
    };
    store
        .replace_cues(
            a,
            &[
                cue(0, 4000, "subtitle"),
                cue(3000, 6000, "speech"),
                cue(3500, 5000, "speech"),
                cue(9000, 12_000, "screen"),
            ],
        )
        .await
        .unwrap();
    store.replace_cues(b, &[cue(0, 20_000, "subtitle")]).await.unwrap();
    let got = store
        .cue_sources(&[
            (a, 0, 10_000),      // all three sources
            (a, 4000, 9000),     // only speech: the subtitle ends at 4000, the screen cue starts at 9000
            (a, 6000, 9000),     // nothing: touching ends do not overlap
            (b, 5000, 6000),     // the other video's own cue
            (a + b + 100, 0, 1), // no such video
            (a, 3000, 3500),     // subtitle and speech, listed once each
        ])
        .await
        .unwrap();
    let want: Vec<Vec<String>> = [
        vec!["screen", "speech", "subtitle"],
        vec!["speech"],
        vec![],
        vec!["subtitle"],
        vec![],
        vec!["speech", "subtitle"],
    ]
    .iter()
    .map(|l| l.iter().map(|s| s.to_string()).collect())
    .collect();
    assert_eq!(got, want);
    assert!(store.cue_sources(&[]).await.unwrap().is_empty());
    // More spans than one query takes: the lists still line up with the spans.
    let many: Vec<(i64, i64, i64)> = (0..kino_store::CUE_SOURCE_SPANS_PER_QUERY as i64 + 3)
        .map(|i| if i % 2 == 0 { (a, 4000, 9000) } else { (b, 0, 1) })
        .collect();
    let got = store.cue_sources(&many).await.unwrap();
    assert_eq!(got.len(), many.len());
    for (i, l) in got.iter().enumerate() {
        assert_eq!(
            l,
            &vec![if i % 2 == 0 { "speech" } else { "subtitle" }.to_string()],
            "span {i}"
        );
    }
});

both_backends!(
    cues_queries_answers_models_roundtrip,
    |store: Store, _url: String| async move {
        let vid = add_video(&store, "/lib/q.mp4").await;
        let cues = vec![
            CueRecord {
                start_ms: 0,
                end_ms: 1500,
                text: "Hello <there>".into(),
                source: "subtitle".into(),
                language: None,
            },
            CueRecord {
                start_ms: 1000,
                end_ms: 2000,
                text: "你好".into(),
                source: "speech".into(),
                language: Some("zh".into()),
            },
        ];
        store.replace_cues(vid, &cues).await.unwrap();
        assert_eq!(store.cues(vid).await.unwrap(), cues);

        // Warnings and the language override live on the video.
        let warnings = vec!["audio stream unreadable: bad packet".to_string()];
        store.set_video_warnings(vid, &warnings).await.unwrap();
        assert!(store.set_video_language(vid, Some("de")).await.unwrap());
        assert!(!store.set_video_language(vid + 1000, Some("de")).await.unwrap());
        let v = store.video(vid).await.unwrap().unwrap();
        assert_eq!((v.warnings, v.language.as_deref()), (warnings, Some("de")));
        store.set_video_language(vid, None).await.unwrap();
        assert_eq!(store.video(vid).await.unwrap().unwrap().language, None);

        let citations = serde_json::json!([{"video_id": vid, "start_ms": 0, "end_ms": 10000}]);
        let qid = store
            .record_query(
                &NewQuery {
                    question: "who says hello?".into(),
                    kind: "ask".into(),
                    latency_ms: 12,
                    model_version: "t".into(),
                },
                Some(("Hello there", &citations)),
            )
            .await
            .unwrap();
        let recent = store.recent_queries(10).await.unwrap();
        assert_eq!(recent[0].id, qid);
        assert_eq!(recent[0].answer.as_deref(), Some("Hello there"));
        assert_eq!(recent[0].citations, citations);

        // Marks on search results, kept by video and span.
        let mark = |right: bool| kino_store::Feedback {
            id: 0,
            query: "who says hello?".into(),
            video_id: vid,
            start_ms: 0,
            end_ms: 10_000,
            right,
            created_ms: 0,
        };
        let first = store.record_feedback(&mark(true)).await.unwrap();
        let second = store.record_feedback(&mark(false)).await.unwrap();
        let marks = store.feedback().await.unwrap();
        assert_eq!(
            marks.iter().map(|m| (m.id, m.right)).collect::<Vec<_>>(),
            [(first, true), (second, false)]
        );
        assert!(marks
            .iter()
            .all(|m| m.created_ms > 0 && m.query == "who says hello?" && m.end_ms == 10_000));

        let m = ModelRecord {
            name: "sentence-transformers/all-MiniLM-L6-v2".into(),
            kind: "text".into(),
            version: "abc".into(),
            checksum: "abc".into(),
            source: "pip".into(),
            path: "/m".into(),
            updated_ms: 0,
        };
        store.upsert_model(&m).await.unwrap();
        store
            .upsert_model(&ModelRecord {
                checksum: "def".into(),
                ..m.clone()
            })
            .await
            .unwrap();
        let models = store.models().await.unwrap();
        assert_eq!(models.len(), 1);
        assert_eq!(models[0].checksum, "def");
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn postgres_concurrent_claimers_never_share_a_job() {
    let db = TestDb::new(Backend::Postgres);
    let store = db.open().await;
    let mut expected = HashSet::new();
    for i in 0..60 {
        let vid = add_video(&store, &format!("/lib/many-{i}.mp4")).await;
        expected.insert(store.enqueue_job(vid, "index").await.unwrap().id);
    }
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("worker-{w}");
            let mut got = Vec::new();
            while let Some(job) = store.claim_job(&owner, Duration::from_secs(60)).await.unwrap() {
                got.push(job.id);
                assert!(store.complete_job(job.id, &owner).await.unwrap());
            }
            got
        }));
    }
    let mut all = Vec::new();
    let mut workers_with_work = 0;
    for t in tasks {
        let got = t.await.unwrap();
        if !got.is_empty() {
            workers_with_work += 1;
        }
        all.extend(got);
    }
    let unique: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), unique.len(), "a job was claimed twice");
    assert_eq!(unique, expected, "every job claimed");
    assert!(workers_with_work > 1, "claims were spread over workers");
    db.finish(store).await;
}

#[tokio::test]
async fn sqlite_database_is_created_on_first_use_in_a_new_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep/er/kino.db");
    let store = Store::open(&path.display().to_string()).await.unwrap();
    store.ping().await.unwrap();
    assert!(path.exists());
    store.close().await;
}

/// Several openers (as separate processes would: each its own pool) create
/// and migrate one new SQLite file at the same moment: all succeed, and the
/// schema is there once.
#[test]
fn concurrent_first_opens_of_a_new_sqlite_file_all_succeed() {
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("kino.db").display().to_string();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let (url, barrier) = (url.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    barrier.wait();
                    rt.block_on(async {
                        let store = Store::open(&url).await?;
                        store.ping().await?;
                        store.close().await;
                        Ok::<(), StoreError>(())
                    })
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = Store::open(&url).await.unwrap();
            assert!(store.videos().await.unwrap().is_empty());
            store.close().await;
        });
    }
}

#[tokio::test]
async fn unreachable_postgres_is_a_connect_error_not_a_hang() {
    let t = std::time::Instant::now();
    let err = Store::open("postgres://postgres@127.0.0.1:1/kino").await.err().unwrap();
    assert!(matches!(err, StoreError::Connect { .. }), "{err}");
    assert!(err.is_transient());
    assert!(t.elapsed() < Duration::from_secs(30));
}

fn document(text: &str, windows: &[(i64, i64, Vec<f32>)], pooled: Vec<f32>) -> kino_store::NewDocument {
    kino_store::NewDocument {
        version: "doc-v1".into(),
        text: text.into(),
        pieces: vec![kino_store::DocPiece {
            byte: 0,
            start_ms: 0,
            end_ms: 5_000,
        }],
        vector: pooled,
        tokens: 42,
        truncated: false,
        windows: windows
            .iter()
            .enumerate()
            .map(|(i, (s, e, v))| kino_store::NewWindow {
                start_ms: *s,
                end_ms: *e,
                start_byte: i as i64,
                end_byte: i as i64 + 3,
                text: format!("window {i}"),
                vector: v.clone(),
            })
            .collect(),
        summary: vec![kino_store::SummarySentence {
            start_ms: 1_000,
            end_ms: 2_000,
            text: "The gist.".into(),
        }],
    }
}

both_backends!(
    documents_are_written_with_segments_and_found_by_video,
    |store: Store, _url: String| async move {
        let a = add_video(&store, "/lib/doc-a.mp4").await;
        let b = add_video(&store, "/lib/doc-b.mp4").await;
        let versions = IndexVersions::default().with("text", "t1").with("document", "doc-v1");
        let doc_a = document(
            "The gist of a.",
            &[(0, 40_000, vec![1.0, 0.0]), (30_000, 70_000, vec![0.6, 0.8])],
            vec![2.0, 0.0],
        );
        store
            .replace_segments_and_document(a, &[segment(0, "a", vec![1.0, 0.0])], &versions, Some(&doc_a))
            .await
            .unwrap();
        store
            .replace_segments_and_document(
                b,
                &[segment(0, "b", vec![0.0, 1.0])],
                &versions,
                Some(&document("b", &[(0, 9_000, vec![0.0, 1.0])], vec![0.0, 3.0])),
            )
            .await
            .unwrap();

        let d = store.document(a).await.unwrap().expect("a has a document");
        assert_eq!(d.text, "The gist of a.");
        assert_eq!(d.windows, 2);
        assert_eq!(d.tokens, 42);
        assert_eq!(d.summary[0].text, "The gist.");
        assert_eq!(d.span_of(0, 3), Some((0, 5_000)));
        let ws = store.document_windows(a, &[1, 0, 7]).await.unwrap();
        assert_eq!(ws.iter().map(|w| w.idx).collect::<Vec<_>>(), [1, 0]);
        assert_eq!((ws[0].start_ms, ws[0].end_ms), (30_000, 70_000));
        assert_eq!(
            store
                .video(a)
                .await
                .unwrap()
                .unwrap()
                .stage_versions
                .get("document")
                .map(String::as_str),
            Some("doc-v1")
        );

        // The index scores every document with its best windows.
        let hits = store.with_documents(|d| d.scores(&[1.0, 0.0], 1)).await.unwrap();
        assert_eq!(hits.len(), 2);
        let ha = hits.iter().find(|h| h.video_id == a).unwrap();
        assert!((ha.document - 1.0).abs() < 1e-6, "pooled vectors are normalised");
        assert_eq!(ha.windows[0].0, 0);

        // A document-only refresh keeps the segments and records the version.
        let newer = versions.clone().with("document", "doc-v2");
        store
            .replace_document(
                a,
                Some(&document("Other.", &[(0, 1_000, vec![0.0, 1.0])], vec![0.0, 1.0])),
                &newer,
            )
            .await
            .unwrap();
        assert_eq!(store.segment_count_of(a).await.unwrap(), 1);
        assert_eq!(store.document(a).await.unwrap().unwrap().text, "Other.");
        assert_eq!(
            store
                .video(a)
                .await
                .unwrap()
                .unwrap()
                .stage_versions
                .get("document")
                .map(String::as_str),
            Some("doc-v2")
        );
        let hits = store.with_documents(|d| d.scores(&[1.0, 0.0], 1)).await.unwrap();
        assert!(hits.iter().find(|h| h.video_id == a).unwrap().document.abs() < 1e-6);

        // Missing videos leave the index; a fresh load agrees; deletion removes the rows.
        store.mark_video_missing(b).await.unwrap();
        assert_eq!(store.with_documents(|d| d.len()).await.unwrap(), 1);
        store.load_documents().await.unwrap();
        assert_eq!(store.with_documents(|d| d.len()).await.unwrap(), 1);
        store.delete_video(a).await.unwrap();
        assert!(store.document(a).await.unwrap().is_none());
        assert!(store.document_windows(a, &[0]).await.unwrap().is_empty());
        assert_eq!(store.with_documents(|d| d.len()).await.unwrap(), 0);
        // No text: no document.
        let c = add_video(&store, "/lib/doc-c.mp4").await;
        store
            .replace_segments_and_document(c, &[segment(0, "", vec![1.0, 1.0])], &versions, None)
            .await
            .unwrap();
        assert!(store.document(c).await.unwrap().is_none());
    }
);
