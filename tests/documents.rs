//! Whole videos: each video's whole text embedded with sliding windows
//! (its document), video-level search (`kino search --by video`), answers
//! that read the best windows, summaries, and documents rebuilt from the
//! stored cues when only they are stale. Real text model, real FFmpeg, a
//! real SQLite file (and Postgres for the refresh).

mod common;

use common::{ffmpeg, json_of, models_dir, run};

use std::path::{Path, PathBuf};
use std::process::Command;

use kino_store::Store;
use serde_json::Value;

fn kino(home: &Path, db: &str) -> Command {
    let mut c = kino_logging(home, db);
    c.arg("-q");
    c
}

/// [`kino`] with its info log on stderr.
fn kino_logging(home: &Path, db: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kino"));
    c.env_remove("KINO_DATABASE_URL")
        .env("KINO_OCR", "off")
        .env("KINO_SPEECH", "off")
        .arg("--home")
        .arg(home)
        .arg("--models")
        .arg(models_dir())
        .arg("--db")
        .arg(db);
    c
}

fn srt_time(ms: i64) -> String {
    format!(
        "{:02}:{:02}:{:02},{:03}",
        ms / 3_600_000,
        (ms / 60_000) % 60,
        (ms / 1000) % 60,
        ms % 1000
    )
}

/// A silent colour video of `secs` seconds with a sidecar SRT holding one
/// cue per `(start_ms, end_ms, text)`.
fn talk_video(dir: &Path, name: &str, colour: u32, secs: i64, cues: &[(i64, i64, String)]) -> PathBuf {
    let path = dir.join(format!("{name}.mp4"));
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("color=c=0x{colour:06x}:s=160x120:r=1:d={secs}"),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        path.to_str().unwrap(),
    ]);
    let srt: String = cues
        .iter()
        .enumerate()
        .map(|(i, (s, e, t))| format!("{}\n{} --> {}\n{t}\n\n", i + 1, srt_time(*s), srt_time(*e)))
        .collect();
    std::fs::write(dir.join(format!("{name}.srt")), srt).unwrap();
    path
}

/// One talk of the fixture (`tests/fixtures/talks.json`).
struct Talk {
    name: String,
    query: String,
    sentences: Vec<String>,
}

fn talks() -> Vec<Talk> {
    let raw = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/talks.json")).unwrap();
    let v: Value = serde_json::from_str(&raw).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| Talk {
            name: t["name"].as_str().unwrap().to_string(),
            query: t["query"].as_str().unwrap().to_string(),
            sentences: t["sentences"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect(),
        })
        .collect()
}

/// Cue `i` of a talk runs from `8i + 0.5` s to `8i + 7.5` s.
fn talk_cues(t: &Talk) -> Vec<(i64, i64, String)> {
    t.sentences
        .iter()
        .enumerate()
        .map(|(i, s)| (i as i64 * 8000 + 500, i as i64 * 8000 + 7500, s.clone()))
        .collect()
}

/// `kino ingest --json DIR`: every video indexed.
fn ingest(home: &Path, db: &str, lib: &Path) {
    let out = run(kino(home, db).arg("ingest").arg("--json").arg(lib));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["status"], "done", "{v}");
    }
}

fn file_stem(path: &str) -> String {
    Path::new(path).file_stem().unwrap().to_string_lossy().to_string()
}

#[test]
fn a_talk_is_found_by_its_subject_although_no_segment_states_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, lib) = (tmp.path().join("home"), tmp.path().join("lib"));
    std::fs::create_dir_all(&lib).unwrap();
    let db = tmp.path().join("kino.db").display().to_string();
    let talks = talks();
    assert!(talks.len() >= 10, "the fixture has at least ten talks");
    for (i, t) in talks.iter().enumerate() {
        let cues = talk_cues(t);
        talk_video(
            &lib,
            &t.name,
            0x203040 + 0x101010 * i as u32,
            cues.len() as i64 * 8,
            &cues,
        );
    }
    ingest(&home, &db, &lib);

    let mut by_video = 0;
    let mut by_best_segment = 0;
    for t in &talks {
        let v = json_of(&run(kino(&home, &db)
            .args(["search", "--by", "video", "-k", "3", "--json"])
            .arg(&t.query)));
        let results = v["results"].as_array().unwrap();
        assert!(!results.is_empty(), "{}: no videos", t.query);
        let first = &results[0];
        let hit = file_stem(first["path"].as_str().unwrap()) == t.name;
        by_video += hit as usize;
        // Each result carries the documented shape.
        assert!(first["score"].is_number() && first["video_id"].is_i64());
        assert!(first["duration_ms"].as_i64().unwrap() > 60_000);
        let moments = first["best_moments"].as_array().unwrap();
        assert!(!moments.is_empty() && moments.len() <= 3);
        for m in moments {
            assert!(m["start_ms"].as_i64().unwrap() < m["end_ms"].as_i64().unwrap());
            assert!(!m["text"].as_str().unwrap().is_empty());
        }
        // The control: the video of the best single moment.
        let m = json_of(&run(kino(&home, &db)
            .args(["search", "-k", "1", "--json"])
            .arg(&t.query)));
        let best = file_stem(m["results"][0]["path"].as_str().unwrap());
        by_best_segment += (best == t.name) as usize;
        eprintln!(
            "{:<14} by video: {:<14} by best segment: {best}",
            t.name,
            file_stem(first["path"].as_str().unwrap())
        );
    }
    eprintln!(
        "talks found first: by video {by_video}/{n}, by best segment {by_best_segment}/{n}",
        n = talks.len()
    );
    assert_eq!(
        by_video,
        talks.len(),
        "every talk ranks first for a paraphrase of its subject"
    );
    assert!(
        by_best_segment < by_video,
        "ranking videos by their best segment alone does worse ({by_best_segment} vs {by_video})"
    );

    // Each video has a summary: sentences of its own, in time order, with their cue's time.
    let rt = common::rt();
    let store = rt.block_on(Store::open(&db)).unwrap();
    for t in &talks {
        let video = rt
            .block_on(store.video_by_path(&lib.join(format!("{}.mp4", t.name)).display().to_string()))
            .unwrap()
            .unwrap();
        let doc = rt.block_on(store.document(video.id)).unwrap().expect("a document");
        assert!(!doc.truncated);
        assert!((3..=5).contains(&doc.summary.len()), "{}: {:?}", t.name, doc.summary);
        let cues = talk_cues(t);
        let mut last = -1;
        for s in &doc.summary {
            let (start, end, _) = cues
                .iter()
                .find(|(_, _, text)| text.contains(&s.text))
                .unwrap_or_else(|| {
                    panic!(
                        "{}: summary sentence {:?} is not a sentence of the talk",
                        t.name, s.text
                    )
                });
            assert_eq!((s.start_ms, s.end_ms), (*start, *end), "{}: {:?}", t.name, s.text);
            assert!(s.start_ms > last, "in time order");
            last = s.start_ms;
        }
    }

    // An answer reads the best windows and cites each sentence at its own time.
    let t = &talks[0];
    let sentence = &t.sentences[t.sentences.len() / 2];
    let a = json_of(&run(kino(&home, &db).args(["ask", "--json"]).arg(sentence)));
    let citations = a["citations"].as_array().unwrap();
    let cited = citations
        .iter()
        .find(|c| c["text"].as_str() == Some(sentence.as_str()))
        .unwrap_or_else(|| panic!("the sentence asked about is cited: {a}"));
    let (start, end, _) = talk_cues(t).into_iter().find(|(_, _, s)| s == sentence).unwrap();
    assert_eq!(file_stem(cited["path"].as_str().unwrap()), t.name);
    assert_eq!(
        (cited["start_ms"].as_i64().unwrap(), cited["end_ms"].as_i64().unwrap()),
        (start, end)
    );
    rt.block_on(store.close());

    // The same through a running server: the API ranks videos, and a
    // video's page data carries its summary.
    let port = common::free_port();
    let _server = common::Server(
        kino(&home, &db)
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::wait_for("the server", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let t = &talks[1];
    let j = common::get_json(
        port,
        &format!("/api/search?by=video&k=3&q={}", t.query.replace(' ', "%20")),
    );
    let first = &j["results"][0];
    assert_eq!(file_stem(first["path"].as_str().unwrap()), t.name, "{j}");
    assert!(!first["best_moments"].as_array().unwrap().is_empty());
    let d = common::get_json(port, &format!("/api/videos/{}", first["video_id"]));
    assert!(!d["summary"].as_array().unwrap().is_empty(), "{d}");
    assert_eq!(d["document"]["truncated"], false);
    assert!(d["stage_versions"]["document"].is_string(), "{d}");
}

/// `n` distinct filler sentences of 10 to 13 words from a fixed vocabulary.
fn filler(n: usize) -> Vec<String> {
    let words: Vec<&str> = "the river morning market window letter garden station quiet music harbour forest winter \
        summer bridge candle table story friend family kitchen street mountain valley meadow village autumn \
        evening slowly warm bright paper stone silver wooden little old new open green yellow soft"
        .split_whitespace()
        .collect();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|i| {
            let len = 10 + (next() % 4) as usize;
            let mut s: Vec<&str> = (0..len)
                .map(|_| words[(next() % words.len() as u64) as usize])
                .collect();
            let first = s[0].to_string();
            s[0] = "";
            format!(
                "{}{} {} number {i}.",
                first[..1].to_uppercase(),
                &first[1..],
                s[1..].join(" ")
            )
        })
        .collect()
}

#[test]
fn a_transcript_of_more_than_three_thousand_words_is_covered_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, lib) = (tmp.path().join("home"), tmp.path().join("lib"));
    std::fs::create_dir_all(&lib).unwrap();
    let db = tmp.path().join("kino.db").display().to_string();
    // ~300 cues of 10–13 words, one every 4 s, then the fact, stated once, last.
    let mut cues: Vec<(i64, i64, String)> = filler(290)
        .into_iter()
        .enumerate()
        .map(|(i, s)| (i as i64 * 4000, i as i64 * 4000 + 3500, s))
        .collect();
    let fact = "The lighthouse keeper's parrot was called Archibald and it only ever spoke Portuguese.";
    let last_start = cues.len() as i64 * 4000;
    cues.push((last_start, last_start + 3500, fact.to_string()));
    let words: usize = cues.iter().map(|c| c.2.split_whitespace().count()).sum();
    assert!(words > 3000, "{words} words");
    let secs = last_start / 1000 + 5;
    talk_video(&lib, "long", 0x304050, secs, &cues);
    common::subtitled_distractors(
        &lib,
        &[
            ("birds", "Seagulls circle above the harbour at dawn."),
            ("ships", "A lighthouse warns ships away from the rocks."),
        ],
    );
    ingest(&home, &db, &lib);

    let rt = common::rt();
    let store = rt.block_on(Store::open(&db)).unwrap();
    let video = rt
        .block_on(store.video_by_path(&lib.join("long.mp4").display().to_string()))
        .unwrap()
        .unwrap();
    let doc = rt.block_on(store.document(video.id)).unwrap().expect("a document");
    eprintln!("{words} words: {} tokens in {} windows", doc.tokens, doc.windows);
    assert!(!doc.truncated, "covered whole");
    assert!(doc.tokens > 3900, "{} tokens", doc.tokens);
    assert!(doc.windows >= 40, "{} windows", doc.windows);
    let windows = rt
        .block_on(store.document_windows(video.id, &(0..doc.windows).collect::<Vec<_>>()))
        .unwrap();
    let last = windows.last().unwrap();
    assert!(last.text.contains("Archibald"), "the last window holds the fact");
    assert!(windows[..windows.len() - 1]
        .iter()
        .all(|w| !w.text.contains("Archibald")));
    assert_eq!(last.end_ms, last_start + 3500, "the last window ends with the last cue");
    // It starts at a cue (every 4 s) before the last one: it spans several.
    assert!(
        last.start_ms < last_start && last.start_ms % 4000 == 0,
        "{}",
        last.start_ms
    );
    rt.block_on(store.close());

    let v = json_of(&run(kino(&home, &db)
        .args(["search", "--by", "video", "-k", "3", "--json"])
        .arg("what was the name of the parrot that belonged to the lighthouse keeper")));
    // The video is not *about* the parrot (a short clip about a
    // lighthouse may rank above it), but it is found, with the fact's window.
    let long = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| file_stem(r["path"].as_str().unwrap()) == "long")
        .unwrap_or_else(|| panic!("the long video is found: {v}"));
    let moments = long["best_moments"].as_array().unwrap();
    assert!(
        moments.iter().any(|m| m["start_ms"].as_i64() == Some(last.start_ms)
            && m["end_ms"].as_i64() == Some(last.end_ms)
            && m["text"].as_str().unwrap().contains("Archibald")),
        "the last window is a best moment, with its time span: {moments:?}"
    );
    // An answer reads that window and cites the fact at its cue's time.
    let a = json_of(&run(kino(&home, &db)
        .args(["ask", "--json"])
        .arg("What was the lighthouse keeper's parrot called?")));
    let cited = a["citations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["text"].as_str() == Some(fact))
        .unwrap_or_else(|| panic!("the fact is cited: {a}"));
    assert_eq!(file_stem(cited["path"].as_str().unwrap()), "long");
    assert_eq!(
        (cited["start_ms"].as_i64().unwrap(), cited["end_ms"].as_i64().unwrap()),
        (last_start, last_start + 3500)
    );
}

/// Documents made stale (another document version recorded, or none: a
/// library indexed before documents existed) are rebuilt from the stored
/// cues by `kino reindex --stale`, without decoding.
fn a_stale_document_is_rebuilt_from_the_stored_cues(db: &str, home: &Path, lib: &Path) {
    let talks = talks();
    for (i, t) in talks.iter().take(2).enumerate() {
        let cues = talk_cues(t);
        talk_video(
            lib,
            &t.name,
            0x405060 + 0x202020 * i as u32,
            cues.len() as i64 * 8,
            &cues,
        );
    }
    ingest(home, db, lib);
    let rt = common::rt();
    let store = rt.block_on(Store::open(db)).unwrap();
    let videos = rt.block_on(store.videos()).unwrap();
    let (a, b) = (videos[0].id, videos[1].id);
    let before = rt.block_on(store.document(a)).unwrap().unwrap();
    let segments_before = rt.block_on(store.segments(a)).unwrap();
    // a: another document version; b: as if indexed before documents existed.
    for (id, sql) in [
        (a, "UPDATE videos SET stage_versions = REPLACE(stage_versions, '\"document\":', '\"document\":\"old\",\"was\":') WHERE id = $1"),
        (b, "DELETE FROM documents WHERE video_id = $1"),
    ] {
        rt.block_on(sqlx::query(sql).bind(id).execute(store.pool())).unwrap();
    }
    let mut v = rt.block_on(store.video(b)).unwrap().unwrap();
    v.stage_versions.remove("document");
    rt.block_on(
        sqlx::query("UPDATE videos SET stage_versions = $2 WHERE id = $1")
            .bind(b)
            .bind(serde_json::to_string(&v.stage_versions).unwrap())
            .execute(store.pool()),
    )
    .unwrap();
    rt.block_on(store.close());

    let out = run(kino_logging(home, db).args(["reindex", "--stale", "--json"]));
    let summary = json_of(&out);
    assert_eq!(summary["selected"], 2, "{summary}");
    assert_eq!(summary["reindexed"], 2, "{summary}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        log.matches("document rebuilt from the stored cues").count(),
        2,
        "both rebuilt without decoding: {log}"
    );

    let store = rt.block_on(Store::open(db)).unwrap();
    let after = rt.block_on(store.document(a)).unwrap().unwrap();
    assert_eq!(after.text, before.text);
    assert_eq!(after.summary, before.summary);
    assert_ne!(after.updated_ms, before.updated_ms, "written again");
    let segments_after = rt.block_on(store.segments(a)).unwrap();
    assert_eq!(
        segments_after.iter().map(|s| s.id).collect::<Vec<_>>(),
        segments_before.iter().map(|s| s.id).collect::<Vec<_>>(),
        "the segments were not touched"
    );
    assert!(
        rt.block_on(store.document(b)).unwrap().is_some(),
        "the old library gained its document"
    );
    for id in [a, b] {
        let v = rt.block_on(store.video(id)).unwrap().unwrap();
        assert_ne!(v.stage_versions.get("document").map(String::as_str), Some("old"));
        assert!(v.stage_versions.contains_key("document"));
    }
    rt.block_on(store.close());
    // Nothing stale is left.
    let summary = json_of(&run(kino(home, db).args(["reindex", "--stale", "--json"])));
    assert_eq!(summary["selected"], 0, "{summary}");
}

#[test]
fn a_stale_document_is_rebuilt_from_the_stored_cues_on_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let db = tmp.path().join("kino.db").display().to_string();
    a_stale_document_is_rebuilt_from_the_stored_cues(&db, &tmp.path().join("home"), &lib);
}

#[test]
fn a_stale_document_is_rebuilt_from_the_stored_cues_on_postgres() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let name = format!("kino_docs_{}_{}", std::process::id(), kino_store::now_ms() % 1_000_000);
    let db = format!("{}/{name}", common::pg_base());
    a_stale_document_is_rebuilt_from_the_stored_cues(&db, &tmp.path().join("home"), &lib);
    common::drop_pg_database(&name);
}

/// A cue longer than the text encoder's input (256 tokens) is embedded
/// whole through the windows: a fact stated only at its end counts. The
/// control is the same cue without the fact, which a cut at 256 tokens
/// could not tell apart from it.
#[test]
fn a_cue_longer_than_the_encoder_input_is_not_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, lib) = (tmp.path().join("home"), tmp.path().join("lib"));
    std::fs::create_dir_all(&lib).unwrap();
    let db = tmp.path().join("kino.db").display().to_string();
    let fact = "Finally the choir sang a lullaby about a sleepy hedgehog under the snow.";
    let body = filler(30).join(" ");
    assert!(
        body.split_whitespace().count() > 300,
        "well past 256 tokens before the fact"
    );
    talk_video(
        &lib,
        "recital",
        0x506070,
        20,
        &[(1000, 15000, format!("{body} {fact}"))],
    );
    talk_video(&lib, "control", 0x605040, 20, &[(1000, 15000, body)]);
    ingest(&home, &db, &lib);
    let v = json_of(&run(kino(&home, &db)
        .args(["search", "-k", "5", "--json"])
        .arg("a lullaby about a sleepy hedgehog")));
    let score = |name: &str| {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| file_stem(r["path"].as_str().unwrap()) == name)
            .and_then(|r| r["score"].as_f64())
            .unwrap_or_else(|| panic!("{name} in the results: {v}"))
    };
    let (with_fact, without) = (score("recital"), score("control"));
    eprintln!("score with the fact at the end {with_fact:.3}, without {without:.3}");
    // Cut at 256 tokens the two are the same vector (equal scores, as
    // before this was fixed: 0.154 and 0.154); whole, the fact is a quarter
    // of the pooled windows (0.238 against 0.210).
    assert!(
        with_fact > without + 0.015,
        "the end of the long cue counts: {with_fact:.3} vs {without:.3}"
    );
}
