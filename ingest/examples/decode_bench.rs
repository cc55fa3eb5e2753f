//! Decode benchmark helper: samples FILE at FPS and writes every RGB frame to stdout as
//! raw rgb24 (the same work as `ffmpeg -i FILE -vf fps=FPS -f rawvideo -pix_fmt rgb24 -`).
//!
//! Usage: `decode_bench FILE [FPS] [--decode-all] > /dev/null`; prints
//! `frames=N decoded=D seconds=S` on stderr (`--decode-all`: decode every
//! picture, see `SampleOptions::decode_all`).

use std::io::Write;
use std::time::Instant;

use kino_ingest::{FrameSampler, SampleOptions};

fn main() {
    let mut args = std::env::args().skip(1);
    let file = args.next().expect("usage: decode_bench FILE [FPS]");
    let fps: f64 = args
        .next()
        .map(|s| s.parse().expect("FPS must be a number"))
        .unwrap_or(1.0);
    let decode_all = args.next().as_deref() == Some("--decode-all");
    let t = Instant::now();
    let opts = SampleOptions {
        fps,
        thumbnail_width: 0,
        decode_all,
        ..Default::default()
    };
    let mut sampler = FrameSampler::open(file.as_ref(), &opts).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut n = 0u64;
    for f in sampler.by_ref() {
        let f = f.unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(1)
        });
        out.write_all(f.image.as_raw()).expect("stdout");
        n += 1;
    }
    out.flush().expect("stdout");
    eprintln!(
        "frames={n} decoded={} seconds={:.3}",
        sampler.decoded_frames(),
        t.elapsed().as_secs_f64()
    );
}
