//! Hostile input for the subtitle readers (issue #21): mutated SRT, WebVTT and ASS files, arbitrary bytes and
//! strings, and generated cue lists that must read back exactly. `KINO_FUZZ_CASES` sets the cases per property
//! (default 10 000); `scripts/soak` runs a million in release mode.
//!
//! What holds for any input: no panic; every cue starts at 0 ms or later and ends after it starts; cues are
//! sorted by (start, end) with no repeated cue; cue text is non-empty, made of trimmed non-empty lines joined
//! with `\n` whose only whitespace is single spaces; SRT/WebVTT give at most one cue per timing line; an ASS file
//! FFmpeg cannot read is an error that names it.

use std::time::{Duration, Instant};

use ffmpeg_next as ffmpeg;
use kino_fuzzkit::{config, mutated};
use proptest::prelude::*;

use super::*;

/// The format's tokens the mutator inserts.
const DICTIONARY: &[&[u8]] = &[
    b"-->",
    b" --> ",
    b"00:00:01,000",
    b"00:00:01.000",
    b"01:02.5",
    b"99999999999:59:59.999",
    b"999:59:59,999",
    b"-1",
    b"\n",
    b"\n\n",
    b"\r\n",
    b"\r",
    b"WEBVTT",
    b"NOTE ",
    b"STYLE",
    b"{\\an8}",
    b"{\\",
    b"}",
    b"<b>",
    b"</i>",
    b"<",
    b">",
    b"<font color=\"red\">",
    b"&amp;",
    b"&#x110000;",
    b"&#99999999999;",
    b"&#",
    b"&",
    b";",
    b"\\N",
    b"\\h",
    b"Dialogue:",
    b"Dialogue: 0,0:00:01.00,0:00:02.00,Default,,0,0,0,,",
    b"[Events]",
    b"[Script Info]",
    b"Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
    b",",
    b"\0",
    b"\xEF\xBB\xBF",
    b"\xFF\xFE",
    b"\xFE\xFF",
    b"\xC3",
    b"\xFF",
    b"\xE2\x80\xA8",
    b"\xC2\xA0",
];

const SRT: &str = "1\n00:00:01,000 --> 00:00:02,500\n<i>Hello</i> there\n\n2\n00:00:03,000 --> 00:00:04,000\n\
{\\an8}Top &amp; <font color=\"red\">bottom</font>\nsecond line\n\n3\n00:00:03,000 --> 00:00:03,500 X1:10\n\
&lt;overlap&gt; &#233;&#x263A;\\Nnext\n";

const VTT: &str = "WEBVTT - a title\n\nNOTE a comment\nspanning lines\n\nSTYLE\n::cue { color: red }\n\n\
intro\n00:01.000 --> 00:02.000 align:start position:10%\n<v Roger>Hi <c.loud>there</c>\n\n\
00:00:02.500 --> 00:00:04.000\n<00:00:03.000>karaoke &nbsp;words\n\n10:00:00.000 --> 10:00:01.000\nlate\n";

const ASS: &str = "[Script Info]\nScriptType: v4.00+\nPlayResX: 384\n\n[V4+ Styles]\n\
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, \
Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, \
MarginR, MarginV, Encoding\n\
Style: Default,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,2,2,2,10,10,10,1\n\n\
[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n\
Dialogue: 0,0:00:01.00,0:00:02.50,Default,,0,0,0,,{\\b1}Bold{\\b0}, and commas\\Nnext line\n\
Dialogue: 0,0:00:00.50,0:00:05.00,Default,,0,0,0,,{\\an8}&amp; first <i>by start</i>\n\
Comment: 0,0:00:02.00,0:00:03.00,Default,,0,0,0,,not shown\n\
Dialogue: 1,1:00:00.00,1:00:00.00,Default,,0,0,0,,no duration\n";

const SSA: &str = "[Script Info]\nScriptType: v4.00\n\n[V4 Styles]\n\
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, TertiaryColour, BackColour, Bold, Italic, \
BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, AlphaLevel, Encoding\n\
Style: Default,Arial,20,16777215,255,0,0,0,0,1,2,2,2,10,10,10,0,1\n\n\
[Events]\nFormat: Marked, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n\
Dialogue: Marked=0,0:00:01.00,0:00:02.00,Default,,0000,0000,0000,,Old style\n";

fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
    let mut out = if big_endian { vec![0xFE, 0xFF] } else { vec![0xFF, 0xFE] };
    for u in text.encode_utf16() {
        out.extend_from_slice(&if big_endian { u.to_be_bytes() } else { u.to_le_bytes() });
    }
    out
}

fn with_bom(text: &str) -> Vec<u8> {
    [&[0xEF, 0xBB, 0xBF][..], text.as_bytes()].concat()
}

/// Valid files in every encoding and line ending the readers accept.
fn timed_text_seeds() -> Vec<Vec<u8>> {
    let mut cp1252 = b"1\r\n00:00:01,000 --> 00:00:02,000\r\ncaf\xE9 \x96 \x93ok\x94\r\n".to_vec();
    cp1252.extend_from_slice(b"\r\n2\r\n00:00:02,000 --> 00:00:03,000\r\n\xA0\x80\x9F\r\n");
    vec![
        SRT.as_bytes().to_vec(),
        with_bom(&SRT.replace('\n', "\r\n")),
        utf16(SRT, false),
        utf16(&SRT.replace('\n', "\r\n"), true),
        cp1252,
        VTT.as_bytes().to_vec(),
        with_bom(&VTT.replace('\n', "\r")),
        utf16(VTT, false),
    ]
}

fn ass_seeds() -> Vec<Vec<u8>> {
    vec![
        ASS.as_bytes().to_vec(),
        with_bom(&ASS.replace('\n', "\r\n")),
        SSA.as_bytes().to_vec(),
        utf16(ASS, false),
    ]
}

/// The invariants of every cue list the readers return.
fn check_cues(set: &CueSet) -> Result<(), TestCaseError> {
    for c in &set.cues {
        prop_assert!(c.start_ms >= 0, "{c:?}");
        prop_assert!(c.end_ms > c.start_ms, "{c:?}");
        prop_assert_eq!(c.source.as_str(), SOURCE_SUBTITLE);
        check_clean(&c.text)?;
        prop_assert!(!c.text.is_empty(), "{c:?}");
    }
    for w in set.cues.windows(2) {
        prop_assert!(
            (w[0].start_ms, w[0].end_ms) <= (w[1].start_ms, w[1].end_ms),
            "unsorted: {w:?}"
        );
        prop_assert!(
            !(w[0].start_ms == w[1].start_ms && w[0].end_ms == w[1].end_ms && w[0].text == w[1].text),
            "repeated: {w:?}"
        );
    }
    Ok(())
}

/// What [`clean_markup`] promises of its output: trimmed, non-empty lines with single spaces.
fn check_clean(text: &str) -> Result<(), TestCaseError> {
    if text.is_empty() {
        return Ok(());
    }
    for line in text.split('\n') {
        prop_assert!(!line.is_empty(), "empty line in {text:?}");
        prop_assert!(!line.contains("  "), "double space in {text:?}");
        prop_assert!(
            !line.starts_with(' ') && !line.ends_with(' '),
            "untrimmed line in {text:?}"
        );
        prop_assert!(
            !line.chars().any(|ch| ch.is_whitespace() && ch != ' '),
            "whitespace other than a space in {text:?}"
        );
    }
    Ok(())
}

fn check_timed_text(bytes: &[u8]) -> Result<(), TestCaseError> {
    let (text, _) = decode_text(bytes);
    let timing_lines = text
        .replace("\r\n", "\n")
        .replace('\r', "\n")
        .lines()
        .filter(|l| l.contains("-->"))
        .count();
    for set in [parse_srt(bytes), parse_vtt(bytes)] {
        check_cues(&set)?;
        prop_assert!(set.cues.len() <= timing_lines);
        prop_assert!(set.cues.iter().all(|c| c.origin.is_empty() && c.language.is_none()));
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn fuzz_srt_vtt_mutated(bytes in mutated(timed_text_seeds(), DICTIONARY)) {
        check_timed_text(&bytes)?;
    }

    #[test]
    fn fuzz_srt_vtt_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_timed_text(&bytes)?;
    }

    #[test]
    fn fuzz_decode_text(bytes in proptest::collection::vec(any::<u8>(), 0..256), text in ".{0,64}") {
        let (decoded, encoding) = decode_text(&bytes);
        if let Ok(s) = std::str::from_utf8(&bytes) {
            if !bytes.starts_with(&[0xFF, 0xFE]) && !bytes.starts_with(&[0xFE, 0xFF]) {
                prop_assert_eq!(decoded.trim_start_matches('\u{feff}'), s.trim_start_matches('\u{feff}'));
                prop_assert_eq!(encoding, "utf-8");
            }
        }
        for big_endian in [false, true] {
            prop_assert_eq!(&decode_text(&utf16(&text, big_endian)).0, &text);
        }
        prop_assert_eq!(decode_text(&with_bom(&text)), (text.clone(), "utf-8"));
    }

    #[test]
    fn fuzz_timestamp_exact(h in 0i64..1000, m in 0i64..60, s in 0i64..60, ms in 0i64..1000, style in 0usize..4) {
        let want = ((h * 60 + m) * 60 + s) * 1000 + ms;
        let text = match style {
            0 => format!("{h:02}:{m:02}:{s:02},{ms:03}"),
            1 => format!(" {h}:{m:02}:{s:02}.{ms:03} "),
            2 => format!("{h:02}:{m:02}:{s:02}"),
            _ => format!("{:02}:{s:02}.{ms:03}", m),
        };
        let want = match style {
            2 => want - ms,
            3 => want - h * 3_600_000,
            _ => want,
        };
        prop_assert_eq!(parse_timestamp(&text), Some(want), "{}", text);
    }

    #[test]
    fn fuzz_timestamp_arbitrary(s in "[0-9:.,\\- ]{0,24}|.{0,24}") {
        if let Some(ms) = parse_timestamp(&s) {
            prop_assert!((0..1000 * 3_600_000).contains(&ms), "{s:?} -> {ms}");
        }
    }

    #[test]
    fn fuzz_clean_markup(s in "[<>{}&;#x0-9a-zA-Z\\\\/! \t\n\r\u{a0}\u{2028}]{0,80}|.{0,80}") {
        let out = clean_markup(&s);
        check_clean(&out)?;
        if !s.contains(['<', '{', '&', '\\']) {
            let plain: Vec<String> = s
                .lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .filter(|l| !l.is_empty())
                .collect();
            prop_assert_eq!(out, plain.join("\n"));
        }
    }

    #[test]
    fn fuzz_clean_markup_matches_reference(s in "[<>{}&;aNhé\\\\/! \n]{0,40}|[<>{}\\\\a-z0-9 ]{0,40}") {
        prop_assert_eq!(clean_markup(&s), clean_markup_reference(&s));
    }

    #[test]
    fn fuzz_packet_text(bytes in proptest::collection::vec(any::<u8>(), 0..256), codec in 0usize..7) {
        use ffmpeg::codec::Id;
        let id = [Id::MOV_TEXT, Id::ASS, Id::SSA, Id::SRT, Id::SUBRIP, Id::WEBVTT, Id::TEXT][codec];
        check_clean(&clean_markup(&packet_text(id, &bytes)))?;
    }

    #[test]
    fn fuzz_srt_vtt_round_trip(cues in proptest::collection::vec(cue(), 0..12), form in form()) {
        let bytes = render(&cues, form);
        let set = if form.vtt { parse_vtt(&bytes) } else { parse_srt(&bytes) };
        prop_assert!(set.warnings.is_empty() || cues.is_empty(), "{:?}", set.warnings);
        check_cues(&set)?;
        let mut want: Vec<(i64, i64, String)> = cues.iter().map(|c| (c.start, c.end, c.expected())).collect();
        want.sort_by_key(|c| (c.0, c.1));
        want.dedup();
        let got: Vec<(i64, i64, String)> = set.cues.into_iter().map(|c| (c.start_ms, c.end_ms, c.text)).collect();
        prop_assert_eq!(got, want);
    }
}

proptest! {
    // Each case writes a file and opens it with FFmpeg (about a millisecond).
    #![proptest_config(config(1))]

    #[test]
    fn fuzz_ass_mutated(bytes in mutated(ass_seeds(), DICTIONARY)) {
        check_ass(&bytes)?;
    }
}

/// Writes `bytes` as an `.ass` sidecar and reads it through FFmpeg.
fn check_ass(bytes: &[u8]) -> Result<(), TestCaseError> {
    thread_local! {
        static DIR: tempfile::TempDir = tempfile::tempdir().unwrap();
    }
    let path = DIR.with(|d| d.path().join("case.ass"));
    std::fs::write(&path, bytes).unwrap();
    let started = Instant::now();
    let result = read_embedded(&path);
    prop_assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    match result {
        Ok(set) => check_cues(&set)?,
        Err(e) => prop_assert!(e.to_string().contains(&path.display().to_string()), "{e}"),
    }
    Ok(())
}

/// A cue for the round trip: its times and text lines, each line a list of words (some of them markup).
#[derive(Debug, Clone)]
struct GenCue {
    start: i64,
    end: i64,
    lines: Vec<Vec<(&'static str, &'static str)>>,
}

/// Words as written and as read back.
const WORDS: &[(&str, &str)] = &[
    ("hello", "hello"),
    ("Wörld", "Wörld"),
    ("42", "42"),
    ("it's", "it's"),
    ("日本", "日本"),
    ("<i>slanted</i>", "slanted"),
    ("<font color=\"#ff0000\">red</font>", "red"),
    ("{\\an8}top", "top"),
    ("{\\b1}bold{\\b0}", "bold"),
    ("&amp;", "&"),
    ("&lt;3", "<3"),
    ("a&gt;b", "a>b"),
    ("&quot;q&quot;", "\"q\""),
    ("&#233;", "é"),
    ("&#x263A;", "☺"),
    ("x&nbsp;y", "x y"),
    ("&lrm;", ""),
    ("up\\Ndown", "up\ndown"),
    ("a\\hb", "a b"),
    ("-", "-"),
    ("{not", "{not"),
];

impl GenCue {
    fn written(&self) -> Vec<String> {
        self.lines
            .iter()
            .map(|l| l.iter().map(|w| w.0).collect::<Vec<_>>().join(" "))
            .collect()
    }

    fn expected(&self) -> String {
        let text = self
            .lines
            .iter()
            .map(|l| l.iter().map(|w| w.1).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n");
        text.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn cue() -> impl Strategy<Value = GenCue> {
    let word = proptest::sample::select(WORDS);
    let line = proptest::collection::vec(word, 1..6);
    (
        0i64..1000 * 3_600_000,
        1i64..10_000_000,
        proptest::collection::vec(line, 1..4),
    )
        .prop_map(|(start, dur, lines)| GenCue {
            start,
            end: (start + dur).min(1000 * 3_600_000 - 1),
            lines,
        })
        .prop_filter("end after start, text left after cleaning", |c| {
            c.end > c.start && !c.expected().is_empty()
        })
}

#[derive(Debug, Clone, Copy)]
struct Form {
    vtt: bool,
    crlf: bool,
    /// 0 plain UTF-8, 1 UTF-8 with BOM, 2 UTF-16LE, 3 UTF-16BE.
    encoding: u8,
    numbered: bool,
}

fn form() -> impl Strategy<Value = Form> {
    (any::<bool>(), any::<bool>(), 0u8..4, any::<bool>()).prop_map(|(vtt, crlf, encoding, numbered)| Form {
        vtt,
        crlf,
        encoding,
        numbered,
    })
}

fn stamp(ms: i64, vtt: bool) -> String {
    let (h, m, s, f) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    match (vtt, h) {
        (true, 0) => format!("{m:02}:{s:02}.{f:03}"),
        (true, _) => format!("{h:02}:{m:02}:{s:02}.{f:03}"),
        (false, _) => format!("{h:02}:{m:02}:{s:02},{f:03}"),
    }
}

fn render(cues: &[GenCue], form: Form) -> Vec<u8> {
    let mut out = String::new();
    if form.vtt {
        out.push_str("WEBVTT\n\n");
    }
    for (i, c) in cues.iter().enumerate() {
        if form.numbered || !form.vtt {
            out.push_str(&format!("{}\n", i + 1));
        }
        let settings = if form.vtt { " line:0 align:start" } else { "" };
        out.push_str(&format!(
            "{} --> {}{settings}\n",
            stamp(c.start, form.vtt),
            stamp(c.end, form.vtt)
        ));
        for line in c.written() {
            out.push_str(&line);
            out.push('\n');
        }
        out.push('\n');
    }
    if form.crlf {
        out = out.replace('\n', "\r\n");
    }
    match form.encoding {
        0 => out.into_bytes(),
        1 => with_bom(&out),
        2 => utf16(&out, false),
        _ => utf16(&out, true),
    }
}

/// The first, quadratic `clean_markup` (each `<` and `{` scanned to the end of its line): the linear one must
/// give the same text.
fn clean_markup_reference(s: &str) -> String {
    let s = s.replace("\\N", "\n").replace("\\n", "\n").replace("\\h", " ");
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let close = match c {
            '<' => '>',
            '{' => '}',
            _ => {
                out.push(c);
                continue;
            }
        };
        let rest: String = chars.clone().take_while(|&c| c != close && c != '\n').collect();
        let closes = chars.clone().nth(rest.chars().count()) == Some(close);
        let looks_like = if c == '<' {
            rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '/' || c == '!')
        } else {
            rest.starts_with('\\')
        };
        if closes && looks_like {
            for _ in 0..=rest.chars().count() {
                chars.next();
            }
        } else {
            out.push(c);
        }
    }
    decode_entities(&out)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `f` and fails when it takes longer than `limit`: markup scanning must stay linear in the line length.
fn within(limit: Duration, what: &str, f: impl FnOnce()) {
    let started = Instant::now();
    f();
    let took = started.elapsed();
    assert!(took < limit, "{what} took {took:?}");
}

#[test]
fn long_line_of_markup_openers_is_linear() {
    for opener in ["<", "{", "{\\", "<a", "&", "&#"] {
        let line = opener.repeat(200_000 / opener.len());
        within(Duration::from_secs(2), &format!("a line of {opener:?}"), || {
            let out = clean_markup(&line);
            assert_eq!(out, line);
        });
        let srt = format!("1\n00:00:01,000 --> 00:00:02,000\n{line}\n");
        within(Duration::from_secs(2), &format!("an SRT cue of {opener:?}"), || {
            assert_eq!(parse_srt(srt.as_bytes()).cues.len(), 1);
        });
    }
}

#[test]
fn ass_seeds_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seed.ass");
    std::fs::write(&path, ASS).unwrap();
    let set = read_embedded(&path).unwrap();
    let got: Vec<_> = set
        .cues
        .iter()
        .map(|c| (c.start_ms, c.end_ms, c.text.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (500, 5000, "& first by start"),
            (1000, 2500, "Bold, and commas\nnext line"),
            (3_600_000, 3_603_000, "no duration"),
        ]
    );
    std::fs::write(&path, SSA).unwrap();
    let set = read_embedded(&path).unwrap();
    assert_eq!(set.cues.len(), 1, "{set:?}");
    assert_eq!(set.cues[0].text, "Old style");
}
