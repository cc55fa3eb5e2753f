//! Frame sampling on real media generated with the ffmpeg CLI.

mod common;

use common::{centre, colour, ffmpeg, rgb_clip, Colour, H264};
use kino_ingest::{FrameSampler, SampleMode, SampleOptions};

fn sample_all(path: &std::path::Path, opts: &SampleOptions) -> Vec<kino_ingest::Frame> {
    FrameSampler::open(path, opts)
        .unwrap_or_else(|e| panic!("open: {e}"))
        .map(|f| f.unwrap_or_else(|e| panic!("frame: {e}")))
        .collect()
}

fn pts(frames: &[kino_ingest::Frame]) -> Vec<i64> {
    frames.iter().map(|f| f.pts_ms).collect()
}

#[test]
fn frame_at_3s_shows_what_the_source_showed_at_3s() {
    let dir = tempfile::tempdir().unwrap();
    let clip = rgb_clip(dir.path(), "rgb.mp4", H264);
    let frames = sample_all(&clip, &SampleOptions::default());
    assert_eq!(pts(&frames), vec![0, 1000, 2000, 3000, 4000, 5000]);
    let colours: Vec<Colour> = frames.iter().map(|f| centre(&f.image)).collect();
    use Colour::*;
    assert_eq!(colours, vec![Red, Red, Green, Green, Blue, Blue]);
    for f in &frames {
        assert_eq!((f.image.width(), f.image.height()), (64, 48));
        assert!(
            f.frame_pts_ms <= f.pts_ms && f.pts_ms - f.frame_pts_ms < 40,
            "{} vs {}",
            f.frame_pts_ms,
            f.pts_ms
        );
    }
}

#[test]
fn sampling_at_4_fps_takes_the_latest_frame_at_or_before_each_point() {
    let dir = tempfile::tempdir().unwrap();
    let clip = rgb_clip(dir.path(), "rgb.mkv", H264);
    let opts = SampleOptions {
        fps: 4.0,
        ..Default::default()
    };
    let frames = sample_all(&clip, &opts);
    assert_eq!(frames.len(), 24);
    assert_eq!(frames[7].pts_ms, 1750);
    assert_eq!(centre(&frames[7].image), Colour::Red);
    assert_eq!(frames[8].pts_ms, 2000);
    assert_eq!(centre(&frames[8].image), Colour::Green);
    assert_eq!(frames.last().unwrap().pts_ms, 5750);
}

#[test]
fn variable_frame_rate_pts_are_right() {
    // 2 s of red at 10 fps, then 2 s of green at 2 fps: frames of the second part are at
    // 2.0, 2.5, 3.0, 3.5 s.
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("vfr.mkv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=red:s=64x48:r=10:d=2",
        "-f",
        "lavfi",
        "-i",
        "color=c=lime:s=64x48:r=2:d=2",
        "-filter_complex",
        "[0][1]concat=n=2:v=1:a=0",
        "-vsync",
        "vfr",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        clip.to_str().unwrap(),
    ]);
    let info = kino_ingest::probe(&clip).unwrap();
    assert!(
        (3500..=4100).contains(&info.duration_ms),
        "duration {}",
        info.duration_ms
    );
    let opts = SampleOptions {
        fps: 5.0,
        ..Default::default()
    };
    let frames = sample_all(&clip, &opts);
    // Points 0, 0.2, … 3.8 s (the last frame, at 3.5 s, lasts until 4.0 s).
    assert_eq!(pts(&frames), (0..20).map(|k| k * 200).collect::<Vec<_>>());
    for f in &frames {
        let expected_frame = if f.pts_ms < 2000 {
            f.pts_ms / 100 * 100
        } else {
            f.pts_ms / 500 * 500
        };
        assert_eq!(f.frame_pts_ms, expected_frame, "sample at {} ms", f.pts_ms);
        let want = if f.pts_ms < 2000 { Colour::Red } else { Colour::Green };
        assert_eq!(centre(&f.image), want, "sample at {} ms", f.pts_ms);
    }
    // Sample at 2.4 s: the latest frame is the one at 2.0 s.
    let f = frames.iter().find(|f| f.pts_ms == 2400).unwrap();
    assert_eq!(f.frame_pts_ms, 2000);
}

#[test]
fn non_zero_start_time_is_normalised() {
    // MPEG-TS starts its clock at 1.4 s; ts offset adds another 10 s.
    let dir = tempfile::tempdir().unwrap();
    let mut codec = H264.to_vec();
    codec.extend_from_slice(&["-output_ts_offset", "10"]);
    let clip = rgb_clip(dir.path(), "rgb.ts", &codec);
    let frames = sample_all(&clip, &SampleOptions::default());
    assert_eq!(pts(&frames), vec![0, 1000, 2000, 3000, 4000, 5000]);
    assert_eq!(centre(&frames[1].image), Colour::Red);
    assert_eq!(centre(&frames[3].image), Colour::Green);
    assert_eq!(centre(&frames[4].image), Colour::Blue);
}

#[test]
fn rotated_phone_video_comes_out_upright_like_ffmpeg_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    // A red box in the top-left corner of a black 64x48 picture.
    let plain = dir.path().join("plain.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=black:s=64x48:r=5:d=1,drawbox=x=0:y=0:w=16:h=12:color=red:t=fill",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv444p",
        plain.to_str().unwrap(),
    ]);
    for (deg, want_w, want_h) in [(90, 48, 64), (180, 64, 48), (270, 48, 64)] {
        let rotated = dir.path().join(format!("rot{deg}.mp4"));
        let tag = format!("rotate={deg}");
        ffmpeg(&[
            "-i",
            plain.to_str().unwrap(),
            "-c",
            "copy",
            "-metadata:s:v",
            &tag,
            rotated.to_str().unwrap(),
        ]);
        // FFmpeg's CLI rotates by the display matrix: its output is the reference.
        let reference = dir.path().join(format!("ref{deg}.png"));
        ffmpeg(&[
            "-i",
            rotated.to_str().unwrap(),
            "-frames:v",
            "1",
            reference.to_str().unwrap(),
        ]);
        let reference = image::open(&reference).unwrap().to_rgb8();
        let info = kino_ingest::probe(&rotated).unwrap();
        assert_eq!(
            (info.display_width, info.display_height),
            (want_w, want_h),
            "rotate={deg}"
        );
        let frames = sample_all(&rotated, &SampleOptions::default());
        let img = &frames[0].image;
        assert_eq!(
            (img.width(), img.height()),
            (reference.width(), reference.height()),
            "rotate={deg}"
        );
        assert_eq!((img.width(), img.height()), (want_w, want_h));
        // Same corner is red in both.
        let red_corners = |im: &image::RgbImage| -> Vec<bool> {
            let (w, h) = (im.width() - 1, im.height() - 1);
            [(0, 0), (w, 0), (0, h), (w, h)]
                .iter()
                .map(|&(x, y)| colour(im.get_pixel(x, y).0) == Colour::Red)
                .collect()
        };
        assert_eq!(red_corners(img), red_corners(&reference), "rotate={deg}");
        assert_eq!(red_corners(img).iter().filter(|&&r| r).count(), 1);
    }
}

#[test]
fn keyframe_mode_yields_only_keyframes() {
    let dir = tempfile::tempdir().unwrap();
    let clip = rgb_clip(dir.path(), "rgb.mp4", H264);
    let opts = SampleOptions {
        mode: SampleMode::Keyframes,
        ..Default::default()
    };
    let mut sampler = FrameSampler::open(&clip, &opts).unwrap();
    let frames: Vec<_> = sampler.by_ref().map(|f| f.unwrap()).collect();
    assert_eq!(pts(&frames), vec![0, 1000, 2000, 3000, 4000, 5000]);
    assert!(sampler.decoded_frames() <= 6, "decoded {}", sampler.decoded_frames());
    assert_eq!(centre(&frames[2].image), Colour::Green);
}

#[test]
fn max_side_scales_and_thumbnail_is_a_jpeg_of_the_asked_width() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("big.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=640x360:r=5:d=1",
        "-c:v",
        "libx264",
        clip.to_str().unwrap(),
    ]);
    let opts = SampleOptions {
        max_side: Some(224),
        thumbnail_width: 100,
        ..Default::default()
    };
    let frames = sample_all(&clip, &opts);
    assert_eq!(frames.len(), 1);
    assert_eq!((frames[0].image.width(), frames[0].image.height()), (224, 126));
    let thumb = image::load_from_memory_with_format(&frames[0].thumbnail_jpeg, image::ImageFormat::Jpeg).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (100, 56));
    // Native size by default.
    let frames = sample_all(&clip, &SampleOptions::default());
    assert_eq!((frames[0].image.width(), frames[0].image.height()), (640, 360));
}

#[test]
fn resume_from_start_ms() {
    let dir = tempfile::tempdir().unwrap();
    let clip = rgb_clip(dir.path(), "rgb.mp4", H264);
    let opts = SampleOptions {
        start_ms: 3000,
        ..Default::default()
    };
    let frames = sample_all(&clip, &opts);
    assert_eq!(pts(&frames), vec![3000, 4000, 5000]);
    assert_eq!(centre(&frames[0].image), Colour::Green);
    assert_eq!(centre(&frames[1].image), Colour::Blue);
}

#[test]
fn webm_mkv_avi_all_decode() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str]); 3] = [
        (
            "rgb.webm",
            &[
                "-c:v",
                "libvpx-vp9",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
                "-b:v",
                "200k",
            ],
        ),
        ("rgb.mkv", H264),
        ("rgb.avi", &["-c:v", "mpeg4", "-q:v", "2"]),
    ];
    for (name, codec) in cases {
        let clip = rgb_clip(dir.path(), name, codec);
        let frames = sample_all(&clip, &SampleOptions::default());
        assert_eq!(pts(&frames), vec![0, 1000, 2000, 3000, 4000, 5000], "{name}");
        assert_eq!(centre(&frames[3].image), Colour::Green, "{name}");
    }
}

#[test]
fn probe_reports_facts() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("av.mkv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=160x90:r=25:d=3",
        "-f",
        "lavfi",
        "-i",
        "sine=d=3",
        "-c:v",
        "libx264",
        "-c:a",
        "aac",
        clip.to_str().unwrap(),
    ]);
    let info = kino_ingest::probe(&clip).unwrap();
    assert_eq!((info.width, info.height), (160, 90));
    assert!((info.fps - 25.0).abs() < 0.01, "fps {}", info.fps);
    assert!(
        (2900..=3100).contains(&info.duration_ms),
        "duration {}",
        info.duration_ms
    );
    assert_eq!(info.video_codec.as_deref(), Some("h264"));
    assert_eq!(info.audio_codec.as_deref(), Some("aac"));
    assert_eq!(info.rotation, 0);
    assert!(info.has_video && info.has_audio);
    assert!(info.subtitle_streams.is_empty());
    let json = serde_json::to_value(&info).unwrap();
    for key in [
        "duration_ms",
        "width",
        "height",
        "fps",
        "video_codec",
        "audio_codec",
        "subtitle_streams",
    ] {
        assert!(json.get(key).is_some(), "{key} missing in {json}");
    }
}

#[test]
fn sampler_can_move_to_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<FrameSampler>();
    let dir = tempfile::tempdir().unwrap();
    let clip = rgb_clip(dir.path(), "rgb.mp4", H264);
    let sampler = FrameSampler::open(&clip, &SampleOptions::default()).unwrap();
    let n = std::thread::spawn(move || sampler.count()).join().unwrap();
    assert_eq!(n, 6);
}

/// Skipping the non-reference pictures no sample point needs (the default
/// on constant-rate H.264) gives the very same frames as decoding them all,
/// at several sampling rates, with fewer pictures decoded.
#[test]
fn skipping_unneeded_non_reference_pictures_changes_no_sampled_frame() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("bframes.mp4");
    let clip_s = clip.to_str().unwrap();
    // 29.97 fps with B-frames (x264's default of 3, most of them non-reference).
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=160x120:r=30000/1001:d=8",
        "-c:v",
        "libx264",
        "-preset",
        "fast",
        "-bf",
        "3",
        "-pix_fmt",
        "yuv420p",
        clip_s,
    ]);
    for fps in [1.0, 0.5, 2.5, 7.0] {
        let skipping = SampleOptions {
            fps,
            ..Default::default()
        };
        let all = SampleOptions {
            decode_all: true,
            ..skipping.clone()
        };
        let mut s = FrameSampler::open(&clip, &skipping).unwrap();
        let a: Vec<kino_ingest::Frame> = s.by_ref().map(|f| f.unwrap()).collect();
        let skipped_decodes = s.decoded_frames();
        let mut s = FrameSampler::open(&clip, &all).unwrap();
        let b: Vec<kino_ingest::Frame> = s.by_ref().map(|f| f.unwrap()).collect();
        assert_eq!(s.decoded_frames(), 240, "decode_all decodes every picture");
        // At 7 fps nearly every picture is near a point; at 1 fps most are not.
        let bound = if fps <= 2.5 { 200 } else { 240 };
        assert!(
            skipped_decodes <= bound,
            "at {fps} fps only {} of 240 pictures skipped",
            240 - skipped_decodes
        );
        assert_eq!(a.len(), b.len(), "{fps} fps");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((x.pts_ms, x.frame_pts_ms), (y.pts_ms, y.frame_pts_ms), "{fps} fps");
            assert!(
                x.image.as_raw() == y.image.as_raw(),
                "{fps} fps: frame at {} ms differs",
                x.pts_ms
            );
        }
    }
}
