//! Subtitle parsing: sidecar files and embedded streams.

mod common;

use common::ffmpeg;
use kino_ingest::subtitles::{parse_srt, parse_vtt, read_cues};

fn texts(set: &kino_ingest::CueSet) -> Vec<(i64, i64, String)> {
    set.cues
        .iter()
        .map(|c| (c.start_ms, c.end_ms, c.text.clone()))
        .collect()
}

const SRT: &str = "1\n00:00:01,000 --> 00:00:02,500\n<i>Hello</i> there\n\n2\n00:00:03,000 --> 00:00:04,000\n{\\an8}Top &amp; <font color=\"red\">bottom</font>\nsecond line\n\n";

#[test]
fn srt_basic_markup_and_entities() {
    let set = parse_srt(SRT.as_bytes());
    assert!(set.warnings.is_empty(), "{:?}", set.warnings);
    assert_eq!(
        texts(&set),
        vec![
            (1000, 2500, "Hello there".into()),
            (3000, 4000, "Top & bottom\nsecond line".into())
        ]
    );
    assert!(set.cues.iter().all(|c| c.source == "subtitle"));
}

#[test]
fn srt_crlf_and_bom() {
    let mut bytes = vec![0xEF, 0xBB, 0xBF];
    bytes.extend_from_slice(SRT.replace('\n', "\r\n").as_bytes());
    assert_eq!(texts(&parse_srt(&bytes)), texts(&parse_srt(SRT.as_bytes())));
}

#[test]
fn srt_utf16_with_bom() {
    let text = "1\n00:00:01,000 --> 00:00:02,000\nÜber straße — 日本\n";
    let mut le = vec![0xFF, 0xFE];
    let mut be = vec![0xFE, 0xFF];
    for u in text.encode_utf16() {
        le.extend_from_slice(&u.to_le_bytes());
        be.extend_from_slice(&u.to_be_bytes());
    }
    for bytes in [le, be] {
        assert_eq!(
            texts(&parse_srt(&bytes)),
            vec![(1000, 2000, "Über straße — 日本".to_string())]
        );
    }
}

#[test]
fn srt_windows_1252_fallback() {
    // "café – “ok”" in Windows-1252.
    let mut bytes = b"1\n00:00:01,000 --> 00:00:02,000\ncaf".to_vec();
    bytes.extend_from_slice(&[0xE9, b' ', 0x96, b' ', 0x93, b'o', b'k', 0x94, b'\n']);
    assert_eq!(texts(&parse_srt(&bytes)), vec![(1000, 2000, "café – “ok”".to_string())]);
}

#[test]
fn srt_malformed_cue_is_skipped_with_a_warning_and_the_rest_kept() {
    let srt = "1\n00:00:01,000 --> 00:00:02,000\nfirst\n\n2\n00:00:xx,000 --> 00:00:03,000\nbroken\n\n3\n00:00:05,000 --> 00:00:04,000\nbackwards\n\n4\n00:00:06,000 --> 00:00:07,000\nlast\n";
    let set = parse_srt(srt.as_bytes());
    assert_eq!(
        texts(&set),
        vec![(1000, 2000, "first".into()), (6000, 7000, "last".into())]
    );
    assert_eq!(set.warnings.len(), 2, "{:?}", set.warnings);
    assert!(set.warnings[0].contains("line 6"), "{:?}", set.warnings);
}

#[test]
fn srt_out_of_order_and_overlapping_cues() {
    let srt = "2\n00:00:05,000 --> 00:00:06,000\nlater\n\n1\n00:00:01,000 --> 00:00:05,500\nearly and long\n\n3\n00:00:02,000 --> 00:00:03,000\noverlap\n";
    let set = parse_srt(srt.as_bytes());
    assert_eq!(
        texts(&set),
        vec![
            (1000, 5500, "early and long".into()),
            (2000, 3000, "overlap".into()),
            (5000, 6000, "later".into())
        ]
    );
}

#[test]
fn garbage_subtitle_file_gives_no_cues_and_a_warning() {
    let bytes: Vec<u8> = (0..4000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let set = parse_srt(&bytes);
    assert!(set.cues.is_empty());
    assert!(!set.warnings.is_empty());
}

#[test]
fn vtt_header_notes_settings_and_voice_spans() {
    let vtt = "WEBVTT - film\n\nNOTE this is a note\nwith more words\n\nSTYLE\n::cue { color: red }\n\nintro\n00:01.000 --> 00:02.000 align:start position:10%\n<v Roger>Hi <c.yellow>you</c></v>\n\n00:00:03.500 --> 00:00:04.000\nA &lt;tag&gt; &#233;\n";
    let set = parse_vtt(vtt.as_bytes());
    assert_eq!(
        texts(&set),
        vec![(1000, 2000, "Hi you".into()), (3500, 4000, "A <tag> é".into())]
    );
}

fn video(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=gray:s=32x32:r=5:d=6",
        "-c:v",
        "libx264",
        p.to_str().unwrap(),
    ]);
    p
}

#[test]
fn sidecars_are_found_with_their_language() {
    let dir = tempfile::tempdir().unwrap();
    let v = video(dir.path(), "movie.mp4");
    std::fs::write(
        dir.path().join("movie.srt"),
        "1\n00:00:01,000 --> 00:00:02,000\nplain\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("movie.en.vtt"),
        "WEBVTT\n\n00:00:03.000 --> 00:00:04.000\nenglish\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("other.srt"),
        "1\n00:00:01,000 --> 00:00:02,000\nnot mine\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("movie.de.srt"), "not a subtitle at all").unwrap();
    let set = read_cues(&v).unwrap();
    let got: Vec<_> = set
        .cues
        .iter()
        .map(|c| (c.text.as_str(), c.origin.as_str(), c.language.as_deref()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("plain", "sidecar:movie.srt", None),
            ("english", "sidecar:movie.en.vtt", Some("en"))
        ]
    );
    assert!(
        set.warnings.iter().any(|w| w.contains("movie.de.srt")),
        "{:?}",
        set.warnings
    );
}

#[test]
fn embedded_srt_in_mkv_mov_text_in_mp4_webvtt_in_webm_and_ass_in_mkv() {
    let dir = tempfile::tempdir().unwrap();
    let srt = dir.path().join("in.srt");
    std::fs::write(
        &srt,
        "1\n00:00:01,000 --> 00:00:02,000\n<b>First</b> line\n\n2\n00:00:03,500 --> 00:00:05,000\nSecond\n",
    )
    .unwrap();
    let cases = [
        ("out.mkv", "srt", "libx264"),
        ("out.mp4", "mov_text", "libx264"),
        ("out.webm", "webvtt", "libvpx-vp9"),
        ("styled.mkv", "ass", "libx264"),
    ];
    for (name, scodec, vcodec) in cases {
        let out = dir.path().join(name);
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "color=c=gray:s=32x32:r=5:d=6",
            "-i",
            srt.to_str().unwrap(),
            "-map",
            "0:v",
            "-map",
            "1:s",
            "-c:v",
            vcodec,
            "-c:s",
            scodec,
            "-metadata:s:s:0",
            "language=eng",
            out.to_str().unwrap(),
        ]);
        let info = kino_ingest::probe(&out).unwrap();
        assert_eq!(info.subtitle_streams.len(), 1, "{name}");
        assert!(info.subtitle_streams[0].text);
        let set = read_cues(&out).unwrap();
        assert_eq!(
            texts(&set),
            vec![(1000, 2000, "First line".into()), (3500, 5000, "Second".into())],
            "{name} ({scodec}): {:?}",
            set.warnings
        );
        assert!(
            set.cues
                .iter()
                .all(|c| c.origin == "stream:1" && c.language.as_deref() == Some("eng")),
            "{name}"
        );
    }
}

#[test]
fn ass_styling_is_stripped() {
    let dir = tempfile::tempdir().unwrap();
    let ass = dir.path().join("in.ass");
    std::fs::write(
        &ass,
        "[Script Info]\nScriptType: v4.00+\n\n[V4+ Styles]\nFormat: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding\nStyle: Default,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,2,2,2,10,10,10,1\n\n[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\nDialogue: 0,0:00:01.00,0:00:02.50,Default,,0,0,0,,{\\b1}Bold{\\b0}, and commas\\Nnext line\n",
    )
    .unwrap();
    let out = dir.path().join("a.mkv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=gray:s=32x32:r=5:d=3",
        "-i",
        ass.to_str().unwrap(),
        "-map",
        "0:v",
        "-map",
        "1:s",
        "-c:v",
        "libx264",
        "-c:s",
        "copy",
        out.to_str().unwrap(),
    ]);
    let set = read_cues(&out).unwrap();
    assert_eq!(texts(&set), vec![(1000, 2500, "Bold, and commas\nnext line".into())]);
}
