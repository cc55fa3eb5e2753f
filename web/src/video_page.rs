//! The video page, `/videos/{id}`: the player, media facts, status and
//! per-stage versions, warnings, the speech-language override and the
//! transcript (every cue of every source), each line a link to its moment.
//!
//! `/videos/{id}?t=MS` opens the player at `MS`; clicking a transcript line
//! plays from there and moves the address to that line's `?t=`. Everything
//! from files or the store (cue text, file names, warnings, versions) is
//! HTML-escaped.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Html;
use serde::Deserialize;

use crate::api::{self, file_name, TranscriptCue, VideoDetail};
use crate::error::ApiResult;
use crate::pages::{esc, fmt_date, fmt_time, layout, play_data, source_badges, video_page_url};
use crate::AppState;

/// Parameters of the video page.
#[derive(Debug, Default, Deserialize)]
pub struct VideoPageParams {
    /// Where to open the player, ms (ignored when not a number).
    #[serde(default)]
    pub t: Option<String>,
}

/// `1.5 MB`-style size of a byte count.
pub fn fmt_bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n.max(0) as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn fact(name: &str, value: Option<String>) -> String {
    match value {
        Some(v) => format!("<dt>{}</dt><dd>{}</dd>", esc(name), esc(&v)),
        None => format!("<dt>{}</dt><dd class=\"unknown\">–</dd>", esc(name)),
    }
}

fn facts_html(d: &VideoDetail) -> String {
    let f = &d.facts;
    let resolution = match (f.width, f.height) {
        (Some(w), Some(h)) => Some(format!("{w}×{h}")),
        _ => None,
    };
    let indexed = d.video.indexed_ms.map(fmt_date);
    [
        fact("Duration", f.duration_ms.filter(|d| *d > 0).map(fmt_time)),
        fact("Size", Some(fmt_bytes(f.size_bytes))),
        fact("Resolution", resolution),
        fact("Frame rate", f.fps.map(|r| format!("{r:.2} fps"))),
        fact("Video codec", f.video_codec.clone()),
        fact("Audio codec", f.audio_codec.clone()),
        fact("Segments", Some(d.video.segment_count.to_string())),
        fact("Indexed", indexed),
    ]
    .concat()
}

fn stages_html(d: &VideoDetail) -> String {
    if d.stage_versions.is_empty() {
        return "<p class=\"empty\">No stage versions recorded (not indexed yet, or indexed by an older kino).</p>"
            .into();
    }
    let rows = d
        .stage_versions
        .iter()
        .map(|(stage, version)| format!("<dt>{}</dt><dd><code>{}</code></dd>", esc(stage), esc(version)))
        .collect::<String>();
    format!("<dl class=\"facts-list stages\">{rows}</dl>")
}

fn warnings_html(d: &VideoDetail) -> String {
    if d.warnings.is_empty() {
        return String::new();
    }
    let items = d
        .warnings
        .iter()
        .map(|w| format!("<li>{}</li>", esc(w)))
        .collect::<String>();
    format!("<section class=\"video-section\"><h2>Warnings</h2><ul class=\"warnings\" id=\"warnings\">{items}</ul></section>")
}

fn language_html(d: &VideoDetail) -> String {
    let id = d.video.id;
    let now = match &d.language {
        Some(l) => format!("Speech is recognised as <strong>{}</strong>.", esc(l)),
        None => "The speech language is detected.".into(),
    };
    format!(
        "<section class=\"video-section\"><h2>Speech language</h2><p class=\"hint\" id=\"language-now\">{now}</p>\
         <form id=\"language-form\" class=\"language\" data-video-language=\"{id}\" novalidate>\
         <label for=\"language\">Language code</label>\
         <input id=\"language\" name=\"language\" value=\"{}\" placeholder=\"detect\" pattern=\"[a-z]{{2,3}}\" \
         maxlength=\"3\" size=\"5\" autocomplete=\"off\" title=\"2–3 lowercase letters (en, de, …); empty: detect\">\
         <button type=\"submit\" class=\"small\">Save and reindex</button></form>\
         <p id=\"language-status\" class=\"hint\" role=\"status\"></p></section>",
        esc(d.language.as_deref().unwrap_or(""))
    )
}

fn transcript_line(id: i64, name: &str, c: &TranscriptCue) -> String {
    let lang = c
        .language
        .as_deref()
        .filter(|l| api::check_language(l).is_ok())
        .map(|l| format!(" lang=\"{l}\""))
        .unwrap_or_default();
    format!(
        "<li><a class=\"cue-line\" data-permalink {} href=\"{}\" data-source=\"{}\">\
         <span class=\"range\">{}</span>{}<span class=\"cue-text\"{lang}>{}</span></a></li>",
        play_data(id, c.start_ms, c.end_ms, name),
        esc(&video_page_url(id, c.start_ms)),
        esc(&c.source),
        fmt_time(c.start_ms),
        source_badges(std::slice::from_ref(&c.source)),
        esc(&c.text)
    )
}

/// The summary: the video's most central sentences, in time order, each
/// a link that plays its moment (as transcript lines do); nothing when the
/// video has no document yet.
fn summary_html(d: &VideoDetail, name: &str) -> String {
    if d.summary.is_empty() {
        return String::new();
    }
    let id = d.video.id;
    let items = d
        .summary
        .iter()
        .map(|s| {
            format!(
                "<li><a class=\"summary-line\" data-permalink {} href=\"{}\"><span class=\"range\">{}</span>\
                 <span class=\"cue-text\">{}</span></a></li>",
                play_data(id, s.start_ms, s.end_ms, name),
                esc(&video_page_url(id, s.start_ms)),
                fmt_time(s.start_ms),
                esc(&s.text)
            )
        })
        .collect::<String>();
    let about = d
        .document
        .as_ref()
        .map(|doc| {
            format!(
                "<p class=\"hint\" id=\"document-facts\">From its whole text: {} tokens in {} window{}{}.</p>",
                doc.tokens,
                doc.windows,
                if doc.windows == 1 { "" } else { "s" },
                if doc.truncated { " (cut: too long)" } else { "" }
            )
        })
        .unwrap_or_default();
    format!("<section class=\"video-section\"><h2>Summary</h2><ol class=\"summary\" id=\"summary\">{items}</ol>{about}</section>")
}

fn transcript_html(d: &VideoDetail, name: &str) -> String {
    if d.transcript.is_empty() {
        return "<p class=\"empty\" id=\"transcript-empty\">No transcript: no subtitles, speech or on-screen text \
                recorded for this video.</p>"
            .into();
    }
    let lines = d
        .transcript
        .iter()
        .map(|c| transcript_line(d.video.id, name, c))
        .collect::<String>();
    format!("<ol class=\"transcript\" id=\"transcript\">{lines}</ol>")
}

/// `GET /videos/{id}`: the video page (404 page for an unknown id).
pub async fn video(
    State(st): State<Arc<AppState>>,
    Path(raw): Path<String>,
    Query(p): Query<VideoPageParams>,
) -> ApiResult<Html<String>> {
    let v = api::video_by_raw_id(&st, &raw).await?;
    let d = api::video_detail(&st, v).await?;
    let id = d.video.id;
    let name = file_name(&d.video.path);
    let start_ms =
        p.t.as_deref()
            .and_then(|t| t.trim().parse::<i64>().ok())
            .unwrap_or(0)
            .max(0);
    let status = esc(&d.video.status);
    let error = d
        .video
        .error
        .as_deref()
        .map(|e| format!("<p class=\"error\">{}</p>", esc(e)))
        .unwrap_or_default();
    let progress = d
        .video
        .progress
        .map(|p| format!(" {:.0}%", p * 100.0))
        .unwrap_or_default();
    let player = format!(
        "<section id=\"player\" class=\"player\"><video id=\"video\" controls playsinline preload=\"metadata\" \
         data-video=\"{id}\" data-start-at=\"{start_ms}\" src=\"/media/{id}#t={:.3}\"></video>\
         <p id=\"now-playing\" class=\"now-playing\">{} · {}</p></section>",
        start_ms as f64 / 1000.0,
        esc(&name),
        fmt_time(start_ms)
    );
    let main = format!(
        "<p class=\"hint\"><a href=\"/library\">← Library</a></p>\
         <div class=\"page-head\"><h1 class=\"video-title\">{}</h1>\
         <span class=\"status status-{status}\" id=\"video-status\">{status}{progress}</span></div>\
         <p class=\"facts path\">{}</p>{error}{player}{}\
         <section class=\"video-section\"><h2>Transcript</h2>{}</section>{}\
         <section class=\"video-section\"><h2>Facts</h2><dl class=\"facts-list\" id=\"facts\">{}</dl></section>\
         <section class=\"video-section\"><h2>Index stages</h2>{}</section>{}",
        esc(&name),
        esc(&d.video.path),
        summary_html(&d, &name),
        transcript_html(&d, &name),
        warnings_html(&d),
        facts_html(&d),
        stages_html(&d),
        language_html(&d),
    );
    Ok(Html(layout(&name, "Library", &main)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_sizes() {
        assert_eq!(fmt_bytes(999), "999 B");
        assert_eq!(fmt_bytes(1_500_000), "1.5 MB");
        assert_eq!(fmt_bytes(2_000_000_000), "2.0 GB");
    }

    #[test]
    fn a_transcript_line_links_to_its_moment_and_escapes_its_text() {
        let c = TranscriptCue {
            start_ms: 12_500,
            end_ms: 14_000,
            text: "<b>hi</b> & \"you\"".into(),
            source: "speech".into(),
            language: Some("en\"><script>".into()),
        };
        let h = transcript_line(7, "a<b>.mp4", &c);
        assert!(h.contains("href=\"/videos/7?t=12500\""), "{h}");
        assert!(h.contains("data-start=\"12500\""), "{h}");
        assert!(h.contains("&lt;b&gt;hi&lt;/b&gt; &amp; &quot;you&quot;"), "{h}");
        assert!(h.contains("data-name=\"a&lt;b&gt;.mp4\""), "{h}");
        assert!(h.contains(">said</li>"), "{h}");
        assert!(
            !h.contains("<script>") && !h.contains("lang="),
            "a bad language code is left out: {h}"
        );
    }
}
