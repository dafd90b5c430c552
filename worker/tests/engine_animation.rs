//! Animated sources: `"animated": true` keeps every frame (an animated WebP with the source's
//! delays and loop count); without it the first frame, as for any still. The sources are made
//! here with the `image` crate's GIF encoder, and the animated WebP source by the engine itself.

use std::io::Cursor;

use image::codecs::gif::{GifEncoder, Repeat};
use image::codecs::webp::WebPDecoder;
use image::{AnimationDecoder, Delay, Frame, RgbaImage};
use protocol::rendition::{Fit, Format, Rendition};
use worker::image::{Encoded, ImageError, Limits, MemoryBudget, render, render_within};

const COLOURS: [[u8; 4]; 4] = [[255, 0, 0, 255], [0, 255, 0, 255], [0, 0, 255, 255], [255, 255, 255, 255]];

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A GIF of solid `COLOURS` frames of `width`×`height`, one per delay (ms, stored in 1/100 s).
fn gif(width: u32, height: u32, delays: &[u32], repeat: Option<Repeat>) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = GifEncoder::new(&mut out);
        if let Some(repeat) = repeat {
            enc.set_repeat(repeat).expect("repeat");
        }
        for (i, &ms) in delays.iter().enumerate() {
            let img = RgbaImage::from_pixel(width, height, image::Rgba(COLOURS[i % COLOURS.len()]));
            enc.encode_frame(Frame::from_parts(img, 0, 0, Delay::from_numer_denom_ms(ms, 1))).expect("frame");
        }
    }
    out
}

fn webp_rendition(name: &str, width: u32, animated: bool) -> Rendition {
    Rendition {
        name: name.into(),
        width: Some(width),
        height: None,
        fit: Fit::Inside,
        format: Format::Webp,
        quality: 90,
        enlarge: false,
        animated,
    }
}

/// A decoded WebP: its frames (size, centre pixel, delay in ms; one frame and no delay for a
/// still) and its loop count (`None` for a still).
struct Played {
    frames: Vec<((u32, u32), [u8; 4], u32)>,
    loop_count: Option<u16>,
}

fn play(out: &Encoded) -> Played {
    assert_eq!(out.content_type, "image/webp");
    let dec = WebPDecoder::new(Cursor::new(&out.bytes)).expect("a WebP");
    if !dec.has_animation() {
        let img = image::load_from_memory(&out.bytes).expect("a still WebP").to_rgba8();
        let centre = img.get_pixel(img.width() / 2, img.height() / 2).0;
        return Played { frames: vec![(img.dimensions(), centre, 0)], loop_count: anim_loop_count(&out.bytes) };
    }
    let frames = dec
        .into_frames()
        .map(|f| {
            let f = f.expect("frame decodes");
            let (num, den) = f.delay().numer_denom_ms();
            let buf = f.into_buffer();
            let centre = buf.get_pixel(buf.width() / 2, buf.height() / 2).0;
            (buf.dimensions(), centre, num / den)
        })
        .collect();
    Played { frames, loop_count: anim_loop_count(&out.bytes) }
}

/// The loop count of the file's `ANIM` chunk; `None` for a still WebP.
fn anim_loop_count(webp: &[u8]) -> Option<u16> {
    let mut pos = 12;
    while let Some(h) = webp.get(pos..pos + 8) {
        let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
        if &h[..4] == b"ANIM" {
            return webp.get(pos + 12..pos + 14).map(|b| u16::from_le_bytes([b[0], b[1]]));
        }
        pos += 8 + len + (len & 1);
    }
    None
}

fn assert_colour(got: [u8; 4], want: [u8; 4], what: &str) {
    assert!(got.iter().zip(want).all(|(g, w)| g.abs_diff(w) <= 16), "{what}: got {got:?}, want {want:?}");
}

#[test]
fn an_animated_gif_keeps_its_frames_delays_and_loop_count_only_when_asked() {
    let source = gif(60, 40, &[100, 200, 50, 300], Some(Repeat::Finite(2)));
    let renditions = [
        webp_rendition("anim", 30, true),
        webp_rendition("still", 30, false),
        Rendition { format: Format::Png, ..webp_rendition("png", 30, false) },
    ];
    let rendered = render(&source, &renditions, &Limits::default()).expect("renders");
    let [anim, still, png] = &rendered.outputs[..] else { panic!("three outputs") };

    assert_eq!((anim.rendition.as_str(), anim.width, anim.height), ("anim", 30, 20));
    let played = play(anim);
    assert_eq!(played.frames.len(), 4, "one output frame per source frame");
    for (i, (size, centre, delay)) in played.frames.iter().enumerate() {
        assert_eq!(*size, (30, 20), "frame {i}: the output canvas");
        assert_colour(*centre, COLOURS[i], &format!("frame {i}"));
        assert_eq!(*delay, [100, 200, 50, 300][i], "frame {i}: its delay");
    }
    // GIF's 2 is two repeats after the first play; WebP counts plays.
    assert_eq!(played.loop_count, Some(3));

    // Without `animated`: the first frame, a still file, as before.
    assert_eq!(anim_loop_count(&still.bytes), None, "a still WebP");
    let frames = play(still).frames;
    assert_eq!(frames.len(), 1);
    assert_colour(frames[0].1, COLOURS[0], "the still's first frame");
    let png = image::load_from_memory(&png.bytes).expect("png").to_rgba8();
    assert_eq!(png.dimensions(), (30, 20));
    assert_colour(png.get_pixel(15, 10).0, COLOURS[0], "the PNG's first frame");
    assert_eq!((rendered.metadata.format.as_str(), rendered.metadata.width), ("gif", 60));
}

#[test]
fn loop_counts_and_short_delays_follow_gif2webp() {
    let cases = [(Some(Repeat::Infinite), Some(0)), (None, Some(1)), (Some(Repeat::Finite(65_535)), Some(65_535))];
    for (repeat, want) in cases {
        let source = gif(16, 16, &[0, 10, 20], repeat);
        let out = &render(&source, &[webp_rendition("a", 16, true)], &Limits::default()).expect("renders").outputs[0];
        let played = play(out);
        assert_eq!(played.loop_count, want, "{repeat:?}");
        // Browsers play a GIF frame of 10 ms or less for 100 ms.
        let delays: Vec<u32> = played.frames.iter().map(|f| f.2).collect();
        assert_eq!(delays, [100, 100, 20], "{repeat:?}");
    }
}

#[test]
fn an_animated_webp_stays_animated() {
    // The fixture: red then blue, 100 ms each, looping forever.
    let out = &render(&fixture("animated.webp"), &[webp_rendition("a", 20, true)], &Limits::default())
        .expect("renders")
        .outputs[0];
    let played = play(out);
    assert_eq!((out.width, out.height, played.loop_count), (20, 15, Some(0)));
    let delays: Vec<u32> = played.frames.iter().map(|f| f.2).collect();
    assert_eq!(delays, [100, 100]);
    assert_colour(played.frames[1].1, [0, 0, 255, 255], "the second frame");

    // An animated WebP made by the engine (from a GIF) goes through again, delays, loop
    // count and all.
    let gif_source = gif(60, 40, &[100, 200, 50], Some(Repeat::Finite(4)));
    let first = render(&gif_source, &[webp_rendition("full", 60, true)], &Limits::default()).expect("renders");
    let again = &render(&first.outputs[0].bytes, &[webp_rendition("half", 30, true)], &Limits::default())
        .expect("renders")
        .outputs[0];
    let played = play(again);
    assert_eq!((again.width, again.height, played.loop_count), (30, 20, Some(5)));
    let delays: Vec<u32> = played.frames.iter().map(|f| f.2).collect();
    assert_eq!(delays, [100, 200, 50]);
    for (i, frame) in played.frames.iter().enumerate() {
        assert_colour(frame.1, COLOURS[i], &format!("frame {i}"));
    }
}

#[test]
fn still_sources_give_a_still_even_when_animation_is_asked() {
    let one_frame = gif(20, 20, &[100], Some(Repeat::Infinite));
    for source in [fixture("camera.jpg"), one_frame] {
        let out = &render(&source, &[webp_rendition("a", 16, true)], &Limits::default()).expect("renders").outputs[0];
        assert_eq!(anim_loop_count(&out.bytes), None, "a still WebP");
        assert_eq!(play(out).frames.len(), 1);
    }
}

#[test]
fn frames_times_canvas_is_held_to_the_pixel_limit() {
    // Five 100×100 frames: 50 000 pixels decoded.
    let source = gif(100, 100, &[100; 5], None);
    let animated = [webp_rendition("a", 50, true)];
    let at = |max_pixels, max_frames| Limits { max_pixels, max_frames, ..Limits::default() };
    assert!(render(&source, &animated, &at(50_000, 5)).is_ok());
    let err = render(&source, &animated, &at(49_999, 5)).expect_err("over the pixels");
    assert!(
        matches!(err, ImageError::TooLarge { what: "pixels over all frames", actual: 50_000, limit: 49_999 }),
        "{err}"
    );
    let err = render(&source, &animated, &at(50_000, 4)).expect_err("over the frames");
    assert!(matches!(err, ImageError::TooLarge { what: "animation frames", actual: 5, limit: 4 }), "{err}");
    // A job that does not ask for the animation decodes only the first frame.
    assert!(render(&source, &[webp_rendition("s", 50, false)], &at(10_000, 1)).is_ok());

    // Enlarged, the output's pixels over all frames count against the job's output limit.
    let big = [Rendition { width: Some(1000), enlarge: true, ..animated[0].clone() }];
    assert!(render(&source, &big, &Limits::default()).is_ok(), "5 frames of 1 MP, within 100 MP");
    let limits = Limits { max_job_output_pixels: 4_000_000, ..Limits::default() };
    let err = render(&source, &big, &limits).expect_err("5 MP over 4");
    assert!(matches!(err, ImageError::InvalidRendition(ref m) if m.contains("5 frames")), "{err}");
}

#[test]
fn an_animated_render_reserves_more_than_its_first_frame() {
    let source = gif(200, 200, &[100; 8], None);
    let budget = MemoryBudget::new(1 << 30);
    let reserved = |animated| {
        render_within(&source, &[webp_rendition("a", 100, animated)], &Default::default(), &Limits::default(), &budget)
            .expect("renders")
            .reserved
    };
    let (still, animated) = (reserved(false), reserved(true));
    // At least the decoder's canvases and the encoded frames.
    assert!(animated >= still + 200 * 200 * 4 * 3 + 8 * 100 * 100, "{animated} vs {still}");
    assert_eq!(budget.in_use(), 0);
}
