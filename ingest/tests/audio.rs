//! Audio decoding for the speech stage: mono 16 kHz chunks with their times, streamed,
//! and every bad input of issue 16 (no audio, zero-length audio, 8-channel 96 kHz,
//! corrupt and truncated streams) handled without a panic or a hang.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::ffmpeg;
use kino_ingest::audio::SAMPLE_RATE;
use kino_ingest::{AudioChunk, AudioDecoder, AudioOptions, IngestError};

/// Everything decoded from `path`: the chunks, the warnings, and the error that ended
/// decoding (if any). `None` when the file has no audio stream.
struct Decoded {
    chunks: Vec<AudioChunk>,
    warnings: Vec<String>,
    error: Option<IngestError>,
}

impl Decoded {
    fn samples(&self) -> Vec<f32> {
        self.chunks.iter().flat_map(|c| c.samples.iter().copied()).collect()
    }

    fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.samples.len()).sum()
    }
}

fn decode_with(path: &Path, opts: &AudioOptions) -> Result<Option<Decoded>, IngestError> {
    let Some(mut dec) = AudioDecoder::open(path, opts)? else {
        return Ok(None);
    };
    let mut chunks = Vec::new();
    let mut error = None;
    for c in dec.by_ref() {
        match c {
            Ok(c) => chunks.push(c),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    assert!(dec.next().is_none(), "the decoder yields nothing after its end");
    Ok(Some(Decoded {
        chunks,
        warnings: dec.warnings().to_vec(),
        error,
    }))
}

fn decode(path: &Path) -> Decoded {
    let d = decode_with(path, &AudioOptions::default())
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
        .unwrap_or_else(|| panic!("{} has no audio stream", path.display()));
    if let Some(e) = &d.error {
        panic!("decoding {}: {e}", path.display());
    }
    d
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Start times go forward, chunks do not overlap, none is empty.
fn assert_monotonic(chunks: &[AudioChunk]) {
    for w in chunks.windows(2) {
        assert!(
            w[1].start_ms >= w[0].end_ms() - 1,
            "chunk at {} ms starts before the previous one ({} ms..{} ms) ends",
            w[1].start_ms,
            w[0].start_ms,
            w[0].end_ms()
        );
    }
    assert!(chunks.iter().all(|c| !c.samples.is_empty()));
}

/// Frequency in Hz of the dominant tone, from rising zero crossings of `x` at 16 kHz.
fn frequency(x: &[f32]) -> f64 {
    let crossings: Vec<usize> = (1..x.len()).filter(|&i| x[i - 1] < 0.0 && x[i] >= 0.0).collect();
    assert!(crossings.len() > 2, "no tone in the signal");
    let (first, last) = (crossings[0], *crossings.last().unwrap());
    (crossings.len() - 1) as f64 * SAMPLE_RATE as f64 / (last - first) as f64
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

/// A 440 Hz sine of `secs` seconds at 44.1 kHz, encoded with `codec` into `name`.
fn sine(dir: &Path, name: &str, secs: u32, codec: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let src = format!("sine=frequency=440:sample_rate=44100:duration={secs}");
    let mut args = vec!["-f", "lavfi", "-i", &src];
    args.extend_from_slice(codec);
    args.push(p(&path));
    ffmpeg(&args);
    path
}

#[test]
fn sine_440_keeps_its_frequency_and_length() {
    let dir = tempfile::tempdir().unwrap();
    let wav = sine(dir.path(), "a.wav", 3, &["-c:a", "pcm_s16le"]);
    let d = decode(&wav);
    let x = d.samples();
    let f = frequency(&x);
    let secs = x.len() as f64 / SAMPLE_RATE as f64;
    eprintln!("wav: {f:.3} Hz, {secs:.4} s, warnings {:?}", d.warnings);
    assert!((f - 440.0).abs() < 0.5, "frequency {f}");
    assert!((secs - 3.0).abs() < 0.010, "length {secs} s");
    assert_eq!(d.chunks.len(), 1);
    assert_eq!(d.chunks[0].start_ms, 0);
    // The sine filter's amplitude is 1/8: the level survives resampling.
    let level = rms(&x[1600..x.len() - 1600]);
    assert!((level - 0.125 / 2f64.sqrt()).abs() < 0.01, "rms {level}");
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn audio_only_formats_decode() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str], f64)] = &[
        ("a.flac", &["-c:a", "flac"], 0.010),
        ("a.mp3", &["-c:a", "libmp3lame", "-b:a", "64k"], 0.060),
        ("a.ogg", &["-c:a", "libvorbis"], 0.060),
        ("a.opus", &["-c:a", "libopus", "-b:a", "32k"], 0.060),
        ("a.m4a", &["-c:a", "aac", "-b:a", "64k"], 0.060),
    ];
    for (name, codec, tolerance) in cases {
        let path = sine(dir.path(), name, 3, codec);
        let d = decode(&path);
        let x = d.samples();
        let secs = x.len() as f64 / SAMPLE_RATE as f64;
        let f = frequency(&x[1600..x.len() - 1600]);
        eprintln!(
            "{name}: {f:.3} Hz, {secs:.4} s, first chunk at {} ms",
            d.chunks[0].start_ms
        );
        assert!((f - 440.0).abs() < 1.0, "{name}: frequency {f}");
        assert!((secs - 3.0).abs() < *tolerance, "{name}: length {secs} s");
        // Audio-only files start at 0 as players show them (MP3's encoder delay included).
        assert!(
            d.chunks[0].start_ms.abs() <= 5,
            "{name}: starts at {}",
            d.chunks[0].start_ms
        );
        assert_monotonic(&d.chunks);
    }
}

#[test]
fn chunks_have_the_requested_length_and_consecutive_times() {
    let dir = tempfile::tempdir().unwrap();
    let wav = sine(dir.path(), "a.wav", 5, &["-c:a", "pcm_s16le"]);
    let opts = AudioOptions {
        chunk_ms: 2000,
        ..AudioOptions::default()
    };
    let d = decode_with(&wav, &opts).unwrap().unwrap();
    assert!(d.error.is_none());
    let starts: Vec<i64> = d.chunks.iter().map(|c| c.start_ms).collect();
    let lens: Vec<usize> = d.chunks.iter().map(|c| c.samples.len()).collect();
    assert_eq!(starts, vec![0, 2000, 4000]);
    assert_eq!(&lens[..2], &[32000, 32000]);
    assert!((lens[2] as i64 - 16000).abs() <= 160, "{lens:?}");
    assert_monotonic(&d.chunks);
}

#[test]
fn invalid_chunk_length_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let wav = sine(dir.path(), "a.wav", 1, &["-c:a", "pcm_s16le"]);
    let opts = AudioOptions {
        chunk_ms: 0,
        ..AudioOptions::default()
    };
    let e = AudioDecoder::open(&wav, &opts).err().expect("chunk_ms 0 is refused");
    assert!(matches!(e, IngestError::InvalidOptions { .. }), "{e:?}");
    assert!(e.to_string().contains(p(&wav)), "{e}");
}

#[test]
fn audio_that_starts_late_is_placed_where_it_plays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late.mkv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=red:s=64x48:r=25:d=5",
        "-itsoffset",
        "2",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100:duration=2",
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "libx264",
        "-c:a",
        "flac",
        p(&path),
    ]);
    let d = decode(&path);
    let first = d.chunks[0].start_ms;
    eprintln!("late audio: first chunk at {first} ms, {} samples", d.len());
    assert!((first - 2000).abs() <= 20, "first chunk at {first} ms");
    assert!((d.len() as i64 - 32000).abs() <= 160, "{} samples", d.len());
}

#[test]
fn late_aac_audio_in_mp4_is_placed_where_it_plays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=red:s=64x48:r=25:d=5",
        "-itsoffset",
        "2",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100:duration=2",
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "libx264",
        "-c:a",
        "aac",
        p(&path),
    ]);
    let d = decode(&path);
    let first = d.chunks[0].start_ms;
    // Where the tone is loud: the first 10 ms window above half its level.
    let x = d.samples();
    let onset = (0..x.len() / 160)
        .find(|&k| rms(&x[k * 160..(k + 1) * 160]) > 0.04)
        .unwrap() as i64
        * 10
        + first;
    eprintln!(
        "late aac in mp4: first chunk at {first} ms, tone from {onset} ms, {} samples",
        d.len()
    );
    assert!(
        (onset - 2000).abs() <= 30,
        "tone starts at {onset} ms, first chunk at {first} ms"
    );
}

#[test]
fn a_decode_budget_too_small_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let wav = sine(dir.path(), "a.wav", 30, &["-c:a", "pcm_s16le"]);
    let opts = AudioOptions {
        max_wall: Some(Duration::from_nanos(1)),
        ..AudioOptions::default()
    };
    let e = match decode_with(&wav, &opts) {
        Err(e) => e,
        Ok(Some(d)) => d.error.expect("a 1 ns budget is exceeded"),
        Ok(None) => panic!("audio vanished"),
    };
    assert!(matches!(e, IngestError::BudgetExceeded { .. }), "{e:?}");
    assert!(e.to_string().contains(p(&wav)), "{e}");
}

#[test]
fn a_file_without_audio_gives_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("silent.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=red:s=64x48:r=25:d=1",
        "-c:v",
        "libx264",
        p(&path),
    ]);
    assert!(AudioDecoder::open(&path, &AudioOptions::default()).unwrap().is_none());
}

#[test]
fn zero_length_audio_gives_no_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zero.wav");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=16000:cl=mono",
        "-t",
        "0",
        "-c:a",
        "pcm_s16le",
        p(&path),
    ]);
    let d = decode(&path);
    assert!(d.chunks.is_empty(), "{} chunks", d.chunks.len());
}

#[test]
fn missing_and_empty_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.wav");
    let e = AudioDecoder::open(&missing, &AudioOptions::default()).err().unwrap();
    assert!(matches!(e, IngestError::NotFound { .. }), "{e:?}");
    assert!(e.to_string().contains(p(&missing)), "{e}");
    let empty = dir.path().join("empty.mp3");
    std::fs::write(&empty, b"").unwrap();
    let e = AudioDecoder::open(&empty, &AudioOptions::default()).err().unwrap();
    assert!(matches!(e, IngestError::Empty { .. }), "{e:?}");
    let text = dir.path().join("notes.mp3");
    std::fs::write(&text, "not audio at all\n".repeat(100)).unwrap();
    let e = AudioDecoder::open(&text, &AudioOptions::default()).err().unwrap();
    assert!(e.to_string().contains(p(&text)), "{e}");
}

/// A 4 s 440 Hz sine whose second half is shifted `shift_s` seconds later (a gap in
/// the timestamps), in Matroska.
fn gapped(dir: &Path, name: &str, shift_s: f64) -> PathBuf {
    let path = dir.join(name);
    let af = format!("asetpts='if(gte(T,2),PTS+{shift_s}/TB,PTS)'");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000:duration=4",
        "-af",
        &af,
        "-c:a",
        "flac",
        p(&path),
    ]);
    path
}

#[test]
fn a_long_gap_starts_a_new_chunk_at_the_audio_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = decode(&gapped(dir.path(), "gap3.mkv", 3.0));
    let summary: Vec<(i64, usize)> = d.chunks.iter().map(|c| (c.start_ms, c.samples.len())).collect();
    eprintln!("3 s gap: chunks {summary:?}, warnings {:?}", d.warnings);
    assert_eq!(d.chunks.len(), 2, "{summary:?}");
    assert_eq!(d.chunks[0].start_ms, 0);
    assert!((d.chunks[0].end_ms() - 2000).abs() <= 30, "{summary:?}");
    assert!((d.chunks[1].start_ms - 5000).abs() <= 30, "{summary:?}");
    assert!((d.len() as i64 - 64000).abs() <= 160, "{summary:?}");
    assert!(d.warnings.iter().any(|w| w.contains("gap")), "{:?}", d.warnings);
    assert_monotonic(&d.chunks);
}

#[test]
fn a_short_gap_is_filled_with_silence() {
    let dir = tempfile::tempdir().unwrap();
    let d = decode(&gapped(dir.path(), "gap05.mkv", 0.5));
    let x = d.samples();
    let secs = x.len() as f64 / SAMPLE_RATE as f64;
    let at = |a: f64, b: f64| rms(&x[(a * 16000.0) as usize..(b * 16000.0) as usize]);
    eprintln!(
        "0.5 s gap: {} chunk(s), {secs:.3} s, rms before {:.4} in {:.4} after {:.4}",
        d.chunks.len(),
        at(1.5, 1.9),
        at(2.1, 2.4),
        at(2.6, 3.0)
    );
    assert_eq!(d.chunks.len(), 1);
    assert!((secs - 4.5).abs() < 0.010, "{secs} s");
    assert!(at(1.5, 1.9) > 0.05 && at(2.6, 3.0) > 0.05);
    assert!(at(2.1, 2.4) < 1e-3, "the gap is not silent");
    assert!(
        d.warnings.iter().any(|w| w.contains("filled with silence")),
        "{:?}",
        d.warnings
    );
}

/// 8 channels at 96 kHz (7.1) with a 1 kHz sine on one channel and silence elsewhere.
fn surround(dir: &Path, name: &str, channel: &str) -> PathBuf {
    let path = dir.join(name);
    let pan = format!("pan=7.1|{channel}=c0");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=1000:sample_rate=96000:duration=2",
        "-af",
        &pan,
        "-c:a",
        "pcm_s24le",
        p(&path),
    ]);
    path
}

#[test]
fn eight_channels_at_96_khz_are_downmixed() {
    let dir = tempfile::tempdir().unwrap();
    for channel in ["FL", "FC", "SR"] {
        let path = surround(dir.path(), &format!("{channel}.wav"), channel);
        let mut dec = AudioDecoder::open(&path, &AudioOptions::default()).unwrap().unwrap();
        assert_eq!((dec.info().channels, dec.info().sample_rate), (8, 96000));
        let chunks: Vec<AudioChunk> = dec.by_ref().map(|c| c.unwrap()).collect();
        let x: Vec<f32> = chunks.iter().flat_map(|c| c.samples.iter().copied()).collect();
        let f = frequency(&x);
        let level = rms(&x);
        let secs = x.len() as f64 / SAMPLE_RATE as f64;
        eprintln!("7.1 96 kHz, sine on {channel}: {f:.2} Hz, rms {level:.4}, {secs:.4} s");
        assert!((f - 1000.0).abs() < 1.0, "{channel}: frequency {f}");
        assert!(level > 0.02, "{channel}: the sine is lost in the downmix (rms {level})");
        assert!((secs - 2.0).abs() < 0.010, "{channel}: length {secs}");
    }
}

#[test]
fn nine_channels_without_a_standard_layout_are_mixed_equally() {
    let dir = tempfile::tempdir().unwrap();
    // Matroska keeps "9 channels" without a layout (WAV would invent one).
    let path = dir.path().join("nine.mkv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=1000:sample_rate=48000:duration=1",
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=48000:cl=mono",
        "-filter_complex",
        "[1]asplit=8[a][b][c][d][e][f][g][h];[a][b][c][d][0][e][f][g][h]amerge=inputs=9",
        "-t",
        "1",
        "-c:a",
        "pcm_s16le",
        p(&path),
    ]);
    let d = decode(&path);
    let x = d.samples();
    let f = frequency(&x);
    eprintln!("9 channels: {f:.2} Hz, rms {:.4}", rms(&x));
    assert!((f - 1000.0).abs() < 1.0, "frequency {f}");
    assert!(rms(&x) > 0.005);
}

#[test]
fn truncated_wav_gives_the_audio_before_the_cut_and_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let wav = sine(dir.path(), "full.wav", 10, &["-c:a", "pcm_s16le"]);
    let bytes = std::fs::read(&wav).unwrap();
    let cut = dir.path().join("cut.wav");
    std::fs::write(&cut, &bytes[..bytes.len() * 4 / 10]).unwrap();
    let d = decode(&cut);
    let secs = d.len() as f64 / SAMPLE_RATE as f64;
    eprintln!("truncated wav: {secs:.3} s, warnings {:?}", d.warnings);
    assert!((secs - 4.0).abs() < 0.05, "decoded {secs} s");
    // FFmpeg's WAV reader trusts the file's size over the header, so the cut shows as
    // the half packet at the end.
    assert!(!d.warnings.is_empty(), "no warning for a cut file");
}

#[test]
fn truncated_m4a_without_index_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let m4a = sine(dir.path(), "full.m4a", 5, &["-c:a", "aac"]);
    let bytes = std::fs::read(&m4a).unwrap();
    let cut = dir.path().join("cut.m4a");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = AudioDecoder::open(&cut, &AudioOptions::default())
        .err()
        .expect("no index, no audio");
    eprintln!("truncated m4a: {e}");
    assert!(matches!(e, IngestError::Corrupt { .. }), "{e:?}");
    assert!(e.to_string().contains(p(&cut)), "{e}");
}

/// Flips bits all over the middle of `bytes` (deterministic).
fn damage(bytes: &mut [u8]) {
    let n = bytes.len();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..n / 50 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = n / 4 + (x as usize % (n / 2));
        bytes[i] ^= 1 << (x >> 60 & 7);
    }
}

#[test]
fn bit_flips_in_audio_only_files_never_panic_or_hang() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("a.mp3", &["-c:a", "libmp3lame", "-b:a", "64k"]),
        ("a.ogg", &["-c:a", "libvorbis"]),
        ("a.m4a", &["-c:a", "aac", "-movflags", "+faststart"]),
        ("a.flac", &["-c:a", "flac"]),
    ];
    for (name, codec) in cases {
        let clean = sine(dir.path(), name, 10, codec);
        let mut bytes = std::fs::read(&clean).unwrap();
        damage(&mut bytes);
        let bad = dir.path().join(format!("bad-{name}"));
        std::fs::write(&bad, &bytes).unwrap();
        let t = Instant::now();
        let opts = AudioOptions {
            max_wall: Some(Duration::from_secs(20)),
            ..AudioOptions::default()
        };
        match decode_with(&bad, &opts) {
            Err(e) => {
                eprintln!("{name}: open error: {e}");
                assert!(e.to_string().contains(p(&bad)), "{e}");
            }
            Ok(None) => panic!("{name}: the audio stream vanished"),
            Ok(Some(d)) => {
                let secs = d.len() as f64 / SAMPLE_RATE as f64;
                eprintln!(
                    "{name}: {secs:.2} s decoded in {} chunks, error {:?}, warnings {:?}",
                    d.chunks.len(),
                    d.error.as_ref().map(|e| e.to_string()),
                    d.warnings
                );
                if let Some(e) = &d.error {
                    assert!(e.to_string().contains(p(&bad)), "{e}");
                }
                assert_monotonic(&d.chunks);
                if secs < 9.5 {
                    assert!(
                        d.error.is_some() || !d.warnings.is_empty(),
                        "{name}: audio lost without a word"
                    );
                }
                assert!(secs < 25.0, "{name}: {secs} s out of a 10 s file");
                assert!(d.chunks.iter().flat_map(|c| &c.samples).all(|v| v.is_finite()));
            }
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{name}: took {:?}", t.elapsed());
    }
}

#[test]
fn an_audio_stream_of_garbage_is_an_error_naming_the_file_or_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    // MP3 data in a WAV container, then everything after the header overwritten.
    let clean = sine(dir.path(), "mp3.wav", 5, &["-c:a", "libmp3lame", "-f", "wav"]);
    let mut bytes = std::fs::read(&clean).unwrap();
    let mut x: u32 = 12345;
    for b in bytes.iter_mut().skip(200) {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        *b = (x >> 16) as u8;
    }
    let bad = dir.path().join("garbage.wav");
    std::fs::write(&bad, &bytes).unwrap();
    let t = Instant::now();
    match decode_with(&bad, &AudioOptions::default()) {
        Err(e) => {
            eprintln!("garbage: open error: {e}");
            assert!(e.to_string().contains(p(&bad)), "{e}");
        }
        Ok(None) => panic!("the audio stream vanished"),
        Ok(Some(d)) => {
            let secs = d.len() as f64 / SAMPLE_RATE as f64;
            eprintln!(
                "garbage: {secs:.2} s in {} chunks, error {:?}, warnings {:?}",
                d.chunks.len(),
                d.error.as_ref().map(|e| e.to_string()),
                d.warnings
            );
            match &d.error {
                Some(e) => assert!(e.to_string().contains(p(&bad)), "{e}"),
                None => assert!(!d.warnings.is_empty(), "garbage decoded without a word"),
            }
        }
    }
    assert!(t.elapsed() < Duration::from_secs(20));
}

#[test]
fn the_decoder_can_move_to_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<AudioDecoder>();
}

/// Resident memory of this process in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn two_hours_of_silence_stream_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two-hours.wav");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=8000:cl=mono",
        "-t",
        "7200",
        "-c:a",
        "pcm_u8",
        p(&path),
    ]);
    let t = Instant::now();
    let dec = AudioDecoder::open(&path, &AudioOptions::default()).unwrap().unwrap();
    let before = rss_kib();
    let (mut n, mut total, mut max_len, mut peak) = (0usize, 0usize, 0usize, before);
    let mut expected_start = 0i64;
    for c in dec {
        let c = c.unwrap();
        assert_eq!(c.start_ms, expected_start, "chunk {n}");
        expected_start += 30_000;
        max_len = max_len.max(c.samples.len());
        total += c.samples.len();
        assert!(c.samples.iter().all(|&v| v.abs() < 1e-3));
        n += 1;
        if n % 10 == 0 {
            peak = peak.max(rss_kib());
        }
    }
    let growth_mib = peak.saturating_sub(before) as f64 / 1024.0;
    eprintln!(
        "2 h of silence: {n} chunks, {total} samples, longest chunk {max_len}, RSS growth {growth_mib:.1} MiB, {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(n, 240);
    assert_eq!(max_len, 30 * SAMPLE_RATE as usize);
    assert_eq!(total, 7200 * SAMPLE_RATE as usize);
    // The whole decode would be 7200 s × 16000 × 4 B = 440 MiB.
    assert!(growth_mib < 64.0, "RSS grew by {growth_mib:.1} MiB");
}
