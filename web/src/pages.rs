//! Server-rendered HTML pages: Search (with Ask), Library, History (the
//! video page is in [`crate::video_page`]).
//!
//! Everything that comes from files or the store (subtitle text, file names,
//! tags, errors, questions) is HTML-escaped before it is written out.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Html;
use serde::Deserialize;

use crate::api::{self, file_name, MAX_K};
use crate::engine::{AskResponse, Citation, Moment, VideoResult};
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// `m:ss` (or `h:mm:ss`) of a time in ms.
pub fn fmt_time(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// UTC `YYYY-MM-DD HH:MM` of a Unix time in ms.
pub fn fmt_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, (rem / 60) % 60)
}

fn words(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
}

/// Escapes `text` and wraps the words that occur in `query` in `<mark>`.
pub fn highlight(text: &str, query: &str) -> String {
    let wanted: HashSet<String> = words(query).filter(|w| w.chars().count() >= 2).collect();
    let mut out = String::with_capacity(text.len() + 16);
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.is_empty() {
            return;
        }
        if wanted.contains(&word.to_lowercase()) {
            out.push_str("<mark>");
            out.push_str(&esc(word));
            out.push_str("</mark>");
        } else {
            out.push_str(&esc(word));
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push_str(&esc(&c.to_string()));
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The page frame: head, navigation, main content, script.
pub fn layout(title: &str, active: &str, main: &str) -> String {
    let nav = [("/", "Search"), ("/library", "Library"), ("/history", "History")]
        .iter()
        .map(|(href, name)| {
            let cur = if *name == active { " aria-current=\"page\"" } else { "" };
            format!("<a href=\"{href}\"{cur}>{name}</a>")
        })
        .collect::<String>();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · kino</title><link rel=\"stylesheet\" href=\"/static/app.css\"></head>\
         <body><header class=\"top\"><a class=\"brand\" href=\"/\">kino</a><nav>{nav}</nav></header>\
         <main>{main}</main><script src=\"/static/app.js\" defer></script></body></html>",
        esc(title)
    )
}

pub(crate) const PLAYER: &str = "<section id=\"player\" class=\"player\" hidden><video id=\"video\" controls playsinline preload=\"metadata\"></video>\
     <p id=\"now-playing\" class=\"now-playing\"></p></section>";

/// The attributes app.js plays a moment from (no `href`).
pub(crate) fn play_data(video_id: i64, start_ms: i64, end_ms: i64, name: &str) -> String {
    format!(
        "data-video=\"{video_id}\" data-start=\"{start_ms}\" data-end=\"{end_ms}\" data-name=\"{}\"",
        esc(name)
    )
}

/// [`play_data`] plus an `href` to the media file at the moment (without JavaScript).
pub(crate) fn play_attrs(video_id: i64, start_ms: i64, end_ms: i64, name: &str) -> String {
    format!(
        "{} href=\"/media/{video_id}#t={:.3}\"",
        play_data(video_id, start_ms, end_ms, name),
        start_ms as f64 / 1000.0
    )
}

/// How a source of words is named on the pages ("said" for speech, …).
pub fn source_label(source: &str) -> &str {
    match source {
        "speech" => "said",
        "subtitle" => "subtitles",
        "screen" => "on screen",
        "visual" => "picture",
        other => other,
    }
}

/// Small badges naming where a moment's words came from.
pub(crate) fn source_badges(sources: &[String]) -> String {
    if sources.is_empty() {
        return String::new();
    }
    let items = sources
        .iter()
        .map(|s| {
            format!(
                "<li class=\"source source-{}\" data-source=\"{}\">{}</li>",
                esc(&css_word(s)),
                esc(s),
                esc(source_label(s))
            )
        })
        .collect::<String>();
    format!("<ul class=\"sources\" aria-label=\"where the words came from\">{items}</ul>")
}

/// `s` reduced to the characters of a CSS class name.
fn css_word(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// The video page's URL at a moment.
pub(crate) fn video_page_url(video_id: i64, start_ms: i64) -> String {
    format!("/videos/{video_id}?t={}", start_ms.max(0))
}

fn moment_html(m: &Moment, query: &str) -> String {
    let name = file_name(&m.path);
    let thumb = match &m.thumbnail {
        Some(url) => format!("<img class=\"thumb\" src=\"{}\" alt=\"\" loading=\"lazy\">", esc(url)),
        None => "<div class=\"thumb none\" aria-hidden=\"true\">▶</div>".to_string(),
    };
    let tags = if m.tags.is_empty() {
        String::new()
    } else {
        format!(
            "<ul class=\"tags\">{}</ul>",
            m.tags
                .iter()
                .map(|t| format!("<li>{}</li>", esc(t)))
                .collect::<String>()
        )
    };
    format!(
        "<li><a class=\"moment\" {}>{thumb}<div class=\"body\"><div class=\"meta\"><span class=\"video-name\">{}</span>\
         <span class=\"range\">{}–{}</span>{}<span class=\"score\" title=\"score\">{:.3}</span></div>\
         <p class=\"snippet\">{}</p>{tags}</div></a>\
         <a class=\"video-link\" href=\"{}\">Video page and transcript</a>{}</li>",
        play_attrs(m.video_id, m.start_ms, m.end_ms, &name),
        esc(&name),
        fmt_time(m.start_ms),
        fmt_time(m.end_ms),
        source_badges(&m.sources),
        m.score,
        highlight(&m.text, query),
        esc(&video_page_url(m.video_id, m.start_ms)),
        marks_html(m.segment_id, query),
    )
}

/// "Right" / "Wrong" buttons under a result: the marks `kino train` learns from.
fn marks_html(segment_id: Option<i64>, query: &str) -> String {
    let Some(id) = segment_id else {
        return String::new();
    };
    format!(
        "<div class=\"marks\" data-segment=\"{id}\" data-query=\"{}\"><span class=\"marks-label\">Is this right?</span>\
         <button type=\"button\" data-mark=\"right\">Right</button><button type=\"button\" data-mark=\"wrong\">Wrong</button>\
         <span class=\"mark-status\" role=\"status\"></span></div>",
        esc(query)
    )
}

/// The answer block: each cited sentence links to its moment.
fn answer_html(a: &AskResponse) -> String {
    if a.citations.is_empty() {
        let text = if a.answer.trim().is_empty() {
            "No answer found in the library."
        } else {
            a.answer.as_str()
        };
        return format!(
            "<section class=\"answer\" id=\"answer\"><h2>Answer</h2><p>{}</p></section>",
            esc(text)
        );
    }
    let sentences = a
        .citations
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "<a class=\"cite\" {}>{}<sup>[{}]</sup></a>",
                play_attrs(c.video_id, c.start_ms, c.end_ms, &file_name(&c.path)),
                esc(&c.text),
                i + 1
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "<section class=\"answer\" id=\"answer\"><h2>Answer</h2><p class=\"answer-text\">{sentences}</p>{}</section>",
        citations_list(&a.citations)
    )
}

fn citations_list(cites: &[Citation]) -> String {
    let items = cites
        .iter()
        .map(|c| {
            let name = file_name(&c.path);
            format!(
                "<li><a class=\"citation\" {}>{} · {}–{}</a></li>",
                play_attrs(c.video_id, c.start_ms, c.end_ms, &name),
                esc(&name),
                fmt_time(c.start_ms),
                fmt_time(c.end_ms)
            )
        })
        .collect::<String>();
    format!("<ol class=\"citations\">{items}</ol>")
}

/// Parameters of the Search page.
#[derive(Debug, Default, Deserialize)]
pub struct SearchPageParams {
    /// Query text.
    #[serde(default)]
    pub q: String,
    /// `search`, `ask`, or empty (ask when the query reads like a question).
    #[serde(default)]
    pub mode: String,
    /// Number of moments (or videos).
    pub k: Option<usize>,
    /// `moment` (default) or `video`: rank moments or whole videos.
    #[serde(default)]
    pub by: String,
}

fn looks_like_question(q: &str) -> bool {
    const STARTS: [&str; 12] = [
        "who", "what", "when", "where", "why", "how", "which", "is", "are", "does", "do", "can",
    ];
    q.trim_end().ends_with('?') || words(q).next().is_some_and(|w| STARTS.contains(&w.as_str()))
}

/// One video of the video-level results: its name (a link to its page),
/// length, score, and best moments, each a link to its time.
fn video_result_html(v: &VideoResult, query: &str) -> String {
    let name = file_name(&v.path);
    let moments = v
        .best_moments
        .iter()
        .map(|m| {
            format!(
                "<li><a class=\"best-moment\" href=\"{}\" data-video-id=\"{}\" data-at=\"{}\">\
                 <span class=\"range\">{}–{}</span> <span class=\"snippet\">{}</span></a></li>",
                esc(&video_page_url(v.video_id, m.start_ms)),
                v.video_id,
                m.start_ms,
                fmt_time(m.start_ms),
                fmt_time(m.end_ms),
                highlight(&snippet(&m.text, 220), query),
            )
        })
        .collect::<String>();
    format!(
        "<li class=\"video-result\" data-video=\"{}\"><div class=\"meta\"><a class=\"video-title\" href=\"/videos/{}\">{}</a>\
         <span class=\"duration\">{}</span><span class=\"score\" title=\"score\">{:.3}</span></div>\
         <ol class=\"best-moments\">{moments}</ol></li>",
        v.video_id,
        v.video_id,
        esc(&name),
        v.duration_ms.map(fmt_time).unwrap_or_default(),
        v.score,
    )
}

/// At most `max` characters of `text`, cut at a word, with an ellipsis.
fn snippet(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    let cut = cut.rsplit_once(' ').map_or(cut.as_str(), |(head, _)| head);
    format!("{cut} …")
}

/// `GET /`: the search box; with `q`, moments or (`by=video`) whole videos,
/// and an answer for questions or `mode=ask`.
pub async fn search(State(st): State<Arc<AppState>>, Query(p): Query<SearchPageParams>) -> ApiResult<Html<String>> {
    let q = p.q.trim().to_string();
    let by_video = p.by == "video";
    let form = format!(
        "<form class=\"search\" action=\"/\" method=\"get\" role=\"search\">\
         <input id=\"q\" name=\"q\" type=\"search\" value=\"{}\" placeholder=\"Find a moment, or ask a question\" \
         aria-label=\"Query\" maxlength=\"{}\" autofocus>\
         <button type=\"submit\" name=\"mode\" value=\"search\">Search</button>\
         <button type=\"submit\" name=\"mode\" value=\"ask\" class=\"secondary\">Ask</button>\
         <fieldset class=\"by\"><legend class=\"visually-hidden\">Results</legend>\
         <label><input type=\"radio\" name=\"by\" value=\"moment\"{}> Moments</label>\
         <label><input type=\"radio\" name=\"by\" value=\"video\"{}> Videos</label></fieldset></form>",
        esc(&q),
        api::MAX_QUERY_CHARS,
        if by_video { "" } else { " checked" },
        if by_video { " checked" } else { "" },
    );
    if q.is_empty() {
        let main = format!(
            "<h1 class=\"visually-hidden\">Search</h1>{form}<p class=\"hint\">Search the library by meaning: \
             describe what is said or shown. Click a moment to play it.</p>{PLAYER}"
        );
        return Ok(Html(layout("Search", "Search", &main)));
    }
    let mut errors = String::new();
    let q_checked = match api::check_text(&q, "query") {
        Ok(q) => q,
        Err(e) => {
            return Ok(Html(layout(
                "Search",
                "Search",
                &format!("{form}<p class=\"error\">{}</p>", esc(&e.message)),
            )))
        }
    };
    let ask = p.mode == "ask" || (p.mode.is_empty() && looks_like_question(&q_checked));
    let answer = if ask {
        match api::run_ask(&st, &q_checked).await {
            Ok(a) => answer_html(&a),
            Err(e) => {
                errors.push_str(&format!("<p class=\"error\">Could not answer: {}</p>", esc(&e.message)));
                String::new()
            }
        }
    } else {
        String::new()
    };
    let k = p.k.unwrap_or(10).clamp(1, MAX_K);
    // The other kind of results for the same query, one click away.
    let toggle = format!(
        "<nav class=\"by-toggle\" aria-label=\"Results\"><a id=\"by-moment\" href=\"/?mode=search&amp;by=moment&amp;q={q}\"{}>Moments</a>\
         <a id=\"by-video\" href=\"/?mode=search&amp;by=video&amp;q={q}\"{}>Videos</a></nav>",
        if by_video { "" } else { " aria-current=\"page\"" },
        if by_video { " aria-current=\"page\"" } else { "" },
        q = esc(&url_encode(&q_checked)),
    );
    if by_video {
        let videos = match api::run_search_videos(&st, &q_checked, k).await {
            Ok(r) => r,
            Err(ApiError { message, .. }) => {
                errors.push_str(&format!("<p class=\"error\">Search failed: {}</p>", esc(&message)));
                vec![]
            }
        };
        let list = if videos.is_empty() {
            "<p class=\"empty\">No videos found.</p>".to_string()
        } else {
            format!(
                "<ol class=\"videos\" id=\"results\">{}</ol>",
                videos
                    .iter()
                    .map(|v| video_result_html(v, &q_checked))
                    .collect::<String>()
            )
        };
        let main = format!(
            "<h1 class=\"visually-hidden\">Search</h1>{form}{errors}{PLAYER}{answer}{toggle}<h2 class=\"count\">{} video{}</h2>{list}",
            videos.len(),
            if videos.len() == 1 { "" } else { "s" }
        );
        return Ok(Html(layout(&format!("{q} – Search"), "Search", &main)));
    }
    let results = match api::run_search(&st, &q_checked, k, None, !ask).await {
        Ok(r) => r,
        Err(ApiError { message, .. }) => {
            errors.push_str(&format!("<p class=\"error\">Search failed: {}</p>", esc(&message)));
            vec![]
        }
    };
    let list = if results.is_empty() {
        "<p class=\"empty\">No moments found.</p>".to_string()
    } else {
        format!(
            "<ol class=\"moments\" id=\"results\">{}</ol>",
            results.iter().map(|m| moment_html(m, &q_checked)).collect::<String>()
        )
    };
    let main = format!(
        "<h1 class=\"visually-hidden\">Search</h1>{form}{errors}{PLAYER}{answer}{toggle}<h2 class=\"count\">{} moment{}</h2>{list}",
        results.len(),
        if results.len() == 1 { "" } else { "s" }
    );
    Ok(Html(layout(&format!("{q} – Search"), "Search", &main)))
}

/// `GET /library`: every video with status, duration, segments and a timeline; reindex buttons.
pub async fn library(State(st): State<Arc<AppState>>) -> ApiResult<Html<String>> {
    let videos = st.store.videos().await?;
    let spans = api::spans_by_video(&st).await?;
    let progress = api::progress_by_video(&st).await?;
    let counts = st.store.job_counts().await?;
    let jobs_line = if counts.is_empty() {
        "no jobs".to_string()
    } else {
        counts
            .iter()
            .map(|(s, n)| format!("{n} {}", esc(s)))
            .collect::<Vec<_>>()
            .join(" · ")
    };
    let mut rows = String::new();
    for v in &videos {
        let name = file_name(&v.path);
        let segs = spans.get(&v.id).map(|s| s.as_slice()).unwrap_or(&[]);
        let total = v
            .facts
            .duration_ms
            .filter(|d| *d > 0)
            .or_else(|| segs.iter().map(|s| s.1).max())
            .unwrap_or(0);
        let status = v.status.as_str();
        let prog = progress
            .get(&v.id)
            .map(|p| format!(" {:.0}%", p * 100.0))
            .unwrap_or_default();
        let error = v
            .error
            .as_deref()
            .map(|e| format!("<p class=\"error\">{}</p>", esc(e)))
            .unwrap_or_default();
        let timeline = if total > 0 && !segs.is_empty() {
            let bars = segs
                .iter()
                .map(|(s, e)| {
                    let left = *s as f64 * 100.0 / total as f64;
                    let width = ((*e - *s) as f64 * 100.0 / total as f64).max(0.5);
                    format!(
                        "<a class=\"seg\" style=\"left:{left:.2}%;width:{width:.2}%\" title=\"{}–{}\" {}></a>",
                        fmt_time(*s),
                        fmt_time(*e),
                        play_attrs(v.id, *s, *e, &name)
                    )
                })
                .collect::<String>();
            format!("<div class=\"timeline\" aria-label=\"segments on the timeline\">{bars}</div>")
        } else {
            String::new()
        };
        rows.push_str(&format!(
            "<li class=\"video\" data-id=\"{id}\"><div class=\"video-head\"><a class=\"video-name\" href=\"/videos/{id}\" title=\"{path}\">{name}</a>\
             <span class=\"status status-{status}\">{status}{prog}</span></div>\
             <div class=\"facts\">{dur} · {n} segment{pl}{vision}</div>{error}{timeline}\
             <button type=\"button\" class=\"secondary small\" data-reindex=\"{id}\">Reindex</button></li>",
            id = v.id,
            path = esc(&v.path),
            name = esc(&name),
            dur = if total > 0 { fmt_time(total) } else { "–".into() },
            n = segs.len(),
            pl = if segs.len() == 1 { "" } else { "s" },
            vision = if v.needs_vision { " · without vision" } else { "" },
        ));
    }
    let list = if videos.is_empty() {
        "<p class=\"empty\">The library is empty. Add videos to a watched folder or run <code>kino ingest</code>.</p>"
            .into()
    } else {
        format!("<ul class=\"videos\">{rows}</ul>")
    };
    let main = format!(
        "<div class=\"page-head\"><h1>Library</h1><button type=\"button\" data-reindex-stale>Reindex stale videos</button></div>\
         <p class=\"facts\">{} video{} · jobs: {jobs_line}</p><p id=\"reindex-status\" class=\"hint\" role=\"status\"></p>{PLAYER}{list}",
        videos.len(),
        if videos.len() == 1 { "" } else { "s" }
    );
    Ok(Html(layout("Library", "Library", &main)))
}

/// `GET /history`: recent questions with their answers.
pub async fn history(State(st): State<Arc<AppState>>) -> ApiResult<Html<String>> {
    let recent = st.store.recent_queries(50).await?;
    let items = recent
        .iter()
        .map(|r| {
            let cites: Vec<Citation> = serde_json::from_value(r.citations.clone()).unwrap_or_default();
            let answer = r
                .answer
                .as_deref()
                .filter(|a| !a.trim().is_empty())
                .unwrap_or("(no answer)");
            format!(
                "<li class=\"qa\"><p class=\"question\"><a href=\"/?q={}&amp;mode=ask\">{}</a></p>\
                 <p class=\"when\">{} · {} ms</p><p class=\"answer-text\">{}</p>{}</li>",
                esc(&url_encode(&r.question)),
                esc(&r.question),
                fmt_date(r.created_ms),
                r.latency_ms,
                esc(answer),
                if cites.is_empty() {
                    String::new()
                } else {
                    citations_list(&cites)
                }
            )
        })
        .collect::<String>();
    let list = if recent.is_empty() {
        "<p class=\"empty\">No questions yet.</p>".to_string()
    } else {
        format!("<ol class=\"history\">{items}</ol>")
    };
    Ok(Html(layout(
        "History",
        "History",
        &format!("<h1>History</h1>{PLAYER}{list}"),
    )))
}

/// Percent-encodes a query-string value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_highlights_words() {
        assert_eq!(
            esc("<script>alert('x')</script>&"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;"
        );
        let h = highlight("The <b>Cat</b> sat on the mat", "cat mat");
        assert_eq!(h, "The &lt;b&gt;<mark>Cat</mark>&lt;/b&gt; sat on the <mark>mat</mark>");
    }

    #[test]
    fn formats_times_and_dates() {
        assert_eq!(fmt_time(75_500), "1:15");
        assert_eq!(fmt_time(3_725_000), "1:02:05");
        assert_eq!(fmt_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(fmt_date(1_709_210_096_000), "2024-02-29 12:34 UTC");
        assert_eq!(url_encode("a b&c?"), "a+b%26c%3F");
    }

    #[test]
    fn source_badges_name_where_words_came_from() {
        let sources: Vec<String> = ["screen", "speech", "subtitle", "visual", "x\"<y>"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let h = source_badges(&sources);
        for label in [">on screen<", ">said<", ">subtitles<", ">picture<"] {
            assert!(h.contains(label), "{label} in {h}");
        }
        assert!(
            h.contains("class=\"source source-x--y-\" data-source=\"x&quot;&lt;y&gt;\">x&quot;&lt;y&gt;</li>"),
            "{h}"
        );
        assert_eq!(source_badges(&[]), "");
    }

    #[test]
    fn questions_are_recognised() {
        assert!(looks_like_question("where is the cat?"));
        assert!(looks_like_question("How do I bake bread"));
        assert!(!looks_like_question("red bicycle"));
    }
}
