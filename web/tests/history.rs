//! Searches made through the API and the search page are stored in the
//! history like the CLI's (one record each, before the response is sent);
//! many at once share commits and none is lost. Real router, real store
//! (Postgres and SQLite), the fixture library and the test engine.

mod common;

use axum::http::StatusCode;
use axum::Router;
use common::http::{app_for, get};
use common::{Fixture, TestDb};
use kino_store::{Backend, Store};

both_backends!(
    searches_from_the_api_and_the_page_are_stored_once_each,
    |app: Router, store: Store, _fx: Fixture| async move {
        assert!(store.recent_queries(10).await.unwrap().is_empty());
        let r = get(&app, "/api/search?q=red%20bicycle&k=3").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let r = get(&app, "/api/search?q=cat%20mouse&by=video").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let r = get(&app, "/?q=stone%20wall&mode=search").await;
        assert_eq!(r.status, StatusCode::OK);
        // An asked question is stored once, with its answer, not again as
        // the search for the moments shown beside it.
        let r = get(&app, "/?q=where%20does%20the%20bicycle%20lean%3F&mode=ask").await;
        assert_eq!(r.status, StatusCode::OK);
        // A refused search is not a search.
        assert_eq!(get(&app, "/api/search?q=%20").await.status, StatusCode::BAD_REQUEST);

        let recent = store.recent_queries(10).await.unwrap();
        let got: Vec<(&str, &str)> = recent
            .iter()
            .rev()
            .map(|q| (q.question.as_str(), q.kind.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("red bicycle", "search"),
                ("cat mouse", "search"),
                ("stone wall", "search"),
                ("where does the bicycle lean?", "ask"),
            ]
        );
        assert!(recent
            .iter()
            .all(|q| q.model_version == "bow-test" && q.latency_ms >= 0));
        let h = get(&app, "/history").await;
        assert!(h.text().contains("stone wall"), "the History page shows searches");

        // 200 searches at once: every one stored (commits are shared).
        let mut tasks = Vec::new();
        for i in 0..200 {
            let app = app.clone();
            tasks.push(tokio::spawn(async move {
                get(&app, &format!("/api/search?q=concurrent%20{i}&k=1")).await.status
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), StatusCode::OK);
        }
        let stored = store.recent_queries(1000).await.unwrap();
        let mut concurrent: Vec<&str> = stored
            .iter()
            .filter(|q| q.question.starts_with("concurrent "))
            .map(|q| q.question.as_str())
            .collect();
        concurrent.sort();
        concurrent.dedup();
        assert_eq!(concurrent.len(), 200);
    }
);
