//! Extractive answers: the sentences of the top moments that best support a question, each with its citation.
//!
//! Nothing is generated: every piece of the answer is a sentence found verbatim in a moment's transcript, or —
//! when the question is about what is seen (the moment matched the question better on its visual concepts than
//! on its text, or has no text) — one of the moment's visual tags. Candidates are embedded with the caller's
//! [`TextEmbedder`] and ranked by cosine similarity to the question; those at or above
//! [`AnswerOptions::min_similarity`], best first, at most [`AnswerOptions::max_sentences`], form the answer (one
//! that holds, or is held in, a sentence already chosen from the same video is skipped). With no candidate that
//! good the answer is empty (and has no citations) rather than a guess.

use crate::score::Moment;
use crate::vecmath::cosine;
use crate::{FusionError, TextEmbedder};

/// Where a part of the answer comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Citation {
    /// Video id.
    pub video_id: i64,
    /// Start of the segment holding the text, ms.
    pub start_ms: i64,
    /// End of that segment, ms.
    pub end_ms: i64,
    /// The sentence (or tag) cited, verbatim.
    pub text: String,
}

/// An extractive answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    /// The cited sentences joined with spaces, best first; empty when nothing supports an answer.
    pub answer: String,
    /// One citation per sentence of the answer, in the same order.
    pub citations: Vec<Citation>,
}

/// Knobs of [`extract_with`]. Defaults: 3 sentences, similarity at least 0.25, from the top 5 moments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnswerOptions {
    /// Most sentences in an answer.
    pub max_sentences: usize,
    /// Least cosine similarity to the question a sentence needs.
    pub min_similarity: f32,
    /// How many of the top moments to read.
    pub moments: usize,
}

impl Default for AnswerOptions {
    fn default() -> Self {
        Self {
            max_sentences: 3,
            min_similarity: 0.25,
            moments: 5,
        }
    }
}

/// Splits text into sentences at `.`, `!`, `?` and `…` followed by a space (or the end).
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        cur.push(c);
        let boundary = matches!(c, '.' | '!' | '?' | '…') && chars.peek().copied().unwrap_or(' ').is_whitespace();
        if boundary || c == '\n' {
            push_sentence(&mut out, &cur);
            cur.clear();
        }
    }
    push_sentence(&mut out, &cur);
    out
}

fn push_sentence(out: &mut Vec<String>, s: &str) {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().filter(|c| c.is_alphanumeric()).count() >= 2 {
        out.push(s);
    }
}

/// The answer to a question with embedding `question_emb`, from `moments` (best first), under default options.
pub fn extract(question_emb: &[f32], moments: &[Moment], embedder: &dyn TextEmbedder) -> Result<Answer, FusionError> {
    extract_with(question_emb, moments, embedder, &AnswerOptions::default())
}

/// [`extract`] with explicit options.
pub fn extract_with(
    question_emb: &[f32],
    moments: &[Moment],
    embedder: &dyn TextEmbedder,
    opts: &AnswerOptions,
) -> Result<Answer, FusionError> {
    let mut pool: Vec<Citation> = Vec::new();
    for m in moments.iter().take(opts.moments) {
        let visual = match (m.visual_score, m.text_score) {
            (Some(v), Some(t)) => v > t,
            (Some(_), None) => true,
            _ => false,
        };
        for p in &m.passages {
            let mut parts = sentences(&p.text);
            if visual {
                parts.extend(p.tags.iter().cloned());
            }
            for s in parts {
                if !pool.iter().any(|c| c.video_id == m.video_id && c.text == s) {
                    pool.push(Citation {
                        video_id: m.video_id,
                        start_ms: p.start_ms,
                        end_ms: p.end_ms,
                        text: s,
                    });
                }
            }
        }
    }
    if pool.is_empty() || opts.max_sentences == 0 {
        return Ok(Answer::default());
    }
    let texts: Vec<&str> = pool.iter().map(|c| c.text.as_str()).collect();
    let embeddings = embedder.embed(&texts).map_err(FusionError::Embedder)?;
    if embeddings.len() != texts.len() {
        return Err(FusionError::Embedder(anyhow::anyhow!(
            "asked for {} embeddings, got {}",
            texts.len(),
            embeddings.len()
        )));
    }
    let mut ranked: Vec<(f32, usize)> = Vec::new();
    for (i, e) in embeddings.iter().enumerate() {
        if e.len() != question_emb.len() {
            return Err(FusionError::Dimension {
                context: format!("embedding of sentence {:?}", pool[i].text),
                expected: question_emb.len(),
                got: e.len(),
            });
        }
        let s = cosine(question_emb, e);
        if s >= opts.min_similarity {
            ranked.push((s, i));
        }
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    // A sentence that holds one already chosen from the same video, or is
    // held in one (on-screen text with no full stop runs into the speech
    // after it: "Title card Slice the tomatoes."), would say it twice.
    let mut chosen: Vec<usize> = Vec::with_capacity(opts.max_sentences);
    for &(_, i) in &ranked {
        if chosen.len() == opts.max_sentences {
            break;
        }
        let c = &pool[i];
        let repeats = chosen.iter().map(|&j| &pool[j]).any(|d| {
            d.video_id == c.video_id && (d.text.contains(c.text.as_str()) || c.text.contains(d.text.as_str()))
        });
        if !repeats {
            chosen.push(i);
        }
    }
    let citations: Vec<Citation> = chosen.iter().map(|&i| pool[i].clone()).collect();
    let answer = citations.iter().map(|c| c.text.as_str()).collect::<Vec<_>>().join(" ");
    Ok(Answer { answer, citations })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::Passage;

    #[test]
    fn splits_sentences_and_drops_fragments() {
        let s = sentences("Plant the seeds. Water them daily!  Is it 3.5 cm deep? -\nyes … ok");
        assert_eq!(
            s,
            vec![
                "Plant the seeds.",
                "Water them daily!",
                "Is it 3.5 cm deep?",
                "yes …",
                "ok"
            ]
        );
        assert!(sentences("  ").is_empty());
    }

    fn moment(text: &str, tags: &[&str], text_score: Option<f32>, visual_score: Option<f32>) -> Moment {
        Moment {
            video_id: 3,
            start_ms: 10_000,
            end_ms: 20_000,
            score: 0.5,
            text: text.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            segment_ids: vec![9],
            passages: vec![Passage {
                segment_id: 9,
                start_ms: 10_000,
                end_ms: 20_000,
                text: text.into(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
            }],
            text_score,
            visual_score,
        }
    }

    /// A bag-of-letters embedder: deterministic and good enough to tell sentences apart in a unit test.
    fn letters(texts: &[&str]) -> anyhow::Result<Vec<Vec<f32>>> {
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = vec![0f32; 26];
                for c in t.to_lowercase().chars().filter(|c| c.is_ascii_lowercase()) {
                    v[(c as u8 - b'a') as usize] += 1.0;
                }
                v
            })
            .collect())
    }

    #[test]
    fn answers_only_with_sentences_from_the_sources() {
        let m = moment(
            "Zzz zzz. Plant seeds here. Xylophone quiz.",
            &["tabby cat"],
            Some(0.6),
            Some(0.1),
        );
        let q = letters(&["plant seeds"]).unwrap().remove(0);
        let a = extract(&q, std::slice::from_ref(&m), &letters).unwrap();
        assert_eq!(a.citations[0].text, "Plant seeds here.");
        assert_eq!(a.citations[0].video_id, 3);
        assert_eq!((a.citations[0].start_ms, a.citations[0].end_ms), (10_000, 20_000));
        assert!(a.answer.starts_with("Plant seeds here."));
        assert!(
            a.citations.iter().all(|c| m.text.contains(&c.text)),
            "nothing but source sentences"
        );
        assert!(
            a.citations.iter().all(|c| c.text != "tabby cat"),
            "the question is not visual here"
        );
    }

    #[test]
    fn a_sentence_is_not_said_twice_inside_a_longer_one() {
        // A title with no full stop runs into the speech after it in one
        // passage; the same sentence, at its own time, in another.
        let mut m = moment("Title card Slice the tomatoes.", &[], Some(0.6), None);
        m.passages.push(Passage {
            segment_id: 10,
            start_ms: 12_000,
            end_ms: 14_000,
            text: "Slice the tomatoes. Bake quietly now.".into(),
            tags: Vec::new(),
        });
        let q = letters(&["slice the tomatoes"]).unwrap().remove(0);
        let opts = AnswerOptions {
            min_similarity: 0.0,
            ..Default::default()
        };
        let a = extract_with(&q, std::slice::from_ref(&m), &letters, &opts).unwrap();
        let texts: Vec<&str> = a.citations.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["Slice the tomatoes.", "Bake quietly now."], "{a:?}");
        assert_eq!((a.citations[0].start_ms, a.citations[0].end_ms), (12_000, 14_000));
        assert_eq!(a.answer, "Slice the tomatoes. Bake quietly now.");
    }

    #[test]
    fn visual_questions_may_cite_tags_and_nothing_relevant_gives_no_answer() {
        let m = moment("", &["tabby cat"], None, Some(0.7));
        let q = letters(&["tabby cat"]).unwrap().remove(0);
        let a = extract(&q, &[m], &letters).unwrap();
        assert_eq!(a.answer, "tabby cat");
        let m = moment("Qqq.", &[], Some(0.1), None);
        let a = extract_with(
            &q,
            &[m],
            &letters,
            &AnswerOptions {
                min_similarity: 0.9,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(a, Answer::default());
        let failing = |_: &[&str]| -> anyhow::Result<Vec<Vec<f32>>> { anyhow::bail!("model gone") };
        let err = extract(&q, &[moment("Some words.", &[], Some(0.5), None)], &failing).unwrap_err();
        assert!(err.to_string().contains("text embedder failed"), "{err}");
    }
}
