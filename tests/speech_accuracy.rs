//! Speech accuracy acceptance test: the committed English paragraphs of
//! `tests/fixtures/speech_accuracy/paragraphs.json`, spoken by espeak-ng and
//! placed at their start seconds in a generated video, are transcribed by
//! `kino transcribe --json --language en` (energy gate on, as the pipeline
//! runs it). The word error rate must be at most 15 % and within 2 points
//! of faster-whisper's on the same samples (`reference.json`, written by
//! `scripts/fixtures/speech_accuracy.py`), and every paragraph's first cue
//! must start within 1 s of the paragraph's start.

mod common;

use common::models_dir;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The most WER allowed.
const MAX_WER: f64 = 0.15;
/// The most kino's WER may exceed, or fall below, the reference's.
const MAX_WER_GAP: f64 = 0.02;
/// The most a paragraph's first cue may start away from the paragraph (ms).
const MAX_START_ERROR_MS: i64 = 1_000;

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/speech_accuracy")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The words of `text`, normalised for WER (the rules of
/// `scripts/fixtures/speech_accuracy.py`'s `normalise`):
/// 1. lowercase;
/// 2. `-` and `/` become spaces;
/// 3. every character that is not a letter, a digit, an apostrophe or a
///    space is removed (letter or digit: Unicode alphanumeric,
///    `char::is_alphanumeric` here, `str.isalnum` in Python; the test
///    checks both give the same words on the paragraphs and the reference's
///    text);
/// 4. apostrophes are removed;
/// 5. whitespace is collapsed (the text split into words on whitespace).
fn normalise(text: &str) -> Vec<String> {
    let text: String = text
        .to_lowercase()
        .chars()
        .map(|c| if c == '-' || c == '/' { ' ' } else { c })
        .filter(|&c| c.is_alphanumeric() || c == '\'' || c.is_whitespace())
        .filter(|&c| c != '\'')
        .collect();
    text.split_whitespace().map(str::to_string).collect()
}

/// Word-level Levenshtein distance (substitution, insertion, deletion: 1 each).
fn word_distance(reference: &[String], hypothesis: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut cur = vec![i + 1; hypothesis.len() + 1];
        for (j, h) in hypothesis.iter().enumerate() {
            cur[j + 1] = (prev[j + 1] + 1).min(cur[j] + 1).min(prev[j] + usize::from(r != h));
        }
        prev = cur;
    }
    prev[hypothesis.len()]
}

fn ffmpeg(args: &[String]) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg runs (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The fixture's audio: each paragraph spoken by espeak-ng, delayed to its
/// start second over silence, mixed, 16 kHz mono s16 WAV. The same commands
/// as `build_audio` in `scripts/fixtures/speech_accuracy.py`.
fn speech_wav(dir: &Path, fx: &Value) -> PathBuf {
    let secs = fx["duration_s"].as_u64().unwrap();
    let mut args = strings(&["-f", "lavfi", "-i"]);
    args.push(format!("anullsrc=r=22050:cl=mono:d={secs}"));
    let paragraphs = fx["paragraphs"].as_array().unwrap();
    let mut graph = String::new();
    for (k, p) in paragraphs.iter().enumerate() {
        let wav = dir.join(format!("{k}.wav"));
        let st = Command::new("espeak-ng")
            .arg("-v")
            .arg(fx["voice"].as_str().unwrap())
            .arg("-s")
            .arg(fx["speed"].to_string())
            .arg("-w")
            .arg(&wav)
            .arg(p["text"].as_str().unwrap())
            .status()
            .expect("espeak-ng runs (scripts/setup installs it)");
        assert!(st.success(), "espeak-ng failed: {st}");
        args.extend(["-i".to_string(), wav.display().to_string()]);
        graph.push_str(&format!(
            "[{}:a]adelay={}:all=1[s{k}];",
            k + 1,
            p["start_s"].as_u64().unwrap() * 1000
        ));
    }
    graph.push_str("[0:a]");
    for k in 0..paragraphs.len() {
        graph.push_str(&format!("[s{k}]"));
    }
    graph.push_str(&format!(
        "amix=inputs={}:duration=first:normalize=0[a]",
        paragraphs.len() + 1
    ));
    let out = dir.join("speech.wav");
    args.extend([
        "-filter_complex".to_string(),
        graph,
        "-map".to_string(),
        "[a]".to_string(),
    ]);
    args.extend(strings(&["-ar", "16000", "-ac", "1", "-c:a", "pcm_s16le", "-t"]));
    args.extend([secs.to_string(), out.display().to_string()]);
    ffmpeg(&args);
    out
}

/// The first audio stream of `file` as raw 16-bit little-endian samples.
fn pcm_of(file: &Path) -> Vec<u8> {
    let mut args = strings(&["-i"]);
    args.push(file.display().to_string());
    args.extend(strings(&["-map", "0:a:0", "-c:a", "pcm_s16le", "-f", "s16le", "-"]));
    ffmpeg(&args)
}

/// Per paragraph: the first of `starts_ms` (in order) at or after the
/// paragraph's start - 1 s.
fn first_starts(starts_s: &[u64], starts_ms: &[i64]) -> Vec<Option<i64>> {
    starts_s
        .iter()
        .map(|&s| starts_ms.iter().copied().find(|&c| c >= s as i64 * 1000 - 1000))
        .collect()
}

/// The errors of one minimal alignment of `hypothesis` to `reference`, per
/// reference word: a substitution or deletion counts to its word, an
/// insertion to the word before it (the first word when there is none). The
/// backtrace prefers match/substitution, then deletion, then insertion (as
/// `errors_per_word` in the reference script).
fn errors_per_word(reference: &[String], hypothesis: &[String]) -> Vec<usize> {
    let (n, m) = (reference.len(), hypothesis.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (j, v) in d[0].iter_mut().enumerate() {
        *v = j;
    }
    for i in 1..=n {
        d[i][0] = i;
        for j in 1..=m {
            let sub = d[i - 1][j - 1] + usize::from(reference[i - 1] != hypothesis[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(sub);
        }
    }
    let mut errors = vec![0; n.max(1)];
    let (mut i, mut j) = (n, m);
    while i > 0 || j > 0 {
        if i > 0 && j > 0 && d[i][j] == d[i - 1][j - 1] + usize::from(reference[i - 1] != hypothesis[j - 1]) {
            errors[i - 1] += usize::from(reference[i - 1] != hypothesis[j - 1]);
            (i, j) = (i - 1, j - 1);
        } else if i > 0 && d[i][j] == d[i - 1][j] + 1 {
            errors[i - 1] += 1;
            i -= 1;
        } else {
            errors[i.saturating_sub(1)] += 1;
            j -= 1;
        }
    }
    errors
}

/// Per paragraph, for the log: (errors, words), the errors of the whole
/// alignment ([`errors_per_word`]) counted to the paragraph of their word.
fn per_paragraph(paragraphs: &[Value], hypothesis: &[String]) -> Vec<(usize, usize)> {
    let words: Vec<Vec<String>> = paragraphs
        .iter()
        .map(|p| normalise(p["text"].as_str().unwrap()))
        .collect();
    let errors = errors_per_word(&words.concat(), hypothesis);
    let mut at = 0;
    words
        .iter()
        .map(|w| {
            let e = errors[at..at + w.len()].iter().sum();
            at += w.len();
            (e, w.len())
        })
        .collect()
}

#[test]
fn normaliser_follows_its_rules() {
    let words = normalise("It's a well-known fact: 3/4 of the A.I. folks, e.g. O'Neil,\tdon't   care!");
    assert_eq!(
        words,
        ["its", "a", "well", "known", "fact", "3", "4", "of", "the", "ai", "folks", "eg", "oneil", "dont", "care"]
    );
    let w = |s: &str| normalise(s);
    assert_eq!(word_distance(&w("a b c d"), &w("a x c d e")), 2);
    assert_eq!(word_distance(&w("a b c"), &w("")), 3);
    assert_eq!(word_distance(&w(""), &w("a b")), 2);
    assert_eq!(errors_per_word(&w("a b c d e"), &w("x a b d e f g")), [1, 0, 1, 0, 2]);
    assert_eq!(errors_per_word(&w("a b"), &w("")), [1, 1]);
}

#[test]
fn transcripts_of_spoken_paragraphs_match_the_reference() {
    let fx = fixture("paragraphs.json");
    let reference = fixture("reference.json");
    let paragraphs = fx["paragraphs"].as_array().unwrap();
    let whisper = models_dir().join("Systran/faster-whisper-base/model.bin");
    assert!(
        whisper.is_file(),
        "speech model missing at {}: run scripts/setup (or `kino models fetch speech`)",
        whisper.display()
    );

    // The same words, normaliser and WER as the reference script.
    let truth: Vec<String> = paragraphs
        .iter()
        .flat_map(|p| normalise(p["text"].as_str().unwrap()))
        .collect();
    assert_eq!(truth.join(" "), reference["reference_normalised"].as_str().unwrap());
    let ref_segments: Vec<(i64, &str)> = reference["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                (s["start"].as_f64().unwrap() * 1000.0).round() as i64,
                s["text"].as_str().unwrap(),
            )
        })
        .collect();
    let ref_text: Vec<&str> = ref_segments.iter().map(|(_, t)| *t).collect();
    let ref_hyp = normalise(&ref_text.join(" "));
    assert_eq!(ref_hyp.join(" "), reference["hypothesis_normalised"].as_str().unwrap());
    let ref_errors = word_distance(&truth, &ref_hyp);
    assert_eq!(ref_errors as u64, reference["errors"].as_u64().unwrap());
    let ref_wer = ref_errors as f64 / truth.len() as f64;
    let ref_pp = per_paragraph(paragraphs, &ref_hyp);
    let stored: Vec<(usize, usize)> = reference["paragraphs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["errors"].as_u64().unwrap() as usize,
                p["words"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    assert_eq!(
        ref_pp, stored,
        "per-paragraph errors differ from the reference script's"
    );

    // The video: a picture and the speech, PCM in Matroska so the samples
    // kino reads are the WAV's, bit for bit.
    let dir = tempfile::tempdir().unwrap();
    let wav = speech_wav(dir.path(), &fx);
    let video = dir.path().join("paragraphs.mkv");
    let secs = fx["duration_s"].as_u64().unwrap();
    let mut args = strings(&["-f", "lavfi", "-i"]);
    args.push(format!("color=c=teal:s=160x120:r=5:d={secs}"));
    args.extend(["-i".to_string(), wav.display().to_string()]);
    args.extend(strings(&[
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
    ]));
    args.extend(strings(&["-pix_fmt", "yuv420p", "-c:a", "copy"]));
    args.push(video.display().to_string());
    ffmpeg(&args);
    let pcm = pcm_of(&video);
    assert!(pcm == pcm_of(&wav), "the video's audio is not the WAV's");
    let sha = hex::encode(Sha256::digest(&pcm));
    let same_audio = sha == reference["samples_sha256"].as_str().unwrap();
    if !same_audio {
        let version = |tool: &str, flag: &str| {
            Command::new(tool)
                .arg(flag)
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_string()
                })
                .unwrap_or_default()
        };
        println!(
            "note: these samples (SHA-256 {sha}) are not the reference's ({}): espeak-ng here is {:?}, \
             the reference's {}; ffmpeg here is {:?}, the reference's {}; \
             the comparison with the reference is then on slightly different audio",
            reference["samples_sha256"],
            version("espeak-ng", "--version"),
            reference["espeak_ng"],
            version("ffmpeg", "-version"),
            reference["ffmpeg"]
        );
    }

    let home = dir.path().join("home");
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_kino"))
        .env_remove("KINO_DATABASE_URL")
        .env_remove("KINO_SPEECH")
        .arg("--home")
        .arg(&home)
        .arg("--models")
        .arg(models_dir())
        .arg("-q")
        .arg("transcribe")
        .arg(&video)
        .args(["--json", "--language", "en"])
        .output()
        .unwrap();
    let took = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "kino transcribe failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(v["language"], "en", "{v}");
    let cues: Vec<(i64, &str)> = v["cues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["start_ms"].as_i64().unwrap(), c["text"].as_str().unwrap()))
        .collect();
    let texts: Vec<&str> = cues.iter().map(|(_, t)| *t).collect();
    let hyp = normalise(&texts.join(" "));
    let errors = word_distance(&truth, &hyp);
    let wer = errors as f64 / truth.len() as f64;

    // The figures, for the log.
    println!(
        "kino transcribe: {secs} s of audio in {took:.1} s ({:.2}x real time), {} cues, warnings {}",
        took / secs as f64,
        cues.len(),
        v["warnings"]
    );
    for c in v["cues"].as_array().unwrap() {
        println!(
            "  [{:>7} -> {:>7}] {}",
            c["start_ms"],
            c["end_ms"],
            c["text"].as_str().unwrap()
        );
    }
    let starts_s: Vec<u64> = paragraphs.iter().map(|p| p["start_s"].as_u64().unwrap()).collect();
    let firsts = first_starts(&starts_s, &cues.iter().map(|(at, _)| *at).collect::<Vec<_>>());
    let ref_firsts = first_starts(&starts_s, &ref_segments.iter().map(|(at, _)| *at).collect::<Vec<_>>());
    let kino_pp = per_paragraph(paragraphs, &hyp);
    // The worst start error (None: a paragraph has no cue), and the
    // paragraphs off by more than allowed with the cue before their first
    // one (which may hold their first words).
    let mut worst = Some(0i64);
    let mut late = Vec::new();
    for (k, &s) in starts_s.iter().enumerate() {
        let truth_ms = s as i64 * 1000;
        let error = firsts[k].map(|f| f - truth_ms);
        worst = worst.zip(error).map(|(w, e)| w.max(e.abs()));
        if error.is_none_or(|e| e.abs() > MAX_START_ERROR_MS) {
            let before = cues.iter().rev().find(|(at, _)| firsts[k].is_none_or(|f| *at < f));
            late.push((s, firsts[k], before));
        }
        println!(
            "  paragraph at {s:>3} s: first cue at {:?} ms (error {:?} ms; reference's {:?} ms), \
             WER kino {}/{} reference {}/{}",
            firsts[k],
            error,
            ref_firsts[k].map(|f| f - truth_ms),
            kino_pp[k].0,
            kino_pp[k].1,
            ref_pp[k].0,
            ref_pp[k].1
        );
    }
    println!(
        "WER kino {errors}/{} = {wer:.4}, WER reference {ref_errors}/{} = {ref_wer:.4} (same samples: {same_audio}), \
         worst start error {worst:?} ms",
        truth.len(),
        truth.len()
    );
    std::io::stdout().flush().unwrap();

    assert!(
        wer <= MAX_WER,
        "WER {wer:.4} above {MAX_WER}: kino heard {:?}",
        hyp.join(" ")
    );
    assert!(
        (wer - ref_wer).abs() <= MAX_WER_GAP,
        "WER {wer:.4} more than {MAX_WER_GAP} from the reference's {ref_wer:.4}"
    );
    assert!(
        late.is_empty(),
        "paragraphs whose first cue is more than {MAX_START_ERROR_MS} ms off \
         (start s, first cue's start ms, the cue before it): {late:?}"
    );
}
