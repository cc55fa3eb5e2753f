//! Test media made with the `ffmpeg` CLI in temporary folders.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs the `ffmpeg` CLI quietly; panics with its stderr when it fails.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(args)
        .output()
        .expect("the ffmpeg CLI is needed by these tests (apt-get install ffmpeg)");
    assert!(
        out.status.success(),
        "ffmpeg {:?} failed: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A clip that is red for [0,2) s, green for [2,4) s, blue for [4,6) s, 64x48 at 25 fps,
/// encoded with the given codec arguments into `name` inside `dir`.
pub fn rgb_clip(dir: &Path, name: &str, codec: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "color=c=red:s=64x48:r=25:d=2",
        "-f",
        "lavfi",
        "-i",
        "color=c=lime:s=64x48:r=25:d=2",
        "-f",
        "lavfi",
        "-i",
        "color=c=blue:s=64x48:r=25:d=2",
        "-filter_complex",
        "[0][1][2]concat=n=3:v=1:a=0",
    ];
    args.extend_from_slice(codec);
    let p = path.to_str().unwrap().to_string();
    args.push(&p);
    ffmpeg(&args);
    path
}

/// H.264 with B-frames, a keyframe every second and no scene-cut keyframes.
pub const H264: &[&str] = &[
    "-c:v",
    "libx264",
    "-pix_fmt",
    "yuv420p",
    "-g",
    "25",
    "-bf",
    "2",
    "-sc_threshold",
    "0",
];

/// Named colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    Red,
    Green,
    Blue,
    Other,
}

/// The dominant colour of a pixel.
pub fn colour(p: [u8; 3]) -> Colour {
    let [r, g, b] = p.map(i32::from);
    if r > 180 && g < 70 && b < 70 {
        Colour::Red
    } else if g > 180 && r < 70 && b < 70 {
        Colour::Green
    } else if b > 180 && r < 70 && g < 70 {
        Colour::Blue
    } else {
        Colour::Other
    }
}

/// The colour at the centre of an image.
pub fn centre(img: &image::RgbImage) -> Colour {
    colour(img.get_pixel(img.width() / 2, img.height() / 2).0)
}
