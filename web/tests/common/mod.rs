//! Shared test harness of the web tests: a throw-away database (Postgres or
//! SQLite), a small fixture library of real video files made with the
//! `ffmpeg` CLI, and a real [`QueryEngine`] over the store's exact vector index.
//!
//! The engine embeds text as hashed bag-of-words vectors, built the same way
//! for segments and queries, so ranking is deterministic and checkable. The
//! production engine is the fusion one (sentence encoder + query scoring),
//! wired by the `kino` binary; this one exercises the real store, the real
//! HTTP layer and the real browser without a model.

#![allow(dead_code)]

#[macro_use]
pub mod http;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use kino_store::{Backend, CueRecord, EmbeddingField, IndexVersions, NewSegment, NewVideo, Store, VideoStatus};
use kino_web::{Answer, BestMoment, BoxFuture, Citation, Moment, QueryEngine, VideoResult};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Embedding size of the bag-of-words vectors.
pub const DIM: usize = 256;

const STOP: &[&str] = &[
    "a", "an", "the", "is", "are", "was", "of", "on", "in", "to", "and", "for", "with", "what", "where", "who", "how",
    "does", "do", "it", "its", "at", "we", "you", "i",
];

fn fnv1a(s: &str) -> u64 {
    s.bytes()
        .fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

/// Hashed bag of (lower-cased, stop-word-free) words.
pub fn embed(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; DIM];
    for w in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let w = w.to_lowercase();
        if STOP.contains(&w.as_str()) {
            continue;
        }
        v[(fnv1a(&w) % DIM as u64) as usize] += 1.0;
    }
    v
}

/// A real query engine over the store's exact index (bag-of-words vectors).
pub struct BowEngine {
    /// The store it searches.
    pub store: Store,
}

impl BowEngine {
    async fn moments(&self, query: &str, k: usize, video: Option<i64>) -> anyhow::Result<Vec<Moment>> {
        let q = embed(query);
        if q.iter().all(|x| *x == 0.0) {
            return Ok(vec![]);
        }
        let hits = self
            .store
            .with_index(|idx| idx.search(EmbeddingField::Fused, &q, k, video))
            .await?;
        let hits: Vec<_> = hits.into_iter().filter(|h| h.score > 0.0).collect();
        let ids: Vec<i64> = hits.iter().map(|h| h.segment_id).collect();
        let segs = self.store.segments_by_id(&ids).await?;
        // Where each hit's words came from: one store query for all of them.
        let spans: Vec<(i64, i64, i64)> = hits.iter().map(|h| (h.video_id, h.start_ms, h.end_ms)).collect();
        let mut cue_sources = self.store.cue_sources(&spans).await?.into_iter();
        let mut out = Vec::with_capacity(hits.len());
        let mut paths: std::collections::HashMap<i64, String> = std::collections::HashMap::new();
        for h in hits {
            let cues = cue_sources.next().unwrap_or_default();
            let Some(s) = segs.iter().find(|s| s.id == h.segment_id) else {
                continue;
            };
            // One lookup per video, not per hit.
            if let std::collections::hash_map::Entry::Vacant(slot) = paths.entry(h.video_id) {
                let Some(v) = self.store.video(h.video_id).await? else {
                    continue;
                };
                slot.insert(v.path);
            }
            out.push(Moment {
                video_id: h.video_id,
                path: paths[&h.video_id].clone(),
                start_ms: h.start_ms,
                end_ms: h.end_ms,
                score: h.score,
                text: s.text.clone(),
                tags: s.tags.clone(),
                thumbnail: s.thumbnail.as_ref().map(|_| format!("/thumbnails/{}", s.id)),
                segment_id: Some(s.id),
                // Pictures count when the segment has visual tags or a visual vector.
                sources: kino_web::moment_sources(cues, !s.tags.is_empty() || s.visual_emb.is_some()),
            });
        }
        Ok(out)
    }
}

impl QueryEngine for BowEngine {
    fn search(&self, query: &str, k: usize, video: Option<i64>) -> BoxFuture<'_, anyhow::Result<Vec<Moment>>> {
        let query = query.to_string();
        Box::pin(async move { self.moments(&query, k, video).await })
    }

    fn ask(&self, question: &str) -> BoxFuture<'_, anyhow::Result<Answer>> {
        let question = question.to_string();
        Box::pin(async move {
            let best = self.moments(&question, 3, None).await?;
            let top = best.first().map_or(0.0, |m| m.score);
            // Extractive: the best sentence, plus the next when it is nearly as good.
            let citations: Vec<Citation> = best
                .into_iter()
                .filter(|m| m.score >= 0.8 * top && m.score > 0.2)
                .take(2)
                .map(|m| Citation {
                    video_id: m.video_id,
                    path: m.path,
                    start_ms: m.start_ms,
                    end_ms: m.end_ms,
                    text: m.text,
                    sources: m.sources,
                })
                .collect();
            let answer = citations.iter().map(|c| c.text.as_str()).collect::<Vec<_>>().join(" ");
            Ok(Answer { answer, citations })
        })
    }

    fn reindex(&self, video: Option<i64>, stale: bool) -> BoxFuture<'_, anyhow::Result<serde_json::Value>> {
        Box::pin(async move {
            let videos = match video {
                Some(id) => self.store.video(id).await?.into_iter().collect(),
                None => self.store.videos().await?,
            };
            let mut n = 0;
            for v in videos.iter().filter(|v| v.status == VideoStatus::Done) {
                let segs = self.store.segments(v.id).await?;
                let new: Vec<NewSegment> = segs
                    .into_iter()
                    .map(|s| NewSegment {
                        fused: embed(&s.text),
                        ..seg(s.start_ms, s.end_ms, &s.text, s.tags, s.thumbnail)
                    })
                    .collect();
                self.store.replace_segments(v.id, &new, &versions()).await?;
                n += 1;
            }
            Ok(serde_json::json!({ "reindexed": n, "stale": stale }))
        })
    }

    fn search_videos(&self, query: &str, k: usize) -> BoxFuture<'_, anyhow::Result<Vec<VideoResult>>> {
        let query = query.to_string();
        Box::pin(async move {
            // Videos ranked by their best moment, each with its best three.
            let moments = self.moments(&query, 100, None).await?;
            let mut out: Vec<VideoResult> = Vec::new();
            for m in moments {
                let best = BestMoment {
                    start_ms: m.start_ms,
                    end_ms: m.end_ms,
                    text: m.text.clone(),
                };
                match out.iter_mut().find(|v| v.video_id == m.video_id) {
                    Some(v) if v.best_moments.len() < 3 => v.best_moments.push(best),
                    Some(_) => {}
                    None => {
                        let duration_ms = self.store.video(m.video_id).await?.and_then(|v| v.facts.duration_ms);
                        out.push(VideoResult {
                            video_id: m.video_id,
                            path: m.path,
                            score: m.score,
                            duration_ms,
                            best_moments: vec![best],
                        });
                    }
                }
            }
            out.truncate(k);
            Ok(out)
        })
    }

    fn model_version(&self) -> String {
        "bow-test".into()
    }
}

/// The summary sentences of the kitchen video's document: `(start_ms, text)`.
pub const KITCHEN_SUMMARY: [(i64, &str); 2] = [
    (4000, "First knead the dough for ten minutes until smooth"),
    (16000, "Put the loaf in a hot oven for forty minutes"),
];

/// The kitchen video's whole-text document (bag-of-words vectors).
pub fn kitchen_document() -> kino_store::NewDocument {
    let text = KITCHEN_SUMMARY.iter().map(|(_, t)| *t).collect::<Vec<_>>().join(" ");
    kino_store::NewDocument {
        version: "bow-doc".into(),
        vector: embed(&text),
        pieces: KITCHEN_SUMMARY
            .iter()
            .scan(0i64, |byte, (start, t)| {
                let p = kino_store::DocPiece {
                    byte: *byte,
                    start_ms: *start,
                    end_ms: start + 4000,
                };
                *byte += t.len() as i64 + 1;
                Some(p)
            })
            .collect(),
        tokens: 21,
        truncated: false,
        windows: vec![kino_store::NewWindow {
            start_ms: 4000,
            end_ms: 20_000,
            start_byte: 0,
            end_byte: text.len() as i64,
            text: text.clone(),
            vector: embed(&text),
        }],
        summary: KITCHEN_SUMMARY
            .iter()
            .map(|(start, t)| kino_store::SummarySentence {
                start_ms: *start,
                end_ms: start + 4000,
                text: t.to_string(),
            })
            .collect(),
        text,
    }
}

/// Model versions written by the fixture.
pub fn versions() -> IndexVersions {
    IndexVersions::default()
        .with("text", "bow-test")
        .with("fusion", "bow-test")
}

/// A segment with bag-of-words embeddings.
pub fn seg(start_ms: i64, end_ms: i64, text: &str, tags: Vec<String>, thumbnail: Option<String>) -> NewSegment {
    NewSegment {
        start_ms,
        end_ms,
        text: text.to_string(),
        tags,
        fused: embed(text),
        text_emb: Some(embed(text)),
        visual_emb: None,
        model_version: "bow-test".into(),
        thumbnail,
    }
}

/// A throw-away database: a Postgres database dropped on `finish`, or a SQLite file.
pub struct TestDb {
    /// Its URL.
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

fn pg_base() -> String {
    std::env::var("KINO_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

impl TestDb {
    /// A new empty database.
    pub fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Postgres => {
                let name = format!(
                    "kino_web_test_{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::SeqCst),
                    kino_store::now_ms() % 1_000_000
                );
                TestDb {
                    url: format!("{}/{}", pg_base(), name),
                    pg_name: Some(name),
                    _dir: None,
                }
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = dir.path().join("kino.db").display().to_string();
                TestDb {
                    url,
                    pg_name: None,
                    _dir: Some(dir),
                }
            }
        }
    }

    /// Opens (and migrates) it.
    pub async fn open(&self) -> Store {
        Store::open(&self.url)
            .await
            .unwrap_or_else(|e| panic!("open {}: {e} (is Postgres up? KINO_TEST_PG)", self.url))
    }

    /// Closes the store and drops a Postgres database.
    pub async fn finish(self, store: Store) {
        store.close().await;
        if let Some(name) = &self.pg_name {
            let admin = Store::connect(&format!("{}/postgres", pg_base())).await.unwrap();
            sqlx_drop(&admin, name).await;
            admin.close().await;
        }
    }
}

async fn sqlx_drop(admin: &Store, name: &str) {
    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    sqlx::query(&sql)
        .execute(admin.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Runs the ffmpeg CLI; panics with its stderr when it fails.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("the ffmpeg CLI is needed to make the fixture videos (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The fixture library.
pub struct Fixture {
    /// Temp folder holding everything (shared so a test can keep it alive).
    pub dir: Arc<tempfile::TempDir>,
    /// The library root.
    pub library: PathBuf,
    /// The thumbnails folder.
    pub thumbs: PathBuf,
    /// `kitchen <b>&<i> bikes.webm` (20 s VP8): the one with the moments.
    pub kitchen: i64,
    /// `cats.mp4` (10 s H.264).
    pub cats: i64,
    /// A symlink in the library that points outside it.
    pub link_out: i64,
    /// A row whose path is outside the library.
    pub outside: i64,
    /// A path inside the library spelled with `..` that leaves it.
    pub dotdot: i64,
    /// A video whose indexing failed.
    pub failed: i64,
    /// Segment whose thumbnail reference tries to leave the thumbnails folder.
    pub evil_thumb_segment: i64,
    /// Segment ids of the kitchen video, in time order.
    pub kitchen_segments: Vec<i64>,
    /// Cues of the kitchen video, in time order (see [`kitchen_cues`]).
    pub kitchen_cues: Vec<CueRecord>,
}

/// Start of the kitchen video's speech cue that is the only cue inside its
/// segment (8–12 s, the segment without tags): that moment's sources are `["speech"]`.
pub const SPEECH_CUE_START_MS: i64 = 8500;
/// Start of the kitchen video's last speech cue (in German).
pub const OVEN_CUE_START_MS: i64 = 16_500;

/// The kitchen video's cues: subtitles over the first two segments, speech
/// over the third (the `<script>` text) and the last, on-screen text over
/// the bicycle segment.
pub fn kitchen_cues() -> Vec<CueRecord> {
    let cue = |start_ms: i64, end_ms: i64, text: &str, source: &str, language: Option<&str>| CueRecord {
        start_ms,
        end_ms,
        text: text.to_string(),
        source: source.to_string(),
        language: language.map(str::to_string),
    };
    vec![
        cue(
            500,
            3500,
            "Welcome to the kitchen, today we bake bread together",
            "subtitle",
            None,
        ),
        cue(
            4200,
            7800,
            "First knead the dough for ten minutes until smooth",
            "subtitle",
            None,
        ),
        cue(SPEECH_CUE_START_MS, 11_500, XSS_TEXT, "speech", Some("en")),
        cue(13_000, 15_000, "STONE WALL AHEAD", "screen", None),
        cue(
            OVEN_CUE_START_MS,
            19_500,
            "Das Brot kommt vierzig Minuten in den heißen Ofen",
            "speech",
            Some("de"),
        ),
    ]
}

/// The red-bicycle moment of the kitchen video.
pub const BICYCLE_START_MS: i64 = 12_000;
/// Subtitle text that tries to run a script.
pub const XSS_TEXT: &str = "<script>window.__kinoXss = 1; alert('xss')</script> <img src=x onerror=\"window.__kinoXss=2\"> markup in a subtitle";

async fn add_video(store: &Store, path: &Path, duration_ms: i64) -> i64 {
    let size = std::fs::metadata(path).map(|m| m.len() as i64).unwrap_or(0);
    let v = store
        .upsert_video(&NewVideo {
            path: path.display().to_string(),
            content_hash: None,
            size_bytes: size,
            mtime_ms: 0,
        })
        .await
        .unwrap();
    store
        .set_video_facts(
            v.id,
            &kino_store::MediaFacts {
                duration_ms: Some(duration_ms),
                width: Some(160),
                height: Some(120),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    v.id
}

impl Fixture {
    /// Makes the files and records videos and segments in `store`.
    pub async fn build(store: &Store) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let library = dir.path().join("library");
        let thumbs = dir.path().join("thumbs");
        let outside_dir = dir.path().join("outside");
        for d in [&library, &thumbs, &outside_dir] {
            std::fs::create_dir_all(d).unwrap();
        }
        let kitchen_path = library.join("kitchen <b>&<i> bikes.webm");
        let cats_path = library.join("cats.mp4");
        let secret = outside_dir.join("secret.webm");
        let k = kitchen_path.display().to_string();
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=160x120:rate=10",
            "-t",
            "20",
            "-c:v",
            "libvpx",
            "-g",
            "10",
            "-b:v",
            "150k",
            &k,
        ]);
        let c = cats_path.display().to_string();
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x120:rate=10",
            "-t",
            "10",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "10",
            &c,
        ]);
        std::fs::copy(&cats_path, &secret).unwrap();
        for (i, t) in [1, 5, 9, 13, 17].iter().enumerate() {
            let out = thumbs.join(format!("kitchen-{i}.png"));
            ffmpeg(&[
                "-ss",
                &t.to_string(),
                "-i",
                &k,
                "-frames:v",
                "1",
                "-vf",
                "scale=128:-1",
                &out.display().to_string(),
            ]);
        }
        std::fs::write(outside_dir.join("secret.png"), b"not for you").unwrap();
        let link = library.join("link-out.webm");
        std::os::unix::fs::symlink(&secret, &link).unwrap();

        let kitchen = add_video(store, &kitchen_path, 20_000).await;
        let cats = add_video(store, &cats_path, 10_000).await;
        let link_out = add_video(store, &link, 10_000).await;
        let outside = add_video(store, &secret, 10_000).await;
        let dotdot = add_video(store, &library.join("..").join("outside").join("secret.webm"), 10_000).await;
        let failed = add_video(store, &library.join("broken.mkv"), 0).await;
        store
            .set_video_status(
                failed,
                VideoStatus::Failed,
                Some("broken.mkv: invalid data found when processing input"),
            )
            .await
            .unwrap();

        let texts = [
            "Welcome to the kitchen, today we bake bread together",
            "First knead the dough for ten minutes until smooth",
            XSS_TEXT,
            "The red bicycle leans against the old stone wall",
            "Put the loaf in a hot oven for forty minutes",
        ];
        let tags = [
            vec!["kitchen"],
            vec!["dough"],
            vec![],
            vec!["bicycle", "wall"],
            vec!["oven"],
        ];
        let kitchen_segs: Vec<NewSegment> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let start = i as i64 * 4000;
                seg(
                    start,
                    start + 4000,
                    t,
                    tags[i].iter().map(|s| s.to_string()).collect(),
                    Some(format!("kitchen-{i}.png")),
                )
            })
            .collect();
        let kitchen_segments = store
            .replace_segments(kitchen, &kitchen_segs, &versions())
            .await
            .unwrap();
        let kitchen_cues = kitchen_cues();
        store.replace_cues(kitchen, &kitchen_cues).await.unwrap();
        // Its whole-text document, with a summary of two of its sentences.
        store
            .replace_document(kitchen, Some(&kitchen_document()), &versions())
            .await
            .unwrap();
        let cats_segs = vec![
            seg(
                0,
                5000,
                "A cat sleeps on the sofa in the sun",
                vec!["tabby cat".into()],
                Some("../outside/secret.png".into()),
            ),
            seg(
                5000,
                10_000,
                "The cat chases a small grey mouse",
                vec!["tabby cat".into()],
                None,
            ),
        ];
        let cat_ids = store.replace_segments(cats, &cats_segs, &versions()).await.unwrap();
        for id in [link_out, outside, dotdot] {
            store
                .replace_segments(
                    id,
                    &[seg(0, 1000, "secret outside the library", vec![], None)],
                    &versions(),
                )
                .await
                .unwrap();
        }
        Fixture {
            dir: Arc::new(dir),
            library,
            thumbs,
            kitchen,
            cats,
            link_out,
            outside,
            dotdot,
            failed,
            evil_thumb_segment: cat_ids[0],
            kitchen_segments,
            kitchen_cues,
        }
    }

    /// Web configuration serving this library.
    pub fn config(&self) -> kino_web::WebConfig {
        kino_web::WebConfig {
            library_roots: vec![self.library.clone()],
            thumbnails_dir: Some(self.thumbs.clone()),
            ..Default::default()
        }
    }
}

/// The engine for `store`.
pub fn engine(store: &Store) -> Arc<dyn QueryEngine> {
    Arc::new(BowEngine { store: store.clone() })
}
