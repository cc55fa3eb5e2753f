//! On-screen text end to end with the real PP-OCR models and ONNX Runtime:
//! `kino ocr` on generated slides (ffmpeg `drawtext`, Debian fonts) in
//! English and Chinese, small fonts, coloured backgrounds and heavy
//! compression (accuracy and times); its cost on a lecture with a moving
//! presenter; bad inputs; the off switch and staleness; and `kino serve`
//! over a library of ten distractors where a paraphrase of words shown only
//! on a slide finds the slide's moment, from the CLI and the API.

mod common;

use common::{
    ffmpeg, free_port, get_json, json_of, models_dir, rss_profile, run, subtitled_distractors, wait_for, wait_until,
    Server,
};

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const SANS: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const SANS_BOLD: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";
const CJK: &str = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc";
const TEXT_MODEL: &str = "sentence-transformers/all-MiniLM-L6-v2";
const OCR_MODEL: &str = "rapidocr/PP-OCRv6";
const RUNTIME: &str = "onnxruntime/1.32.0";

/// `kino` on the installed models, quiet, with no setting from the
/// environment that would change what it reads.
fn kino(home: &Path) -> Command {
    kino_with(home, &models_dir())
}

/// The memory test runs alone (write); the others share (read).
static QUIET: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn kino_with(home: &Path, models: &Path) -> Command {
    let mut c = kino_logging(home, models);
    c.arg("-q");
    c
}

/// `kino` with its log on stderr.
fn kino_logging(home: &Path, models: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kino"));
    c.env_remove("KINO_DATABASE_URL")
        .env_remove("KINO_OCR")
        .env_remove("ORT_DYLIB_PATH")
        // Speech is not what these tests are about (the slides are silent).
        .env("KINO_SPEECH", "off")
        .arg("--home")
        .arg(home)
        .arg("--models")
        .arg(models);
    c
}

fn link_model(models: &Path, name: &str) {
    let to = models.join(name);
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(models_dir().join(name), to).unwrap();
}

/// One slide: shown from `from` to `to` seconds, its lines (each drawn at
/// `size` px in `colour` over a `background` box covering the slide area).
struct Slide<'a> {
    from: u32,
    to: u32,
    lines: &'a [&'a str],
    size: u32,
    font: &'a str,
    colour: &'a str,
    background: &'a str,
}

/// A silent video `w`×`h` of `secs` seconds showing `slides` on white;
/// `extra` are output options (e.g. a high `-crf`); `presenter`: a box
/// walking to and fro on the right third, all the time.
#[allow(clippy::too_many_arguments)]
fn slides(
    dir: &Path,
    name: &str,
    w: u32,
    h: u32,
    secs: u32,
    slides: &[Slide],
    presenter: bool,
    extra: &[&str],
) -> PathBuf {
    let work = dir.join(format!(".{name}.parts"));
    std::fs::create_dir_all(&work).unwrap();
    let mut filters = Vec::new();
    for (i, s) in slides.iter().enumerate() {
        let enable = format!("enable='between(t,{},{})'", s.from, f64::from(s.to) - 0.001);
        let area_w = if presenter { w * 2 / 3 } else { w };
        filters.push(format!(
            "drawbox=x=0:y=0:w={area_w}:h={h}:color={}:t=fill:{enable}",
            s.background
        ));
        for (j, line) in s.lines.iter().enumerate() {
            let file = work.join(format!("{i}-{j}.txt"));
            std::fs::write(&file, line).unwrap();
            let y = h / 8 + j as u32 * s.size * 2;
            filters.push(format!(
                "drawtext=fontfile={}:textfile={}:fontsize={}:fontcolor={}:x={}:y={y}:{enable}",
                s.font,
                file.display(),
                s.size,
                s.colour,
                w / 20
            ));
        }
    }
    if presenter {
        filters.push(format!(
            "drawbox=x={}+mod(t*37\\,{})*1:y={}:w={}:h={}:color=0xc05030:t=fill",
            w * 2 / 3 + 10,
            w / 3 - w / 8 - 20,
            h / 3,
            w / 8,
            h / 2
        ));
    }
    let filter = if filters.is_empty() {
        "null".to_string()
    } else {
        filters.join(",")
    };
    let path = dir.join(name);
    let source = format!("color=c=white:s={w}x{h}:r=5:d={secs}");
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        &source,
        "-vf",
        &filter,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
    ];
    args.extend_from_slice(extra);
    let out = path.display().to_string();
    args.push(&out);
    ffmpeg(&args);
    std::fs::remove_dir_all(&work).unwrap();
    path
}

/// `cmd serve --library lib` on `port`, once it accepts connections.
fn serve(cmd: &mut Command, lib: &Path, port: u16) -> Server {
    let server = Server(
        cmd.args(["serve", "--library"])
            .arg(lib)
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the server", || TcpStream::connect(("127.0.0.1", port)).is_ok());
    server
}

/// Characters compared: no whitespace, lower case.
fn chars(s: &str) -> Vec<char> {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The lines `kino ocr --json` printed, grouped by their time span, in time order.
fn spans(v: &Value) -> Vec<(i64, i64, String)> {
    let mut out: Vec<(i64, i64, String)> = Vec::new();
    for l in v["lines"].as_array().unwrap() {
        let (s, e) = (l["start_ms"].as_i64().unwrap(), l["end_ms"].as_i64().unwrap());
        let text = l["text"].as_str().unwrap();
        match out.last_mut() {
            Some(last) if last.0 == s => {
                last.2.push(' ');
                last.2.push_str(text);
            }
            _ => out.push((s, e, text.to_string())),
        }
    }
    out
}

#[test]
fn slides_are_read_accurately_and_timed_within_one_sampling_interval() {
    let _quiet = QUIET.read().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let white = "white";
    let truth: Vec<Slide> = vec![
        Slide {
            from: 0,
            to: 8,
            lines: &[
                "Quarterly results for the northern region",
                "Revenue grew by 14 percent",
            ],
            size: 44,
            font: SANS,
            colour: "black",
            background: white,
        },
        Slide {
            from: 8,
            to: 16,
            lines: &[
                "Small print: shipments leave the warehouse every Tuesday at noon",
                "Contact the logistics team for exceptions",
            ],
            size: 20,
            font: SANS,
            colour: "black",
            background: white,
        },
        Slide {
            from: 16,
            to: 24,
            lines: &["Coral reefs cover less than one percent of the ocean floor"],
            size: 36,
            font: SANS_BOLD,
            colour: "white",
            background: "0x1f3a93",
        },
        Slide {
            from: 24,
            to: 32,
            lines: &["今天我们学习机器翻译的基本原理", "数据质量决定模型效果"],
            size: 44,
            font: CJK,
            colour: "black",
            background: white,
        },
        Slide {
            from: 32,
            to: 40,
            lines: &["Next meeting: Friday 3 May in room 204"],
            size: 40,
            font: SANS,
            colour: "0x202020",
            background: "0xf5a623",
        },
    ];
    // 1280×720, heavily compressed (CRF 38).
    let video = slides(dir.path(), "slides.mp4", 1280, 720, 40, &truth, false, &["-crf", "38"]);
    let v = json_of(&run(kino(&home).arg("ocr").arg(&video).arg("--json")));
    let got = spans(&v);
    let (mut errors, mut total) = (0usize, 0usize);
    for s in &truth {
        let (from, to) = (i64::from(s.from) * 1000, i64::from(s.to) * 1000);
        // The span that overlaps the slide most.
        let best = got
            .iter()
            .max_by_key(|(a, b, _)| (*b).min(to) - (*a).max(from))
            .unwrap_or_else(|| panic!("nothing read: {v}"));
        let expected = chars(&s.lines.join(" "));
        let e = edit_distance(&chars(&best.2), &expected);
        eprintln!(
            "slide {}–{} s: read {:?} over {}–{} ms, {e} errors in {} characters",
            s.from,
            s.to,
            best.2,
            best.0,
            best.1,
            expected.len()
        );
        assert!(
            (best.0 - from).abs() <= 1000 && (best.1 - to).abs() <= 1000,
            "slide {from}–{to} ms timed {}–{} ms: more than one sampling interval off",
            best.0,
            best.1
        );
        errors += e;
        total += expected.len();
    }
    let cer = errors as f64 / total as f64;
    eprintln!("character error rate: {:.2} % ({errors}/{total})", cer * 100.0);
    assert!(cer <= 0.05, "character error rate {:.2} % > 5 %", cer * 100.0);
}

#[test]
fn a_lecture_with_a_moving_presenter_costs_one_read_per_slide() {
    let _quiet = QUIET.read().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // Ten minutes, five slides (two minutes each), a presenter always moving.
    let titles = [
        "Week 5: Thermodynamics",
        "The first law: energy is conserved",
        "Entropy always increases",
        "Heat engines and efficiency",
        "Summary and reading list",
    ];
    let deck: Vec<Slide> = titles
        .iter()
        .enumerate()
        .map(|(i, t)| Slide {
            from: i as u32 * 120,
            to: (i as u32 + 1) * 120,
            lines: std::slice::from_ref(t),
            size: 28,
            font: SANS,
            colour: "black",
            background: "white",
        })
        .collect();
    let video = slides(dir.path(), "lecture.mp4", 854, 480, 600, &deck, true, &["-crf", "30"]);
    let out = run(kino(&home).arg("ocr").arg(&video).arg("--json"));
    let v = json_of(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    let report = err
        .lines()
        .find(|l| l.contains("frames sampled"))
        .unwrap_or_else(|| panic!("{err}"));
    eprintln!("{report}");
    let nums: Vec<u64> = report
        .split_whitespace()
        .filter_map(|w| w.trim_end_matches(',').parse().ok())
        .collect();
    let (frames, reads) = (nums[0], nums[1]);
    assert!(frames >= 590, "{report}");
    // One read per slide change (plus the first frame), not per frame.
    assert!(
        reads <= titles.len() as u64 + 2,
        "{reads} reads for {} slides: {report}",
        titles.len()
    );
    let got = spans(&v);
    for (i, t) in titles.iter().enumerate() {
        let at = i as i64 * 120_000;
        assert!(
            got.iter().any(|(s, e, text)| (s - at).abs() <= 1000
                && *e >= at + 119_000
                && edit_distance(&chars(text), &chars(t)) <= 2),
            "slide {i} {t:?} not read as one span from {at} ms: {got:?}"
        );
    }
}

#[test]
fn bad_images_models_and_runtimes_get_clear_messages_and_the_rest_is_indexed() {
    let _quiet = QUIET.read().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // A 1×1 image: nothing to read, no error.
    let tiny = dir.path().join("tiny.png");
    image::RgbImage::from_pixel(1, 1, image::Rgb([255, 255, 255]))
        .save(&tiny)
        .unwrap();
    let v = json_of(&run(kino(&home).arg("ocr").arg(&tiny).arg("--json")));
    assert_eq!(v["lines"].as_array().map(Vec::len), Some(0), "{v}");
    // An 8K frame with a line of text is read (scaled down first).
    let big = dir.path().join("big.png");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=white:s=7680x4320:d=1",
        "-vf",
        &format!("drawtext=fontfile={SANS}:text='Ultra wide banner':fontsize=400:x=400:y=1800"),
        "-frames:v",
        "1",
        big.to_str().unwrap(),
    ]);
    let v = json_of(&run(kino(&home).arg("ocr").arg(&big).arg("--json")));
    let text: String = v["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert!(edit_distance(&chars(&text), &chars("Ultra wide banner")) <= 2, "{v}");
    let quad = &v["lines"][0]["box"];
    assert!(
        quad[2][0].as_f64().unwrap() > 3000.0,
        "box in the 8K frame's pixels: {quad}"
    );
    // A file that is not an image, and one that does not exist: exit 2, named.
    let junk = dir.path().join("junk.png");
    std::fs::write(&junk, b"not a picture").unwrap();
    for f in [&junk, &dir.path().join("absent.png")] {
        let out = run(kino(&home).arg("ocr").arg(f));
        assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains(f.file_name().unwrap().to_str().unwrap()));
    }

    // A slide video with a subtitle file, indexed with broken OCR set-ups.
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let deck = [Slide {
        from: 0,
        to: 6,
        lines: &["Migration of arctic terns"],
        size: 40,
        font: SANS,
        colour: "black",
        background: "white",
    }];
    let video = slides(&lib, "terns.mp4", 640, 360, 6, &deck, false, &[]);
    std::fs::write(
        lib.join("terns.srt"),
        "1\n00:00:01,000 --> 00:00:04,000\nBirds fly south\n\n",
    )
    .unwrap();

    // (what is broken, set-up, the words the warning must hold)
    let corrupt = |models: &Path| {
        link_model(models, RUNTIME);
        let ocr = models.join(OCR_MODEL);
        std::fs::create_dir_all(&ocr).unwrap();
        for f in ["PP-OCRv6_det_small.onnx", "ch_ppocr_mobile_v2.0_cls_mobile.onnx"] {
            std::os::unix::fs::symlink(models_dir().join(OCR_MODEL).join(f), ocr.join(f)).unwrap();
        }
        std::fs::write(ocr.join("PP-OCRv6_rec_small.onnx"), vec![7u8; 4096]).unwrap();
    };
    let no_runtime = |models: &Path| link_model(models, OCR_MODEL);
    let not_a_library = |models: &Path| {
        link_model(models, OCR_MODEL);
        let rt = models.join(RUNTIME);
        std::fs::create_dir_all(&rt).unwrap();
        std::fs::write(rt.join("libonnxruntime.so"), b"#!/bin/sh\n").unwrap();
    };
    type SetUp<'a> = &'a dyn Fn(&Path);
    let cases: [(&str, SetUp, &str); 3] = [
        ("corrupt recognizer", &corrupt, "PP-OCRv6_rec_small.onnx"),
        ("no runtime", &no_runtime, "kino models fetch onnxruntime"),
        ("not a library", &not_a_library, "libonnxruntime.so"),
    ];
    for (what, set_up, named) in cases {
        let case = dir.path().join(what.replace(' ', "-"));
        let models = case.join("models");
        link_model(&models, TEXT_MODEL);
        set_up(&models);
        let home = case.join("home");
        let out = run(kino_logging(&home, &models).args(["ingest", "--json"]).arg(&video));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{what}: {err}");
        let said: Vec<&str> = err.lines().filter(|l| l.contains("on-screen text off")).collect();
        assert_eq!(said.len(), 1, "{what}: said once why on-screen text is off: {err}");
        assert!(said[0].contains(named), "{what}: {said:?}");
        eprintln!("{what}: {}", said[0]);
        // Everything else is indexed: the subtitle is found.
        let v = json_of(&run(kino_with(&home, &models).args([
            "search",
            "birds migrating south",
            "--json",
        ])));
        assert!(
            v["results"][0]["path"].as_str().unwrap().ends_with("terns.mp4"),
            "{what}: {v}"
        );
        assert!(
            !v["results"][0]["sources"].to_string().contains("screen"),
            "{what}: {v}"
        );
        // `kino ocr` says what is wrong, naming it.
        let out = run(kino_with(&home, &models).arg("ocr").arg(&video));
        assert_eq!(out.status.code(), Some(1), "{what}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(named),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn turning_ocr_off_keeps_screens_out_and_on_again_makes_videos_stale_for_it() {
    let _quiet = QUIET.read().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("kino.toml"), "ocr = \"off\"\n").unwrap();
    let deck = [Slide {
        from: 0,
        to: 8,
        lines: &["Password reset code 4471", "Volcanic ash grounded all flights"],
        size: 36,
        font: SANS,
        colour: "black",
        background: "white",
    }];
    let video = slides(dir.path(), "screen.mp4", 960, 540, 8, &deck, false, &[]);
    std::fs::write(
        dir.path().join("screen.srt"),
        "1\n00:00:00,500 --> 00:00:02,000\nHello\n\n",
    )
    .unwrap();
    let out = run(kino(&home).args(["ingest", "--json"]).arg(&video));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let search = |home: &Path| {
        json_of(&run(kino(home).args([
            "search",
            "airplanes stopped by an eruption",
            "--json",
        ])))
    };
    let v = search(&home);
    assert!(!v["results"][0]["sources"].to_string().contains("screen"), "off: {v}");
    // Nothing stale while off.
    let v = json_of(&run(kino(&home).args(["reindex", "--stale", "--json"])));
    assert_eq!(v["selected"], 0, "{v}");
    // On again: stale for OCR, and read.
    std::fs::write(home.join("kino.toml"), "ocr = \"auto\"\n").unwrap();
    let v = json_of(&run(kino(&home).args(["reindex", "--stale", "--json"])));
    assert_eq!(v["reindexed"], 1, "{v}");
    let v = search(&home);
    assert!(v["results"][0]["sources"].to_string().contains("screen"), "on: {v}");
    assert!(v["results"][0]["text"].as_str().unwrap().contains("flights"), "{v}");
}

/// Ten distractors: six subtitled, four with slides on other subjects.
fn distractors(lib: &Path) {
    let topics = [
        (
            "pasta",
            "Boil the water, add salt, and cook the spaghetti for nine minutes.",
        ),
        (
            "football",
            "The striker scored in the last minute and the stadium went wild.",
        ),
        ("stocks", "Shares in the bank fell sharply after the quarterly report."),
        (
            "knitting",
            "Cast on forty stitches with the blue wool and knit two rows.",
        ),
        ("rocket", "The rocket lifted off from the launch pad and reached orbit."),
        ("garden", "Prune the roses in early spring, just above an outward bud."),
    ];
    subtitled_distractors(lib, &topics);
    let decks: [(&str, &[&str]); 4] = [
        ("tax", &["Filing your tax return", "Deadline: 31 January"]),
        ("bikes", &["Bicycle maintenance", "Oil the chain every month"]),
        ("chess", &["Chess openings", "The Sicilian defence"]),
        ("bread", &["Sourdough basics", "Feed the starter twice a day"]),
    ];
    for (name, lines) in decks {
        let deck = [Slide {
            from: 0,
            to: 10,
            lines,
            size: 32,
            font: SANS,
            colour: "black",
            background: "white",
        }];
        slides(lib, &format!("{name}.mp4"), 640, 360, 10, &deck, false, &[]);
    }
}

#[test]
fn words_shown_only_on_screen_are_found_from_the_cli_and_the_api() {
    let _quiet = QUIET.read().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    distractors(&lib);
    let deck = [
        Slide {
            from: 0,
            to: 20,
            lines: &["Biology 101", "Week 3"],
            size: 40,
            font: SANS,
            colour: "black",
            background: "white",
        },
        Slide {
            from: 20,
            to: 40,
            lines: &[
                "Photosynthesis turns sunlight, water and",
                "carbon dioxide into sugar and oxygen",
            ],
            size: 32,
            font: SANS,
            colour: "black",
            background: "white",
        },
    ];
    let lecture = slides(&lib, "lecture.mp4", 1280, 720, 40, &deck, false, &[]);

    let port = free_port();
    let _server = serve(&mut kino(&home), &lib, port);
    wait_until("the library indexed", Duration::from_secs(900), || {
        let v = get_json(port, "/api/videos");
        let vids = v["videos"].as_array().cloned().unwrap_or_default();
        vids.len() == 11 && vids.iter().all(|v| v["status"] == "done" || v["status"] == "failed")
    });
    let videos = get_json(port, "/api/videos");
    for v in videos["videos"].as_array().unwrap() {
        assert_eq!(v["status"], "done", "{v}");
    }
    let query = "how plants make food from light";
    let check = |res: &Value, from: &str| {
        let top = &res["results"][0];
        assert!(
            top["path"].as_str().is_some_and(|p| p.ends_with("lecture.mp4")),
            "{from}: {res}"
        );
        let (s, e) = (top["start_ms"].as_i64().unwrap(), top["end_ms"].as_i64().unwrap());
        assert!(
            s >= 19_000 && e <= 41_000,
            "{from}: the slide is shown 20–40 s, moment {s}–{e}"
        );
        assert!(top["sources"].to_string().contains("screen"), "{from}: {top}");
    };
    let api = get_json(port, &format!("/api/search?q={}&k=5", query.replace(' ', "%20")));
    check(&api, "API");
    let cli = json_of(&run(kino(&home).args(["search", query, "-k", "5", "--json"])));
    check(&cli, "CLI");
    // The video's page lists what was on screen, with its time.
    let id = api["results"][0]["video_id"].as_i64().unwrap();
    let page = get_json(port, &format!("/api/videos/{id}"));
    let cues = page["transcript"].as_array().unwrap_or_else(|| panic!("{page}"));
    let photo = cues
        .iter()
        .find(|c| c["text"].as_str().unwrap_or("").contains("Photosynthesis"))
        .unwrap_or_else(|| panic!("{page}"));
    assert_eq!(photo["source"], "screen", "{photo}");
    assert!((photo["start_ms"].as_i64().unwrap() - 20_000).abs() <= 1000, "{photo}");
    assert!((photo["end_ms"].as_i64().unwrap() - 40_000).abs() <= 1000, "{photo}");
    let _ = lecture;
}

/// With the vision branch on (the small Swin fixture) and OCR on, a long
/// lecture of static slides is read slide by slide, every slide's words
/// are found at its time, and memory does not grow with the length (an
/// open slide text never holds segments back).
#[test]
fn with_vision_on_long_static_slides_are_read_in_bounded_memory() {
    // Alone: the other tests of this file would load the 2 cores and
    // make the peak depend on their timing (seen: 529 vs 632 MiB).
    let _alone = QUIET.write().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    for m in [TEXT_MODEL, OCR_MODEL, RUNTIME] {
        link_model(&models, m);
    }
    let swin = Path::new(env!("CARGO_MANIFEST_DIR")).join("vision/tests/fixtures/swin_pad");
    let vision = models.join("microsoft/swin-tiny-patch4-window7-224");
    std::fs::create_dir_all(&vision).unwrap();
    for f in ["config.json", "model.safetensors", "preprocessor_config.json"] {
        std::fs::copy(swin.join(f), vision.join(f)).unwrap();
    }
    let subjects = [
        "Glaciers carve valleys over thousands of years",
        "Volcanoes release gas before they erupt",
        "Earthquakes happen along fault lines",
        "Rivers deposit sediment in wide deltas",
        "Deserts form in the shadow of mountains",
    ];
    let mut profiles = Vec::new();
    for minutes in [5u32, 30] {
        let lib = dir.path().join(format!("lib{minutes}"));
        std::fs::create_dir_all(&lib).unwrap();
        let each = minutes * 60 / subjects.len() as u32;
        let deck: Vec<Slide> = subjects
            .iter()
            .enumerate()
            .map(|(i, t)| Slide {
                from: i as u32 * each,
                to: (i as u32 + 1) * each,
                lines: std::slice::from_ref(t),
                size: 24,
                font: SANS,
                colour: "black",
                background: "white",
            })
            .collect();
        slides(&lib, "geology.mp4", 640, 360, minutes * 60, &deck, false, &[]);
        let home = dir.path().join(format!("home{minutes}"));
        // Checkpoints every minute of video, logged: segments are finished
        // while a slide is still on screen, not held back until it closes.
        let rss = rss_profile(
            kino_with(&home, &models)
                .env("KINO_CHECKPOINT_SECS", "60")
                .env("RUST_LOG", "kino::pipeline=debug")
                .arg("ingest")
                .arg(&lib),
        );
        let checkpoints = rss.stderr.matches("checkpoint staged").count();
        assert!(
            checkpoints as u32 >= minutes - 2,
            "{minutes} min in slides of {} s: {checkpoints} checkpoints, segments held back?",
            each
        );
        eprintln!(
            "indexing a {minutes}-minute slide video with vision and OCR: resident {} MiB typically, {} MiB at the peak, {checkpoints} checkpoints",
            rss.median_kb / 1024,
            rss.peak_kb / 1024
        );
        profiles.push(rss);
        let v = json_of(&run(kino_with(&home, &models).args([
            "search",
            "magma and ash coming out of a mountain",
            "--json",
        ])));
        let top = &v["results"][0];
        let (s, e) = (top["start_ms"].as_i64().unwrap(), top["end_ms"].as_i64().unwrap());
        let (from, to) = (i64::from(each) * 1000, i64::from(each) * 2000);
        assert!(
            s >= from - 1000 && e <= to + 1000,
            "volcano slide {from}–{to} ms, moment {s}–{e}: {v}"
        );
        assert!(top["sources"].to_string().contains("screen"), "{top}");
    }
    // Memory is noisy at this scale: from run to run the peak of the same
    // 30-minute video varied 549–654 MiB (a brief spike, OCR and Swin
    // scratch buffers at once) and even the median by ±35 MiB, so a tight
    // comparison fails by chance (it did in CI). The fault this guards,
    // segments held back until a slide closes, is caught directly by the
    // checkpoint count above; here 6× the length must stay within the
    // noise and under an absolute ceiling.
    let (short, long) = (&profiles[0], &profiles[1]);
    assert!(
        long.peak_kb < short.peak_kb + 160 * 1024,
        "6x the length must not cost more memory: peak {} MiB for 5 min, {} MiB for 30 min",
        short.peak_kb / 1024,
        long.peak_kb / 1024
    );
    for p in &profiles {
        assert!(p.peak_kb < 1024 * 1024, "a peak over 1 GiB: {p:?}");
    }
}

/// `kino serve` started without ONNX Runtime and the OCR models: once they
/// arrive (as `kino models fetch ocr onnxruntime` from another terminal
/// would put them there), it loads them and reads the library's screens.
#[test]
fn serve_reads_the_library_once_the_ocr_models_arrive() {
    let _quiet = QUIET.read().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let deck = [Slide {
        from: 0,
        to: 12,
        lines: &["Honeybees communicate with a waggle dance"],
        size: 32,
        font: SANS,
        colour: "black",
        background: "white",
    }];
    slides(&lib, "bees.mp4", 960, 540, 12, &deck, false, &[]);
    std::fs::write(
        lib.join("bees.srt"),
        "1\n00:00:01,000 --> 00:00:03,000\nWelcome back.\n\n",
    )
    .unwrap();
    let models = dir.path().join("models");
    link_model(&models, TEXT_MODEL);
    let port = free_port();
    let _server = serve(kino_with(&home, &models).env("KINO_MODEL_POLL_MS", "200"), &lib, port);
    let read =
        || {
            let v = get_json(port, "/api/search?q=insects%20dancing%20to%20talk&k=3");
            v["results"].as_array().unwrap().iter().any(|r| {
                r["text"].as_str().unwrap_or("").contains("waggle") && r["sources"].to_string().contains("screen")
            })
        };
    wait_for("the video indexed without OCR", || {
        let v = get_json(port, "/api/videos");
        v["videos"]
            .as_array()
            .is_some_and(|a| a.len() == 1 && a[0]["status"] == "done")
    });
    assert!(!read(), "no OCR models yet");
    link_model(&models, OCR_MODEL);
    link_model(&models, RUNTIME);
    wait_for("the slide's words searchable", read);
}
