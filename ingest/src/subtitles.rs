//! Subtitles: sidecar files next to a video and text streams embedded in it.
//!
//! Sidecars are `NAME.srt`, `NAME.vtt`, `NAME.LANG.srt`, `NAME.LANG.vtt` (and `.ass`/`.ssa`,
//! read through FFmpeg) in the video's folder. Embedded streams are read packet by
//! packet for the text codecs `subrip`, `mov_text`, `webvtt`, `ass`/`ssa` and `text`;
//! bitmap subtitles are reported as a warning.
//!
//! Text files may be UTF-8 (with or without BOM), UTF-16 with BOM, or else are read as
//! Windows-1252 (a superset of Latin-1). Markup (`<i>`, `<font …>`, `{\an8}`, ASS
//! overrides, HTML entities) is removed. Cues are sorted by start time; overlapping cues
//! are kept; a malformed cue is skipped with a warning and the rest of the file is read.

use std::path::{Path, PathBuf};

use ffmpeg_next as ffmpeg;
use serde::Serialize;

use crate::media;
use crate::IngestError;

/// One timed piece of text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cue {
    /// Start in milliseconds on the video's timeline.
    pub start_ms: i64,
    /// End in milliseconds (always greater than `start_ms`).
    pub end_ms: i64,
    /// The text without markup; lines joined with `\n`.
    pub text: String,
    /// Kind of text: `subtitle` here (later also `speech` and `screen`).
    pub source: String,
    /// Where it came from: `sidecar:FILE_NAME` or `stream:INDEX`.
    pub origin: String,
    /// Language, from the sidecar name (`movie.en.srt`) or the stream's tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// Cues plus the problems met while reading them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CueSet {
    /// The cues, sorted by start time (then end time).
    pub cues: Vec<Cue>,
    /// What was skipped and why (malformed cues, unreadable sidecars, bitmap streams).
    pub warnings: Vec<String>,
}

/// The kind of text subtitles use.
pub const SOURCE_SUBTITLE: &str = "subtitle";

const SIDECAR_EXTS: &[&str] = &["srt", "vtt", "ass", "ssa"];

/// Reads every subtitle of a video: sidecar files first, then embedded text streams.
///
/// Errors only when the video file itself is missing or unreadable; a subtitle file or
/// stream that cannot be read becomes a warning in the result.
pub fn read_cues(video_path: &Path) -> Result<CueSet, IngestError> {
    std::fs::metadata(video_path).map_err(|e| IngestError::io(video_path, e))?;
    std::fs::File::open(video_path).map_err(|e| IngestError::io(video_path, e))?;
    let mut out = CueSet::default();
    for (sidecar, lang) in find_sidecars(video_path) {
        let name = sidecar
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let origin = format!("sidecar:{name}");
        let ext = sidecar
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let set = match ext.as_str() {
            "srt" | "vtt" => match std::fs::read(&sidecar) {
                Ok(bytes) if ext == "srt" => parse_srt(&bytes),
                Ok(bytes) => parse_vtt(&bytes),
                Err(e) => {
                    out.warnings.push(IngestError::io(&sidecar, e).to_string());
                    continue;
                }
            },
            _ => match read_embedded(&sidecar) {
                Ok(set) => set,
                Err(e) => {
                    out.warnings.push(e.to_string());
                    continue;
                }
            },
        };
        for w in set.warnings {
            out.warnings.push(format!("{}: {w}", sidecar.display()));
        }
        for mut c in set.cues {
            c.origin = origin.clone();
            if c.language.is_none() {
                c.language = lang.clone();
            }
            out.cues.push(c);
        }
    }
    match read_embedded(video_path) {
        Ok(set) => {
            out.cues.extend(set.cues);
            out.warnings.extend(set.warnings);
        }
        Err(e) => out.warnings.push(format!("embedded subtitles not read: {e}")),
    }
    sort_cues(&mut out.cues);
    Ok(out)
}

/// Sidecar subtitle files of `video_path` with the language part of their name.
pub fn find_sidecars(video_path: &Path) -> Vec<(PathBuf, Option<String>)> {
    let Some(stem) = video_path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let dir = match video_path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((base, ext)) = name.rsplit_once('.') else {
            continue;
        };
        if !SIDECAR_EXTS.contains(&ext.to_lowercase().as_str()) {
            continue;
        }
        let lang = if base == stem {
            None
        } else if let Some(mid) = base.strip_prefix(&stem).and_then(|m| m.strip_prefix('.')) {
            let ok = !mid.is_empty()
                && mid.split('.').count() <= 2
                && mid.split('.').all(|t| {
                    !t.is_empty()
                        && t.len() <= 12
                        && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                });
            if !ok {
                continue;
            }
            Some(mid.to_string())
        } else {
            continue;
        };
        found.push((entry.path(), lang));
    }
    found.sort();
    found
}

/// Decodes subtitle file bytes: UTF-8 (BOM optional), UTF-16 LE/BE with BOM, else
/// Windows-1252. Returns the text and the encoding used.
pub fn decode_text(bytes: &[u8]) -> (String, &'static str) {
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return (String::from_utf8_lossy(rest).into_owned(), "utf-8");
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        let units: Vec<u16> = rest.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        return (String::from_utf16_lossy(&units), "utf-16le");
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        let units: Vec<u16> = rest.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
        return (String::from_utf16_lossy(&units), "utf-16be");
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), "utf-8"),
        Err(_) => (bytes.iter().map(|&b| windows_1252(b)).collect(), "windows-1252"),
    }
}

fn windows_1252(b: u8) -> char {
    const HIGH: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž', '\u{8f}', '\u{90}', '‘',
        '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}', 'ž', 'Ÿ',
    ];
    match b {
        0x80..=0x9F => HIGH[(b - 0x80) as usize],
        _ => b as char,
    }
}

/// Parses SubRip (`.srt`) bytes. Malformed cues are skipped with a warning.
pub fn parse_srt(bytes: &[u8]) -> CueSet {
    parse_timed_text(bytes, false)
}

/// Parses WebVTT (`.vtt`) bytes. `NOTE`, `STYLE` and `REGION` blocks are ignored;
/// malformed cues are skipped with a warning.
pub fn parse_vtt(bytes: &[u8]) -> CueSet {
    parse_timed_text(bytes, true)
}

fn parse_timed_text(bytes: &[u8], vtt: bool) -> CueSet {
    let (text, _) = decode_text(bytes);
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = text.lines().collect();
    let mut set = CueSet::default();
    if vtt
        && !lines
            .first()
            .is_some_and(|l| l.trim_start_matches('\u{feff}').starts_with("WEBVTT"))
    {
        set.warnings.push("missing WEBVTT header; read anyway".into());
    }
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if !line.contains("-->") {
            i += 1;
            continue;
        }
        let line_no = i + 1;
        // Text runs to the first blank line or the next timing line.
        let mut j = i + 1;
        let mut body = Vec::new();
        while j < lines.len() && !lines[j].trim().is_empty() && !lines[j].contains("-->") {
            body.push(lines[j]);
            j += 1;
        }
        // A cue number directly before the next timing line is not text.
        if j < lines.len() && lines[j].contains("-->") {
            if let Some(last) = body.last() {
                if last.trim().chars().all(|c| c.is_ascii_digit()) {
                    body.pop();
                }
            }
        }
        match parse_timing(line) {
            Some((start, end)) if end > start => {
                let cleaned = clean_markup(&body.join("\n"));
                if cleaned.is_empty() {
                    set.warnings.push(format!("line {line_no}: cue without text skipped"));
                } else {
                    set.cues.push(Cue {
                        start_ms: start,
                        end_ms: end,
                        text: cleaned,
                        source: SOURCE_SUBTITLE.into(),
                        origin: String::new(),
                        language: None,
                    });
                }
            }
            Some((start, end)) => set.warnings.push(format!(
                "line {line_no}: cue ends ({end} ms) before it starts ({start} ms); skipped"
            )),
            None => set.warnings.push(format!(
                "line {line_no}: malformed timing {:?}; cue skipped",
                line.trim()
            )),
        }
        i = j;
    }
    if set.cues.is_empty() && !lines.iter().any(|l| l.contains("-->")) {
        set.warnings.push("no cues found".into());
    }
    sort_cues(&mut set.cues);
    set
}

fn parse_timing(line: &str) -> Option<(i64, i64)> {
    let (a, b) = line.split_once("-->")?;
    let start = parse_timestamp(a.trim())?;
    // WebVTT puts cue settings after the end time.
    let end = parse_timestamp(b.split_whitespace().next()?)?;
    Some((start, end))
}

/// Parses `HH:MM:SS,mmm`, `HH:MM:SS.mmm`, `MM:SS.mmm` (fraction optional) into ms.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    let (clock, frac) = match s.find([',', '.']) {
        Some(p) => (&s[..p], &s[p + 1..]),
        None => (s, ""),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 {
        return None;
    }
    let mut nums = Vec::with_capacity(3);
    for p in &parts {
        let p = p.trim();
        if p.is_empty() || p.len() > 3 || !p.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        nums.push(p.parse::<i64>().ok()?);
    }
    let (h, m, sec) = if nums.len() == 3 {
        (nums[0], nums[1], nums[2])
    } else {
        (0, nums[0], nums[1])
    };
    if m >= 60 || sec >= 60 {
        return None;
    }
    let ms = if frac.is_empty() {
        0
    } else {
        if !frac.chars().all(|c| c.is_ascii_digit()) || frac.len() > 3 {
            return None;
        }
        let mut f = frac.to_string();
        while f.len() < 3 {
            f.push('0');
        }
        f.parse::<i64>().ok()?
    };
    Some(((h * 60 + m) * 60 + sec) * 1000 + ms)
}

/// Removes markup from subtitle text: HTML-like tags, ASS override blocks `{…}`, ASS
/// escapes (`\N`, `\n`, `\h`) and HTML entities; trims lines and drops empty ones.
pub fn clean_markup(s: &str) -> String {
    let s = s.replace("\\N", "\n").replace("\\n", "\n").replace("\\h", " ");
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    // Where the last search for a `>` (0) or a `}` (1) stopped, at the closer or the line's end. Openers before
    // that point reuse it, which keeps a line full of unclosed `<` or `{` linear instead of quadratic.
    let mut stop = [0usize; 2];
    let (mut copied, mut i) = (0, 0);
    while i < b.len() {
        let (k, close) = match b[i] {
            b'<' => (0, b'>'),
            b'{' => (1, b'}'),
            _ => {
                i += 1;
                continue;
            }
        };
        if stop[k] <= i {
            stop[k] = b[i + 1..]
                .iter()
                .position(|&c| c == close || c == b'\n')
                .map_or(b.len(), |p| i + 1 + p);
        }
        let end = stop[k];
        let closes = end < b.len() && b[end] == close;
        // A tag only when it closes on this line and looks like one; an override block starts with `\`.
        let first = b.get(i + 1).copied().filter(|_| end > i + 1);
        let markup = closes
            && match k {
                0 => first.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'/' || c == b'!'),
                _ => first == Some(b'\\'),
            };
        if markup {
            out.push_str(&s[copied..i]);
            i = end + 1;
            copied = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&s[copied..]);
    let out = decode_entities(&out);
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        // An entity is short: look for its `;` among the next 10 bytes only (a line of `&` stays linear).
        let end = rest.bytes().take(11).skip(1).position(|c| c == b';').map(|e| e + 1);
        let decoded = end.and_then(|e| {
            let name = &rest[1..e];
            let ch = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                "lrm" | "rlm" => Some('\u{200b}'),
                _ if name.starts_with("#x") || name.starts_with("#X") => {
                    u32::from_str_radix(&name[2..], 16).ok().and_then(char::from_u32)
                }
                _ if name.starts_with('#') => name[1..].parse::<u32>().ok().and_then(char::from_u32),
                _ => None,
            }?;
            Some((ch, e + 1))
        });
        match decoded {
            Some((ch, len)) => {
                if ch != '\u{200b}' {
                    out.push(ch);
                }
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn sort_cues(cues: &mut Vec<Cue>) {
    cues.sort_by_key(|c| (c.start_ms, c.end_ms));
    cues.dedup_by(|b, a| a.start_ms == b.start_ms && a.end_ms == b.end_ms && a.text == b.text && a.origin == b.origin);
}

/// Reads the text subtitle streams embedded in a media file (or an `.ass`/`.ssa` file,
/// which FFmpeg opens as a one-stream container). Times are on the video stream's
/// timeline (its start time is subtracted) when the file has video.
pub fn read_embedded(path: &Path) -> Result<CueSet, IngestError> {
    let mut input = media::open_input(path, media::OPEN_TIMEOUT)?;
    let mut set = CueSet::default();
    let origin_s = media::best_video(&input)
        .filter(|v| v.start_time() != ffmpeg::ffi::AV_NOPTS_VALUE)
        .map(|v| v.start_time() as f64 * f64::from(v.time_base()))
        .unwrap_or(0.0);
    struct Sub {
        index: usize,
        codec: ffmpeg::codec::Id,
        tb: f64,
        lang: Option<String>,
    }
    let mut subs = Vec::new();
    for s in input.streams() {
        let p = s.parameters();
        if p.medium() != ffmpeg::media::Type::Subtitle {
            continue;
        }
        if media::is_text_subtitle(p.id()) {
            subs.push(Sub {
                index: s.index(),
                codec: p.id(),
                tb: f64::from(s.time_base()),
                lang: s.metadata().get("language").filter(|l| *l != "und").map(str::to_string),
            });
        } else {
            set.warnings.push(format!(
                "{}: stream {} ({}) holds bitmap subtitles; not read",
                path.display(),
                s.index(),
                p.id().name()
            ));
        }
    }
    if subs.is_empty() {
        return Ok(set);
    }
    let mut malformed = 0usize;
    for (stream, packet) in input.packets() {
        let Some(sub) = subs.iter().find(|s| s.index == stream.index()) else {
            continue;
        };
        let Some(pts) = packet.pts().or(packet.dts()) else {
            malformed += 1;
            continue;
        };
        let start = ((pts as f64 * sub.tb - origin_s) * 1000.0).round() as i64;
        let dur = (packet.duration() as f64 * sub.tb * 1000.0).round() as i64;
        let end = if dur > 0 { start + dur } else { start + 3000 };
        let data = packet.data().unwrap_or(&[]);
        let raw = packet_text(sub.codec, data);
        let text = clean_markup(&raw);
        if text.is_empty() {
            continue; // mov_text and ASS use empty packets to clear the screen
        }
        if start < 0 && end <= 0 {
            malformed += 1;
            continue;
        }
        set.cues.push(Cue {
            start_ms: start.max(0),
            end_ms: end,
            text,
            source: SOURCE_SUBTITLE.into(),
            origin: format!("stream:{}", sub.index),
            language: sub.lang.clone(),
        });
    }
    if malformed > 0 {
        set.warnings.push(format!(
            "{}: {malformed} subtitle packets without usable times skipped",
            path.display()
        ));
    }
    sort_cues(&mut set.cues);
    Ok(set)
}

/// The text of one subtitle packet, markup still in.
fn packet_text(codec: ffmpeg::codec::Id, data: &[u8]) -> String {
    use ffmpeg::codec::Id;
    match codec {
        Id::MOV_TEXT => {
            if data.len() < 2 {
                return String::new();
            }
            let n = u16::from_be_bytes([data[0], data[1]]) as usize;
            let body = &data[2..(2 + n).min(data.len())];
            decode_text(body).0
        }
        Id::ASS | Id::SSA => {
            let (s, _) = decode_text(data);
            let s = s.trim_end_matches(['\r', '\n', '\0']);
            // Matroska/FFmpeg packets: ReadOrder,Layer,Style,Name,MarginL,MarginR,MarginV,Effect,Text.
            // Old SSA lines: Dialogue: Layer,Start,End,Style,Name,MarginL,MarginR,MarginV,Effect,Text.
            if let Some(rest) = s.strip_prefix("Dialogue:") {
                rest.splitn(10, ',').nth(9).unwrap_or("").to_string()
            } else {
                s.splitn(9, ',').nth(8).unwrap_or("").to_string()
            }
        }
        Id::SRT => {
            let (s, _) = decode_text(data);
            s.lines().filter(|l| !l.contains("-->")).collect::<Vec<_>>().join("\n")
        }
        _ => {
            let (s, _) = decode_text(data);
            s.trim_end_matches('\0').to_string()
        }
    }
}

#[cfg(test)]
#[path = "subtitles_fuzz.rs"]
mod fuzz;
