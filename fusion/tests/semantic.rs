//! Semantic search end to end over the crate's API with the REAL default text model (all-MiniLM-L6-v2):
//! cues → segments → fusion → ranking → extractive answer.
//!
//! The model comes from `KINO_TEST_TEXT_MODEL`, else `$HOME/.local/share/kino/models/sentence-transformers/
//! all-MiniLM-L6-v2`; these tests fail (not skip) when it is absent: run `scripts/setup`.

mod common;

use std::collections::HashSet;
use std::sync::OnceLock;

use common::{embed, encoder, index_video};
use kino_fusion::score::rank;
use kino_fusion::{answer, Candidate, FrameVisual, FusionModel, Moment, TimedText};

/// Three 30 s "videos" with subtitles: small talk, the topic from 10 s to 20 s, small talk.
const VIDEOS: [(i64, [[&str; 2]; 3]); 3] = [
    (
        1,
        [
            [
                "Welcome back, thanks for joining me again this week.",
                "Let me tell you what we will do today.",
            ],
            [
                "I am pressing tomato seeds into small pots of soil.",
                "Each seed goes about a finger deep, then I cover it gently and water it.",
            ],
            ["That is all for now.", "See you next time, and have a lovely weekend."],
        ],
    ),
    (
        2,
        [
            [
                "Hello everyone, good to have you here.",
                "Tonight is a special episode.",
            ],
            [
                "White opens with the king's pawn and black answers with the Sicilian defence.",
                "After the knight takes on d4, the bishop pins it to the queen.",
            ],
            ["Thank you for watching.", "Please leave a comment below."],
        ],
    ),
    (
        3,
        [
            ["Hi there, I hope you are well.", "We have something dramatic today."],
            [
                "Dark clouds roll in and lightning flashes over the hills.",
                "Heavy rain hammers the roof while the thunder rumbles for minutes.",
            ],
            ["Stay safe out there.", "Bye for now."],
        ],
    ),
];

/// Video 4: 20 s of a cat on a sofa, nothing said; its frames carry the labels the vision branch would give.
const CAT_VIDEO: i64 = 4;

fn cues_of(segments: &[[&str; 2]; 3]) -> Vec<TimedText> {
    let mut cues = Vec::new();
    for (s, pair) in segments.iter().enumerate() {
        for (j, text) in pair.iter().enumerate() {
            let start = s as i64 * 10_000 + j as i64 * 5_000 + 500;
            cues.push(TimedText {
                start_ms: start,
                end_ms: start + 4_000,
                text: text.to_string(),
                source: "subtitle".into(),
                embedding: vec![],
            });
        }
    }
    let texts: Vec<&str> = cues.iter().map(|c| c.text.as_str()).collect();
    let embeddings = embed(&texts).unwrap();
    for (c, e) in cues.iter_mut().zip(embeddings) {
        c.embedding = e;
    }
    cues
}

fn cat_frames() -> Vec<FrameVisual> {
    (0..20)
        .map(|i| FrameVisual {
            pts_ms: i * 1_000,
            pooled: vec![],
            grid: vec![],
            grid_tokens: 0,
            hidden: 0,
            labels: vec![("tabby, tabby cat".into(), 0.7), ("studio couch, day bed".into(), 0.15)],
        })
        .collect()
}

fn library() -> &'static Vec<Candidate> {
    static LIB: OnceLock<Vec<Candidate>> = OnceLock::new();
    LIB.get_or_init(|| {
        let model = FusionModel::identity(encoder().dim(), 768, 4).unwrap();
        let mut out = Vec::new();
        for (id, segs) in &VIDEOS {
            index_video(*id, 30_000, &[], &cues_of(segs), &model, &mut out);
        }
        index_video(CAT_VIDEO, 20_000, &cat_frames(), &[], &model, &mut out);
        out
    })
}

fn search(query: &str, k: usize) -> Vec<Moment> {
    let q = embed(&[query]).unwrap().remove(0);
    let m = rank(&q, library(), k).unwrap();
    let top: Vec<(i64, i64, i64, f32)> = m.iter().map(|m| (m.video_id, m.start_ms, m.end_ms, m.score)).collect();
    eprintln!("{query:?}: {top:?}");
    m
}

fn words(s: &str) -> HashSet<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect()
}

#[test]
fn planting_seeds_finds_the_gardening_moment_with_its_time_range() {
    let m = search("someone is planting seeds", 3);
    assert_eq!(m[0].video_id, 1, "{m:#?}");
    assert_eq!((m[0].start_ms, m[0].end_ms), (10_000, 20_000), "{m:#?}");
    assert!(m[0].text.contains("tomato seeds"));
    assert!(
        m[0].score > m[1].score + 0.1,
        "a clear margin: {} vs {}",
        m[0].score,
        m[1].score
    );
}

#[test]
fn a_paraphrase_sharing_no_words_still_finds_it() {
    let query = "sowing crops";
    let subtitle_words: HashSet<String> = VIDEOS
        .iter()
        .flat_map(|(_, s)| s.iter().flatten())
        .flat_map(|t| words(t))
        .collect();
    assert!(
        words(query).is_disjoint(&subtitle_words),
        "the paraphrase must share no word with any subtitle"
    );
    let m = search(query, 3);
    assert_eq!(m[0].video_id, 1, "{m:#?}");
    assert_eq!((m[0].start_ms, m[0].end_ms), (10_000, 20_000));
    assert!(
        m[0].score > m[1].score + 0.1,
        "a clear margin: {} vs {}",
        m[0].score,
        m[1].score
    );
}

#[test]
fn the_other_topics_find_their_own_videos() {
    assert_eq!(search("a game of chess", 1)[0].video_id, 2);
    assert_eq!(search("bad weather with lightning", 1)[0].video_id, 3);
}

#[test]
fn a_visual_concept_finds_a_silent_video_through_its_labels() {
    // Labels given at the FrameVisual level (what the vision branch outputs); no subtitles in that video.
    let m = search("a cat", 3);
    assert_eq!(m[0].video_id, CAT_VIDEO, "{m:#?}");
    assert_eq!(
        (m[0].start_ms, m[0].end_ms),
        (0, 20_000),
        "both silent segments merge into one moment"
    );
    assert!(m[0].text.is_empty());
    assert!(
        m[0].score > m[1].score + 0.1,
        "a clear margin: {} vs {}",
        m[0].score,
        m[1].score
    );
    assert_eq!(m[0].tags[0], "tabby, tabby cat");
    // And the cat does not take over queries about what is said.
    assert_eq!(search("someone is planting seeds", 1)[0].video_id, 1);
}

#[test]
fn extractive_answer_cites_the_supporting_subtitle() {
    let question = "how deep should each seed go?";
    let q = embed(&[question]).unwrap().remove(0);
    let moments = rank(&q, library(), 3).unwrap();
    let a = answer::extract(&q, &moments, &embed).unwrap();
    let first = &a.citations[0];
    assert_eq!(
        first.text,
        "Each seed goes about a finger deep, then I cover it gently and water it."
    );
    assert_eq!((first.video_id, first.start_ms, first.end_ms), (1, 10_000, 20_000));
    assert!(a.answer.starts_with(&first.text));
    let all: Vec<&str> = VIDEOS.iter().flat_map(|(_, s)| s.iter().flatten().copied()).collect();
    for c in &a.citations {
        assert!(
            all.contains(&c.text.as_str()),
            "cited text must be a subtitle verbatim: {:?}",
            c.text
        );
    }

    // A visual question about the silent video is answered with its tag, cited at its time.
    let q = embed(&["is there a cat?"]).unwrap().remove(0);
    let moments = rank(&q, library(), 3).unwrap();
    let a = answer::extract(&q, &moments, &embed).unwrap();
    assert_eq!(a.citations[0].text, "tabby, tabby cat", "{a:#?}");
    assert_eq!(a.citations[0].video_id, CAT_VIDEO);
}
