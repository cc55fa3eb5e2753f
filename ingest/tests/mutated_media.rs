//! Mutated media: seeded bit flips, overwritten runs, cuts and splices of
//! real files (MP4 with H.264 and AAC, MPEG-TS, WebM with VP9 and Opus).
//! Probing, frame sampling and audio decoding each finish within their
//! budgets, with frames or a clear error naming the file, and never panic.
//! `KINO_FUZZ_CASES` sets the number of mutants (default 600; `scripts/soak`
//! runs thousands); `KINO_FUZZ_SEED` replays one run.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::ffmpeg;
use kino_fuzzkit::SplitMix;
use kino_ingest::{AudioDecoder, AudioOptions, DecodeBudget, FrameSampler, SampleOptions};

/// One to eight mutations of `bytes`.
fn mutate(bytes: &[u8], rng: &mut SplitMix) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for _ in 0..1 + rng.below(8) {
        let n = b.len().max(1);
        match rng.below(6) {
            0 => {
                let i = rng.below(n);
                if let Some(x) = b.get_mut(i) {
                    *x ^= 1 << rng.below(8);
                }
            }
            1 => {
                // A run of garbage.
                let i = rng.below(n);
                let len = 1 + rng.below(4096);
                for k in i..(i + len).min(b.len()) {
                    b[k] = rng.next_u64() as u8;
                }
            }
            2 => b.truncate(rng.below(n)),
            3 => {
                // A stretch duplicated elsewhere (a splice).
                let i = rng.below(n);
                let len = 1 + rng.below(8192);
                let chunk: Vec<u8> = b[i..(i + len).min(b.len())].to_vec();
                let at = rng.below(b.len().max(1));
                b.splice(at..at, chunk);
            }
            4 => {
                // A field set to an extreme value (sizes, counts, dimensions).
                let i = rng.below(n.saturating_sub(4));
                let v: [u8; 4] = match rng.below(3) {
                    0 => [0xff; 4],
                    1 => [0; 4],
                    _ => [0x7f, 0xff, 0xff, 0xff],
                };
                for (k, x) in v.iter().enumerate() {
                    if let Some(y) = b.get_mut(i + k) {
                        *y = *x;
                    }
                }
            }
            _ => {
                let i = rng.below(n);
                let len = rng.below(2048);
                b.drain(i..(i + len).min(b.len()));
            }
        }
    }
    b
}

#[test]
fn mutated_media_finish_within_budget_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let sources = [
        (
            "a.mp4",
            vec!["-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-c:a", "aac"],
        ),
        ("a.ts", vec!["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "mp2"]),
        (
            "a.webm",
            vec!["-c:v", "libvpx-vp9", "-deadline", "realtime", "-c:a", "libopus"],
        ),
    ];
    let mut seeds = Vec::new();
    for (name, codec) in &sources {
        let p = dir.path().join(name);
        let mut args = vec![
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=160x120:r=10:d=4",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=4",
            "-shortest",
        ];
        args.extend(codec.iter().copied());
        args.push(p.to_str().unwrap());
        ffmpeg(&args);
        seeds.push(std::fs::read(&p).unwrap());
    }
    let cases: usize = std::env::var("KINO_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let seed = kino_fuzzkit::seed_from("KINO_FUZZ_SEED");
    println!("mutated media: {cases} cases, seed {seed} (KINO_FUZZ_SEED={seed} replays them)");
    let mut rng = SplitMix(seed);
    let budget = Duration::from_secs(10);
    let frame_opts = SampleOptions {
        decode_budget: DecodeBudget {
            max_frames: Some(2_000),
            max_wall: Some(budget),
        },
        ..Default::default()
    };
    let audio_opts = AudioOptions {
        max_wall: Some(budget),
        ..Default::default()
    };
    let (mut decoded, mut refused) = (0usize, 0usize);
    for case in 0..cases {
        let k = rng.below(seeds.len());
        let bytes = mutate(&seeds[k], &mut rng);
        let p = dir
            .path()
            .join(format!("m{case}.{}", sources[k].0.rsplit('.').next().unwrap()));
        std::fs::write(&p, &bytes).unwrap();
        let what = format!("case {case} (seed {seed}, from {})", sources[k].0);
        let t = Instant::now();
        let result = std::panic::catch_unwind(|| {
            let names = |e: &kino_ingest::IngestError| {
                assert!(e.to_string().contains(&p.display().to_string()), "{what}: {e}");
            };
            match kino_ingest::probe(&p) {
                Ok(_) => {}
                Err(e) => names(&e),
            }
            let mut frames = 0usize;
            match FrameSampler::open(&p, &frame_opts) {
                Ok(s) => {
                    for f in s {
                        match f {
                            Ok(_) => frames += 1,
                            Err(e) => {
                                names(&e);
                                break;
                            }
                        }
                    }
                }
                Err(e) => names(&e),
            }
            match AudioDecoder::open(&p, &audio_opts) {
                Ok(Some(a)) => {
                    for c in a {
                        if let Err(e) = c {
                            names(&e);
                            break;
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => names(&e),
            }
            frames
        });
        match result {
            Ok(frames) if frames > 0 => decoded += 1,
            Ok(_) => refused += 1,
            Err(_) => panic!("{what}: panicked; the mutant is at {}", keep(&p)),
        }
        assert!(
            t.elapsed() < 3 * budget,
            "{what}: took {:?}, over its budgets",
            t.elapsed()
        );
        let _ = std::fs::remove_file(&p);
    }
    println!("{decoded} mutants gave frames, {refused} gave none (a clear error or no picture)");
    assert_eq!(decoded + refused, cases);
}

/// Keeps a failing mutant out of the temporary folder for a regression test.
fn keep(p: &Path) -> String {
    let kept = std::env::temp_dir().join(format!("kino-mutant-{}", p.file_name().unwrap().to_string_lossy()));
    let _ = std::fs::copy(p, &kept);
    kept.display().to_string()
}
