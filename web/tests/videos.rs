//! Whole videos in the web layer: `GET /api/search?by=video`, and the
//! search page's Videos mode and the video page's summary as the server
//! renders them (no JavaScript). Real router, real store (Postgres and
//! SQLite), the fixture library and the test engine (see `common`).

mod common;

use axum::http::StatusCode;
use axum::Router;
use common::http::{app_for, get};
use common::{Fixture, TestDb, BICYCLE_START_MS};
use kino_store::{Backend, Store};

both_backends!(
    search_by_video_ranks_videos_with_their_best_moments,
    |app: Router, _store: Store, fx: Fixture| async move {
        let r = get(&app, "/api/search?q=cat%20mouse%20sofa&by=video&k=5").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let j = r.json();
        let results = j["results"].as_array().expect("results array");
        assert!(!results.is_empty(), "{j}");
        let first = &results[0];
        assert_eq!(first["video_id"], fx.cats, "{j}");
        assert!(first["path"].as_str().unwrap().ends_with("cats.mp4"));
        assert_eq!(first["duration_ms"], 10_000);
        assert!(first["score"].as_f64().unwrap() > 0.0);
        let moments = first["best_moments"].as_array().unwrap();
        assert_eq!(moments.len(), 2, "both of its moments: {j}");
        assert!(moments.iter().all(|m| m["text"].as_str().unwrap().contains("cat")));
        assert!(moments[0]["start_ms"].as_i64() < moments[0]["end_ms"].as_i64());
        // Bad values are refused with a message.
        let r = get(&app, "/api/search?q=cat&by=channel").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.text().contains("'moment' or 'video'"), "{}", r.text());
        let r = get(&app, &format!("/api/search?q=cat&by=video&video={}", fx.cats)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        // by=moment is today's answer.
        let j = get(&app, "/api/search?q=cat%20mouse&by=moment").await.json();
        assert!(j["results"][0]["start_ms"].is_i64(), "{j}");
    }
);

both_backends!(
    search_page_by_video_and_video_page_summary_without_javascript,
    |app: Router, _store: Store, fx: Fixture| async move {
        // The form's radio keeps the mode; moments are the default.
        let html = get(&app, "/?q=red%20bicycle%20wall&mode=search").await.text();
        assert!(html.contains("name=\"by\" value=\"moment\" checked"), "{html}");
        assert!(html.contains("class=\"moments\" id=\"results\""));
        assert!(!html.contains("video-result"));
        assert!(html.contains("href=\"/?mode=search&amp;by=video&amp;q=red+bicycle+wall\""));
        // An unknown `by` on the page falls back to moments.
        let html = get(&app, "/?q=red%20bicycle%20wall&by=bogus").await.text();
        assert!(html.contains("class=\"moments\" id=\"results\"") && !html.contains("video-result"));
        // by=video: videos with name, length, score and best moments linked to their times.
        let r = get(&app, "/?q=red%20bicycle%20wall&mode=search&by=video").await;
        assert_eq!(r.status, StatusCode::OK);
        let html = r.text();
        assert!(html.contains("name=\"by\" value=\"video\" checked"), "{html}");
        assert!(html.contains(
            "id=\"by-video\" href=\"/?mode=search&amp;by=video&amp;q=red+bicycle+wall\" aria-current=\"page\""
        ));
        assert!(html.contains("class=\"videos\" id=\"results\""));
        assert!(
            html.contains(&format!("class=\"video-result\" data-video=\"{}\"", fx.kitchen)),
            "{html}"
        );
        assert!(html.contains(&format!(
            "href=\"/videos/{}\">kitchen &lt;b&gt;&amp;&lt;i&gt; bikes.webm</a>",
            fx.kitchen
        )));
        assert!(html.contains("<span class=\"duration\">0:20</span>"));
        assert!(html.contains("<span class=\"score\" title=\"score\">0."), "{html}");
        assert!(html.contains(&format!(
            "class=\"best-moment\" href=\"/videos/{k}?t={BICYCLE_START_MS}\" data-video-id=\"{k}\" data-at=\"{BICYCLE_START_MS}\"",
            k = fx.kitchen
        )));
        assert!(html.contains("<span class=\"range\">0:12–0:16</span>"), "{html}");
        assert!(html.contains("<mark>bicycle</mark>"), "matching words highlighted");
        // The markup subtitle is a best moment too: shown as text.
        assert!(html.contains("&lt;script&gt;window.__kinoXss") && !html.contains("<script>window"));
        assert!(!html.contains("<img src=x"));
        // The video page: its summary, each sentence a playable link to its time, and document facts.
        let html = get(&app, &format!("/videos/{}", fx.kitchen)).await.text();
        assert_eq!(
            html.matches("class=\"summary-line\"").count(),
            common::KITCHEN_SUMMARY.len(),
            "{html}"
        );
        for (start, text) in common::KITCHEN_SUMMARY {
            assert!(html.contains(&format!(
                "data-video=\"{}\" data-start=\"{start}\" data-end=\"{}\"",
                fx.kitchen,
                start + 4000
            )));
            assert!(html.contains(&format!("href=\"/videos/{}?t={start}\"", fx.kitchen)));
            assert!(html.contains(&format!("<span class=\"cue-text\">{text}</span>")));
        }
        assert!(html.contains("21 tokens in 1 window."), "{html}");
        assert!(
            html.find("id=\"summary\"").unwrap() < html.find("<h2>Transcript</h2>").unwrap(),
            "the summary is above the transcript"
        );
        // No document: no summary section.
        let html = get(&app, &format!("/videos/{}", fx.cats)).await.text();
        assert!(!html.contains("id=\"summary\"") && !html.contains("id=\"document-facts\""));
    }
);
