//! API integration tests: the real router over a real store (Postgres and
//! SQLite) holding a fixture library of real video files made with ffmpeg.
//! The query engine is the test one (bag-of-words over the store's exact
//! index, see `common`); production uses the fusion engine.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use common::http::{app_for, get, post_json, send};
use common::{Fixture, TestDb, BICYCLE_START_MS, OVEN_CUE_START_MS, SPEECH_CUE_START_MS, XSS_TEXT};
use kino_store::{Backend, Store};
use kino_web::{router, AppState, WebConfig};
use serde_json::Value;

both_backends!(
    search_ranks_the_right_moment_first,
    |app: Router, _store: Store, fx: Fixture| async move {
        let r = get(&app, "/api/search?q=red%20bicycle%20wall&k=3").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let j = r.json();
        let results = j["results"].as_array().expect("results array");
        assert!(!results.is_empty() && results.len() <= 3, "{j}");
        let first = &results[0];
        assert_eq!(first["video_id"], fx.kitchen);
        assert_eq!(first["start_ms"], BICYCLE_START_MS);
        assert_eq!(first["end_ms"], BICYCLE_START_MS + 4000);
        assert!(first["path"].as_str().unwrap().ends_with("kitchen <b>&<i> bikes.webm"));
        assert!(first["text"].as_str().unwrap().contains("red bicycle"));
        assert_eq!(first["tags"], serde_json::json!(["bicycle", "wall"]));
        assert_eq!(first["thumbnail"], format!("/thumbnails/{}", fx.kitchen_segments[3]));
        let s0 = first["score"].as_f64().unwrap();
        for r in &results[1..] {
            assert!(r["score"].as_f64().unwrap() <= s0);
        }
        // Restricted to one video.
        let j = get(&app, &format!("/api/search?q=cat&video={}", fx.kitchen))
            .await
            .json();
        assert!(
            j["results"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["video_id"] == fx.kitchen),
            "{j}"
        );
        let j = get(&app, &format!("/api/search?q=cat%20mouse&video={}", fx.cats))
            .await
            .json();
        assert_eq!(j["results"][0]["start_ms"], 5000, "{j}");
    }
);

both_backends!(
    bad_search_requests_get_json_errors,
    |app: Router, _store: Store, _fx: Fixture| async move {
        for (uri, want) in [
            ("/api/search", StatusCode::BAD_REQUEST),
            ("/api/search?q=", StatusCode::BAD_REQUEST),
            ("/api/search?q=%20%20", StatusCode::BAD_REQUEST),
            ("/api/search?q=cat&k=0", StatusCode::BAD_REQUEST),
            ("/api/search?q=cat&k=1000", StatusCode::BAD_REQUEST),
            ("/api/search?q=cat&k=abc", StatusCode::BAD_REQUEST),
            ("/api/nothing", StatusCode::NOT_FOUND),
        ] {
            let r = get(&app, uri).await;
            assert_eq!(r.status, want, "{uri}: {}", r.text());
            let j = r.json();
            assert_eq!(j["status"], want.as_u16(), "{uri}: {j}");
            assert!(!j["error"].as_str().unwrap().is_empty(), "{uri}: {j}");
        }
        let long = "a".repeat(1001);
        let r = get(&app, &format!("/api/search?q={long}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.json()["error"].as_str().unwrap().contains("longer than 1000"));
        let huge = "a".repeat(5000);
        let r = get(&app, &format!("/api/search?q={huge}")).await;
        assert_eq!(r.status, StatusCode::URI_TOO_LONG);
        let big_body = format!("{{\"question\":\"{}\"}}", "a".repeat(100_000));
        let r = post_json(&app, "/api/ask", &big_body).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
        let r = post_json(&app, "/api/ask", "{not json").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
        assert!(r.json()["error"].is_string());
        let r = post_json(&app, "/api/ask", "{\"question\":\"\"}").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
    }
);

both_backends!(
    ask_answers_with_citations_and_is_stored,
    |app: Router, store: Store, fx: Fixture| async move {
        let r = post_json(&app, "/api/ask", r#"{"question":"where does the red bicycle lean?"}"#).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let j = r.json();
        assert!(
            j["answer"]
                .as_str()
                .unwrap()
                .contains("red bicycle leans against the old stone wall"),
            "{j}"
        );
        let c = &j["citations"][0];
        assert_eq!(c["video_id"], fx.kitchen);
        assert_eq!(c["start_ms"], BICYCLE_START_MS);
        assert!(c["path"].as_str().unwrap().ends_with(".webm"));
        let qid = j["query_id"].as_i64().unwrap();
        let recent = store.recent_queries(10).await.unwrap();
        let rec = recent.iter().find(|q| q.id == qid).expect("question stored");
        assert_eq!(rec.question, "where does the red bicycle lean?");
        assert_eq!(rec.kind, "ask");
        assert_eq!(rec.model_version, "bow-test");
        assert_eq!(rec.answer.as_deref(), j["answer"].as_str());
        assert_eq!(rec.citations[0]["start_ms"], BICYCLE_START_MS);
        // The History page shows it.
        let h = get(&app, "/history").await;
        assert_eq!(h.status, StatusCode::OK);
        assert!(h.text().contains("where does the red bicycle lean?"));
        assert!(h.text().contains("red bicycle leans against"));
    }
);

both_backends!(
    library_api_lists_videos_segments_and_jobs,
    |app: Router, store: Store, fx: Fixture| async move {
        let j = get(&app, "/api/videos").await.json();
        let videos = j["videos"].as_array().unwrap();
        assert_eq!(videos.len(), 6);
        let k = videos.iter().find(|v| v["id"] == fx.kitchen).unwrap();
        assert_eq!(k["status"], "done");
        assert_eq!(k["segment_count"], 5);
        assert_eq!(k["duration_ms"], 20_000);
        assert_eq!(k["name"], "kitchen <b>&<i> bikes.webm");
        let f = videos.iter().find(|v| v["id"] == fx.failed).unwrap();
        assert_eq!(f["status"], "failed");
        assert!(f["error"].as_str().unwrap().contains("invalid data"));
        assert_eq!(f["segment_count"], 0);

        let d = get(&app, &format!("/api/videos/{}", fx.cats)).await.json();
        assert_eq!(d["video"]["id"], fx.cats);
        let segs = d["segments"].as_array().unwrap();
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[1]["start_ms"], 5000);
        assert!(segs[1]["text"].as_str().unwrap().contains("mouse"));
        assert!(segs[0].get("fused").is_none(), "no embeddings in the API");
        assert_eq!(get(&app, "/api/videos/99999").await.status, StatusCode::NOT_FOUND);
        assert_eq!(get(&app, "/api/videos/abc").await.status, StatusCode::NOT_FOUND);

        // Jobs, with progress from a running job's checkpoint.
        let job = store.enqueue_job(fx.cats, "index").await.unwrap();
        let claimed = store
            .claim_job("w1", std::time::Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claimed.id, job.id);
        store
            .checkpoint_job(job.id, "w1", r#"{"done":1,"total":4}"#)
            .await
            .unwrap();
        let j = get(&app, "/api/jobs").await.json();
        assert_eq!(j["jobs"][0]["id"], job.id);
        assert_eq!(j["jobs"][0]["state"], "running");
        assert_eq!(j["counts"]["running"], 1);
        let j = get(&app, "/api/videos").await.json();
        let c = j["videos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == fx.cats)
            .unwrap()
            .clone();
        assert_eq!(c["progress"], 0.25);

        // Reindex goes to the engine; an unknown video is 404.
        let r = post_json(&app, "/api/reindex", &format!("{{\"video\":{}}}", fx.kitchen)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["reindexed"], 1);
        assert_eq!(
            post_json(&app, "/api/reindex", "{\"video\":424242}").await.status,
            StatusCode::NOT_FOUND
        );
        // Still searchable after the reindex.
        let j = get(&app, "/api/search?q=red%20bicycle").await.json();
        assert_eq!(j["results"][0]["start_ms"], BICYCLE_START_MS);
    }
);

both_backends!(
    media_is_served_with_ranges_by_id_only,
    |app: Router, store: Store, fx: Fixture| async move {
        let path = store.video(fx.kitchen).await.unwrap().unwrap().path;
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let r = get(&app, &format!("/media/{}", fx.kitchen)).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("content-type"), "video/webm");
        assert_eq!(r.header("accept-ranges"), "bytes");
        assert_eq!(r.body, bytes);
        // A byte range.
        let req = Request::get(format!("/media/{}", fx.kitchen))
            .header(header::RANGE, "bytes=100-1099")
            .body(Body::empty());
        let r = send(&app, req.unwrap()).await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(r.header("content-range"), format!("bytes 100-1099/{}", bytes.len()));
        assert_eq!(r.body, &bytes[100..1100]);
        // An open-ended range, as browsers send.
        let req = Request::get(format!("/media/{}", fx.kitchen))
            .header(header::RANGE, "bytes=500-")
            .body(Body::empty());
        let r = send(&app, req.unwrap()).await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(r.body, &bytes[500..]);
        // An unsatisfiable range.
        let req = Request::get(format!("/media/{}", fx.kitchen))
            .header(header::RANGE, format!("bytes={}-", bytes.len() + 10))
            .body(Body::empty());
        assert_eq!(send(&app, req.unwrap()).await.status, StatusCode::RANGE_NOT_SATISFIABLE);
        // Content type by extension, not compressed.
        let req = Request::get(format!("/media/{}", fx.cats))
            .header(header::ACCEPT_ENCODING, "gzip")
            .body(Body::empty());
        let r = send(&app, req.unwrap()).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("content-type"), "video/mp4");
        assert_eq!(r.header("content-encoding"), "");
        assert_eq!(
            r.body.len() as u64,
            std::fs::metadata(fx.library.join("cats.mp4")).unwrap().len()
        );

        // Nothing outside the library: symlink out, a path outside, `..` that leaves, traversal in the URL.
        for uri in [
            format!("/media/{}", fx.link_out),
            format!("/media/{}", fx.outside),
            format!("/media/{}", fx.dotdot),
            format!("/media/{}", fx.failed),
            "/media/999999".into(),
            "/media/..%2F..%2F..%2Fetc%2Fpasswd".into(),
            "/media/%2e%2e%2fetc%2fpasswd".into(),
            "/media/../../etc/passwd".into(),
            "/media/1%2F..%2F2".into(),
            "/media/-1".into(),
            "/thumbnails/..%2Fsecret.png".into(),
            "/thumbnails/../outside/secret.png".into(),
            format!("/thumbnails/{}", fx.evil_thumb_segment),
            "/thumbnails/999999".into(),
        ] {
            let r = get(&app, &uri).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}: {}", r.text());
            assert!(
                !r.text().contains("not for you"),
                "{uri} leaked a file outside the library"
            );
        }
        // Thumbnails by segment id.
        let r = get(&app, &format!("/thumbnails/{}", fx.kitchen_segments[3])).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("content-type"), "image/png");
        assert_eq!(r.body, std::fs::read(fx.thumbs.join("kitchen-3.png")).unwrap());
    }
);

both_backends!(
    pages_render_and_escape_untrusted_text,
    |app: Router, _store: Store, fx: Fixture| async move {
        let r = get(&app, "/?q=markup%20subtitle&mode=search").await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.header("content-type").starts_with("text/html"));
        let html = r.text();
        assert!(html.contains("&lt;script&gt;window.__kinoXss"), "subtitle text escaped");
        assert!(!html.contains("<script>window"), "no raw script from a subtitle");
        assert!(!html.contains("<img src=x"), "no raw tag from a subtitle");
        assert!(
            html.contains("kitchen &lt;b&gt;&amp;&lt;i&gt; bikes.webm"),
            "file name escaped"
        );
        assert!(!html.contains("<b>&<i>"));
        assert!(html.contains("<mark>markup</mark>"), "matching words highlighted");
        assert!(html.contains(&format!("data-video=\"{}\" data-start=\"8000\"", fx.kitchen)));
        // A question gets an answer block with a linked sentence.
        let html = get(&app, "/?q=where%20does%20the%20red%20bicycle%20lean%3F")
            .await
            .text();
        assert!(html.contains("id=\"answer\""), "questions are answered");
        assert!(html.contains(&format!(
            "class=\"cite\" data-video=\"{}\" data-start=\"{BICYCLE_START_MS}\"",
            fx.kitchen
        )));
        // A query that escapes the attribute stays inside it.
        let html = get(&app, "/?q=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E").await.text();
        assert!(!html.contains("<script>alert(1)"));
        // Library shows status, error, segments; history exists; assets served.
        let lib = get(&app, "/library").await.text();
        assert!(lib.contains("status-failed") && lib.contains("invalid data found"));
        assert!(lib.contains("5 segments") && lib.contains("class=\"timeline\""));
        assert!(lib.contains(&format!("data-reindex=\"{}\"", fx.kitchen)));
        assert_eq!(get(&app, "/history").await.status, StatusCode::OK);
        assert!(get(&app, "/static/app.js").await.text().contains("currentTime"));
        assert!(get(&app, "/static/app.css")
            .await
            .header("content-type")
            .starts_with("text/css"));
    }
);

both_backends!(
    search_results_carry_their_sources,
    |app: Router, store: Store, fx: Fixture| async move {
        // The 8–12 s segment (no tags) overlaps only the speech cue at 8.5 s.
        let j = get(&app, "/api/search?q=markup%20subtitle&k=1").await.json();
        let first = &j["results"][0];
        assert_eq!(first["video_id"], fx.kitchen, "{j}");
        assert_eq!(first["start_ms"], 8000, "{j}");
        assert_eq!(first["sources"], serde_json::json!(["speech"]), "{j}");
        // The first segment overlaps a subtitle and has visual tags.
        let j = get(&app, "/api/search?q=welcome%20kitchen%20bake%20bread&k=1")
            .await
            .json();
        assert_eq!(j["results"][0]["start_ms"], 0, "{j}");
        assert_eq!(
            j["results"][0]["sources"],
            serde_json::json!(["subtitle", "visual"]),
            "{j}"
        );
        // The bicycle: on-screen text and pictures.
        let j = get(&app, "/api/search?q=red%20bicycle%20wall&k=1").await.json();
        assert_eq!(j["results"][0]["start_ms"], BICYCLE_START_MS, "{j}");
        assert_eq!(
            j["results"][0]["sources"],
            serde_json::json!(["screen", "visual"]),
            "{j}"
        );
        // A video without cues and a segment without tags: no sources at all.
        store
            .replace_segments(
                fx.cats,
                &[common::seg(
                    0,
                    5000,
                    "A cat sleeps on the sofa in the sun",
                    vec![],
                    None,
                )],
                &common::versions(),
            )
            .await
            .unwrap();
        let j = get(&app, &format!("/api/search?q=cat%20sofa&video={}", fx.cats))
            .await
            .json();
        assert_eq!(j["results"][0]["sources"], serde_json::json!([]), "{j}");
        // The search page shows them as badges, and links each result to its video page.
        let html = get(&app, "/?q=markup%20subtitle&mode=search").await.text();
        assert!(
            html.contains("class=\"source source-speech\" data-source=\"speech\">said</li>"),
            "{html}"
        );
        assert!(
            html.contains(&format!("href=\"/videos/{}?t=8000\"", fx.kitchen)),
            "results link to the video page"
        );
        let html = get(&app, "/?q=red%20bicycle%20wall&mode=search").await.text();
        assert!(
            html.contains(">on screen</li>") && html.contains(">picture</li>"),
            "{html}"
        );
        // Citations of an answer carry them too.
        let r = post_json(&app, "/api/ask", r#"{"question":"where does the red bicycle lean?"}"#).await;
        let j = r.json();
        assert_eq!(
            j["citations"][0]["sources"],
            serde_json::json!(["screen", "visual"]),
            "{j}"
        );
    }
);

both_backends!(
    video_detail_has_transcript_facts_warnings_and_language,
    |app: Router, store: Store, fx: Fixture| async move {
        let warning = "audio stream unreadable: <b>invalid</b> packet at 3.2 s".to_string();
        store
            .set_video_warnings(fx.kitchen, std::slice::from_ref(&warning))
            .await
            .unwrap();
        let r = get(&app, &format!("/api/videos/{}", fx.kitchen)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let d = r.json();
        assert_eq!(d["video"]["id"], fx.kitchen);
        assert_eq!(d["video"]["status"], "done");
        assert_eq!(d["facts"]["duration_ms"], 20_000);
        assert_eq!(d["facts"]["width"], 160);
        let size = std::fs::metadata(fx.library.join("kitchen <b>&<i> bikes.webm"))
            .unwrap()
            .len();
        assert_eq!(d["facts"]["size_bytes"], size);
        assert_eq!(
            d["stage_versions"],
            serde_json::json!({"fusion": "bow-test", "text": "bow-test"})
        );
        assert_eq!(d["warnings"], serde_json::json!([warning]));
        assert_eq!(d["language"], Value::Null);
        let t = d["transcript"].as_array().unwrap();
        let want = common::kitchen_cues();
        assert_eq!(t.len(), want.len(), "{d}");
        for (got, c) in t.iter().zip(&want) {
            assert_eq!(got["start_ms"], c.start_ms);
            assert_eq!(got["end_ms"], c.end_ms);
            assert_eq!(got["text"], c.text.as_str());
            assert_eq!(got["source"], c.source.as_str());
            assert_eq!(got["language"], serde_json::json!(c.language));
        }
        assert_eq!(t[2]["source"], "speech");
        assert_eq!(t[2]["language"], "en");
        assert_eq!(t[2]["text"], XSS_TEXT);
        assert_eq!(t[0]["language"], Value::Null, "unknown language is null, not absent");
        assert_eq!(d["segments"].as_array().unwrap().len(), 5);
        // Its summary and whole-text document.
        let summary = d["summary"].as_array().unwrap();
        assert_eq!(summary.len(), common::KITCHEN_SUMMARY.len(), "{d}");
        for (got, (start, text)) in summary.iter().zip(common::KITCHEN_SUMMARY) {
            assert_eq!(got["start_ms"], start);
            assert_eq!(got["end_ms"], start + 4000);
            assert_eq!(got["text"], text);
        }
        assert_eq!(d["document"]["windows"], 1);
        assert_eq!(d["document"]["tokens"], 21);
        assert_eq!(d["document"]["truncated"], false);
        // A video without cues has an empty transcript, no summary, no document.
        let d = get(&app, &format!("/api/videos/{}", fx.cats)).await.json();
        assert_eq!(d["transcript"], serde_json::json!([]));
        assert_eq!(d["warnings"], serde_json::json!([]));
        assert_eq!(d["summary"], serde_json::json!([]));
        assert_eq!(d["document"], Value::Null);
    }
);

both_backends!(
    language_override_validates_and_queues_a_reindex,
    |app: Router, store: Store, fx: Fixture| async move {
        let uri = format!("/api/videos/{}/language", fx.kitchen);
        let r = post_json(&app, &uri, r#"{"language":"de"}"#).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let j = r.json();
        assert_eq!(j["video_id"], fx.kitchen);
        assert_eq!(j["language"], "de");
        assert_eq!(j["job"]["kind"], "reindex");
        assert_eq!(j["job"]["state"], "queued");
        assert_eq!(j["job"]["video_id"], fx.kitchen);
        assert_eq!(
            store.video(fx.kitchen).await.unwrap().unwrap().language.as_deref(),
            Some("de")
        );
        let jobs = store.jobs_of_video(fx.kitchen).await.unwrap();
        assert_eq!(jobs.len(), 1, "one reindex job queued");
        assert_eq!(
            (jobs[0].kind.as_str(), jobs[0].id),
            ("reindex", j["job"]["id"].as_i64().unwrap())
        );
        // The video's API shows the override.
        assert_eq!(
            get(&app, &format!("/api/videos/{}", fx.kitchen)).await.json()["language"],
            "de"
        );
        // Three letters, then back to detection; the queued job is reused, not doubled.
        let r = post_json(&app, &uri, r#"{"language":"haw"}"#).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let r = post_json(&app, &uri, r#"{"language":null}"#).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["language"], Value::Null);
        assert_eq!(store.video(fx.kitchen).await.unwrap().unwrap().language, None);
        assert_eq!(store.jobs_of_video(fx.kitchen).await.unwrap().len(), 1);

        // Bad codes and bodies: 400 with a message saying what is expected; nothing changes.
        store.set_video_language(fx.kitchen, Some("fr")).await.unwrap();
        for body in [
            r#"{"language":"DE"}"#,
            r#"{"language":"d"}"#,
            r#"{"language":"deut"}"#,
            r#"{"language":"d3"}"#,
            r#"{"language":""}"#,
            r#"{"language":"<script>"}"#,
            r#"{"language":7}"#,
            r#"{"lang":"de"}"#,
            r#"["de"]"#,
            "{not json",
        ] {
            let r = post_json(&app, &uri, body).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text());
            let e = r.json();
            assert_eq!(e["status"], 400, "{body}: {e}");
            let msg = e["error"].as_str().unwrap();
            assert!(!msg.is_empty(), "{body}: {e}");
            if body.contains("\"language\":") {
                assert!(msg.contains("lowercase letters"), "{body}: {msg}");
            }
        }
        assert_eq!(
            store.video(fx.kitchen).await.unwrap().unwrap().language.as_deref(),
            Some("fr")
        );
        // Unknown videos: 404, and no job.
        for uri in ["/api/videos/424242/language", "/api/videos/abc/language"] {
            let r = post_json(&app, uri, r#"{"language":"de"}"#).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}: {}", r.text());
            assert!(r.json()["error"].as_str().unwrap().contains("no video"));
        }
        // A failed video can be given a language too: its reindex is queued.
        let r = post_json(
            &app,
            &format!("/api/videos/{}/language", fx.failed),
            r#"{"language":"en"}"#,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["job"]["kind"], "reindex");
    }
);

both_backends!(
    video_page_shows_transcript_and_escapes_it,
    |app: Router, store: Store, fx: Fixture| async move {
        store
            .set_video_warnings(fx.kitchen, &["audio stream unreadable: <i>bad</i>".to_string()])
            .await
            .unwrap();
        store.set_video_language(fx.kitchen, Some("de")).await.unwrap();
        let r = get(&app, &format!("/videos/{}?t={OVEN_CUE_START_MS}", fx.kitchen)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert!(r.header("content-type").starts_with("text/html"));
        let html = r.text();
        assert!(
            html.contains("kitchen &lt;b&gt;&amp;&lt;i&gt; bikes.webm"),
            "file name escaped"
        );
        assert!(!html.contains("<b>&<i>"));
        // Transcript lines of every source, linked to their moments, text escaped.
        assert_eq!(html.matches("class=\"cue-line\"").count(), 5, "{html}");
        assert!(html.contains(&format!("href=\"/videos/{}?t={SPEECH_CUE_START_MS}\"", fx.kitchen)));
        assert!(html.contains(&format!(
            "data-video=\"{}\" data-start=\"{SPEECH_CUE_START_MS}\"",
            fx.kitchen
        )));
        assert!(html.contains("&lt;script&gt;window.__kinoXss"), "cue text escaped");
        assert!(!html.contains("<script>window") && !html.contains("<img src=x"));
        assert!(html.contains("<span class=\"cue-text\" lang=\"de\">Das Brot"), "{html}");
        assert!(html.contains(">said</li>") && html.contains(">subtitles</li>") && html.contains(">on screen</li>"));
        // The player opens at ?t=.
        assert!(html.contains(&format!("data-start-at=\"{OVEN_CUE_START_MS}\"")));
        assert!(html.contains(&format!("src=\"/media/{}#t=16.500\"", fx.kitchen)));
        // Facts, stages, warnings (escaped), language form.
        assert!(html.contains("<dt>Duration</dt><dd>0:20</dd>"), "{html}");
        assert!(html.contains("<dt>text</dt><dd><code>bow-test</code></dd>"), "{html}");
        assert!(html.contains("audio stream unreadable: &lt;i&gt;bad&lt;/i&gt;"));
        assert!(html.contains(&format!("data-video-language=\"{}\"", fx.kitchen)));
        assert!(html.contains("name=\"language\" value=\"de\""));
        // A bad ?t= opens at the start; an unknown video is 404; the library links here.
        let html = get(&app, &format!("/videos/{}?t=abc", fx.kitchen)).await.text();
        assert!(html.contains("data-start-at=\"0\""));
        let html = get(&app, &format!("/videos/{}", fx.cats)).await.text();
        assert!(html.contains("id=\"transcript-empty\""), "no cues: says so");
        assert_eq!(get(&app, "/videos/424242").await.status, StatusCode::NOT_FOUND);
        assert_eq!(get(&app, "/videos/abc").await.status, StatusCode::NOT_FOUND);
        let lib = get(&app, "/library").await.text();
        assert!(lib.contains(&format!("href=\"/videos/{}\"", fx.kitchen)));
    }
);

both_backends!(ops_endpoints, |app: Router, _store: Store, _fx: Fixture| async move {
    let r = get(&app, "/healthz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "ok");
    get(&app, "/api/search?q=bread").await;
    let m = get(&app, "/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m.header("content-type").starts_with("text/plain"));
    let text = m.text();
    assert!(text.contains("kino_http_requests_total"), "{text}");
    assert!(text.contains("route=\"/api/search\""), "{text}");
    assert!(text.contains("kino_searches_waiting "), "{text}");
    let doc = get(&app, "/api/openapi.json").await.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for p in [
        "/api/search",
        "/api/ask",
        "/api/videos",
        "/api/videos/{id}",
        "/api/videos/{id}/language",
        "/api/jobs",
        "/api/reindex",
        "/media/{video_id}",
        "/thumbnails/{segment_id}",
        "/healthz",
        "/metrics",
    ] {
        assert!(doc["paths"].get(p).is_some(), "openapi lacks {p}");
    }
    assert!(doc["components"]["schemas"]["Moment"].is_object());
    assert!(doc["components"]["schemas"]["Moment"]["properties"]["sources"].is_object());
    assert!(doc["components"]["schemas"]["TranscriptCue"].is_object());
    assert!(doc["components"]["schemas"]["LanguageRequest"].is_object());
    // Compressed when asked.
    let req = Request::get("/api/openapi.json")
        .header(header::ACCEPT_ENCODING, "gzip")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, req).await.header("content-encoding"), "gzip");
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_guards_api_media_and_pages() {
    let db = TestDb::new(Backend::Sqlite);
    let store = db.open().await;
    let fx = Fixture::build(&store).await;
    let config = WebConfig {
        token: Some("s3cret-token".into()),
        ..fx.config()
    };
    let app = app_for(&store, &config);

    for uri in [
        "/api/search?q=bread".to_string(),
        "/api/videos".into(),
        format!("/media/{}", fx.kitchen),
        "/metrics".into(),
        format!("/thumbnails/{}", fx.kitchen_segments[0]),
    ] {
        let r = get(&app, &uri).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(r.header("www-authenticate"), "Bearer");
        assert_eq!(r.json()["status"], 401);
        let wrong = Request::get(&uri)
            .header(header::AUTHORIZATION, "Bearer nope")
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&app, wrong).await.status, StatusCode::UNAUTHORIZED, "{uri}");
        let right = Request::get(&uri)
            .header(header::AUTHORIZATION, "Bearer s3cret-token")
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&app, right).await.status, StatusCode::OK, "{uri}");
    }
    assert_eq!(
        post_json(&app, "/api/ask", r#"{"question":"bread"}"#).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Pages redirect to the login form; health stays open.
    let r = get(&app, "/library").await;
    assert!(r.status.is_redirection());
    assert_eq!(r.header("location"), "/login");
    assert_eq!(get(&app, "/healthz").await.status, StatusCode::OK);
    assert_eq!(get(&app, "/login").await.status, StatusCode::OK);
    // Login: wrong token refused, right token sets a session cookie that works.
    let form = |t: &str| {
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={t}")))
            .unwrap()
    };
    let r = send(&app, form("wrong")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.header("set-cookie").is_empty());
    let r = send(&app, form("s3cret-token")).await;
    assert!(r.status.is_redirection());
    let cookie = r.header("set-cookie").to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let req = Request::get("/api/videos")
        .header(header::COOKIE, &session)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, req).await.status, StatusCode::OK);
    let req = Request::get("/library")
        .header(header::COOKIE, &session)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, req).await.status, StatusCode::OK);
    let req = Request::get("/api/videos")
        .header(header::COOKIE, "kino_session=forged")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, req).await.status, StatusCode::UNAUTHORIZED);
    db.finish(store).await;
}

#[tokio::test]
async fn non_loopback_bind_without_token_refuses_to_start() {
    let db = TestDb::new(Backend::Sqlite);
    let store = db.open().await;
    let engine = common::engine(&store);
    let config = WebConfig {
        bind: "0.0.0.0:0".parse().unwrap(),
        ..Default::default()
    };
    let err = kino_web::serve(config, store.clone(), engine.clone(), async {})
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("without a token") && msg.contains("0.0.0.0"), "{msg}");
    let config = WebConfig {
        bind: "[::]:0".parse().unwrap(),
        ..Default::default()
    };
    assert!(kino_web::serve(config, store.clone(), engine.clone(), async {})
        .await
        .is_err());
    let config = WebConfig {
        bind: "0.0.0.0:0".parse().unwrap(),
        token: Some(String::new()),
        ..Default::default()
    };
    assert!(kino_web::serve(config, store.clone(), engine.clone(), async {})
        .await
        .is_err());
    // With a token it starts (and stops at once on the shutdown signal).
    let config = WebConfig {
        bind: "0.0.0.0:0".parse().unwrap(),
        token: Some("t".into()),
        ..Default::default()
    };
    kino_web::serve(config, store.clone(), engine.clone(), async {})
        .await
        .unwrap();
    // Loopback without a token is the default and starts.
    let config = WebConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    kino_web::serve(config, store.clone(), engine, async {}).await.unwrap();
    db.finish(store).await;
}

/// An engine that never answers in time.
struct SlowEngine;

impl kino_web::QueryEngine for SlowEngine {
    fn search(
        &self,
        _q: &str,
        _k: usize,
        _v: Option<i64>,
    ) -> kino_web::BoxFuture<'_, anyhow::Result<Vec<kino_web::Moment>>> {
        Box::pin(async {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            Ok(vec![])
        })
    }
    fn ask(&self, _q: &str) -> kino_web::BoxFuture<'_, anyhow::Result<kino_web::Answer>> {
        Box::pin(async { anyhow::bail!("the answer model is not loaded") })
    }
    fn reindex(&self, _v: Option<i64>, _s: bool) -> kino_web::BoxFuture<'_, anyhow::Result<Value>> {
        Box::pin(async { Ok(Value::Null) })
    }
}

#[tokio::test]
async fn slow_and_failing_engines_answer_json_errors() {
    let db = TestDb::new(Backend::Sqlite);
    let store = db.open().await;
    let config = WebConfig {
        request_timeout: std::time::Duration::from_millis(300),
        ..Default::default()
    };
    let app = router(Arc::new(AppState::new(&config, store.clone(), Arc::new(SlowEngine))));
    let started = std::time::Instant::now();
    let r = get(&app, "/api/search?q=bread").await;
    assert_eq!(r.status, StatusCode::REQUEST_TIMEOUT, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("300 ms"));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let r = post_json(&app, "/api/ask", r#"{"question":"why?"}"#).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(r.json()["error"].as_str().unwrap().contains("not loaded"));
    // Pages show the failure instead of failing.
    let r = get(&app, "/?q=why%3F").await;
    assert_eq!(r.status, StatusCode::REQUEST_TIMEOUT);
    db.finish(store).await;
}

both_backends!(
    feedback_marks_a_result_and_refuses_bad_input,
    |app: Router, store: Store, fx: Fixture| async move {
        let seg = store.segments(fx.kitchen).await.unwrap().remove(0);
        let body = format!(r#"{{"query":" red bicycle ","segment_id":{},"right":false}}"#, seg.id);
        let r = post_json(&app, "/api/feedback", &body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let j = r.json();
        assert_eq!(
            (j["video_id"].as_i64(), j["right"].as_bool()),
            (Some(fx.kitchen), Some(false))
        );
        assert_eq!(
            (j["start_ms"].as_i64(), j["end_ms"].as_i64()),
            (Some(seg.start_ms), Some(seg.end_ms))
        );
        let marks = store.feedback().await.unwrap();
        assert_eq!(marks.len(), 1);
        assert_eq!(
            (marks[0].id, marks[0].query.as_str()),
            (j["id"].as_i64().unwrap(), "red bicycle")
        );

        let empty = format!(r#"{{"query":"  ","segment_id":{},"right":true}}"#, seg.id);
        let r = post_json(&app, "/api/feedback", &empty).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
        assert!(r.text().contains("query is empty"), "{}", r.text());
        let r = post_json(
            &app,
            "/api/feedback",
            r#"{"query":"x","segment_id":999999,"right":true}"#,
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
        let r = post_json(&app, "/api/feedback", r#"{"query":"x"}"#).await;
        assert!(r.status.is_client_error(), "{}", r.text());
        assert!(r.text().contains("segment_id"), "{}", r.text());
        assert_eq!(store.feedback().await.unwrap().len(), 1, "nothing stored for bad input");
    }
);
