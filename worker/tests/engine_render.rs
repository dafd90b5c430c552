//! The engine's renditions: sizes per fit mode, orientation, colour handling, formats,
//! metadata, and what outputs must not carry.

use image::{ImageBuffer, ImageDecoder, ImageFormat, Rgb, Rgba};
use protocol::rendition::{Fit, Format, Rendition};
use worker::image::{Encoded, Limits, Rendered, render};

const R: [u8; 3] = [255, 0, 0];
const G: [u8; 3] = [0, 255, 0];
const B: [u8; 3] = [0, 0, 255];
const W: [u8; 3] = [255, 255, 255];

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn rendition(name: &str, w: Option<u32>, h: Option<u32>, fit: Fit, format: Format) -> Rendition {
    Rendition { name: name.into(), width: w, height: h, fit, format, quality: 90, enlarge: false, animated: false }
}

fn one(input: &[u8], r: Rendition) -> (Encoded, Rendered) {
    let rendered = render(input, std::slice::from_ref(&r), &Limits::default()).expect("renders");
    (rendered.outputs[0].clone(), rendered)
}

/// Decoded output as (width, height, channels, samples).
fn pixels(e: &Encoded) -> (u32, u32, usize, Vec<u8>) {
    if e.content_type == "image/jpeg" {
        let img = turbojpeg::decompress(&e.bytes, turbojpeg::PixelFormat::RGB).expect("jpeg decodes");
        return (img.width as u32, img.height as u32, 3, img.pixels);
    }
    let fmt = if e.content_type == "image/png" { ImageFormat::Png } else { ImageFormat::WebP };
    let img = image::load_from_memory_with_format(&e.bytes, fmt).expect("output decodes");
    let channels = usize::from(img.color().channel_count());
    let (w, h) = (img.width(), img.height());
    let data = match channels {
        3 => img.to_rgb8().into_raw(),
        4 => img.to_rgba8().into_raw(),
        _ => img.into_bytes(),
    };
    (w, h, channels, data)
}

fn at(p: &(u32, u32, usize, Vec<u8>), x: u32, y: u32) -> Vec<u8> {
    let i = (y as usize * p.0 as usize + x as usize) * p.2;
    p.3[i..i + p.2].to_vec()
}

fn assert_near(got: &[u8], want: &[u8], tol: u8, what: &str) {
    let ok = got.iter().zip(want).all(|(g, w)| g.abs_diff(*w) <= tol);
    assert!(ok, "{what}: got {got:?}, want {want:?} (±{tol})");
}

fn png_of<P: image::PixelWithColorType>(img: &ImageBuffer<P, Vec<P::Subpixel>>) -> Vec<u8>
where
    [P::Subpixel]: image::EncodableLayout,
{
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png).expect("png encodes");
    out.into_inner()
}

#[test]
fn fit_modes_give_the_right_sizes_and_never_enlarge() {
    let src = png_of(&ImageBuffer::from_fn(400, 200, |x, _| Rgb([(x % 256) as u8, 90, 160])));
    let cases = [
        (Some(100), Some(100), Fit::Inside, false, (100, 50)),
        (Some(100), Some(100), Fit::Cover, false, (100, 100)),
        (Some(60), Some(90), Fit::Fill, false, (60, 90)),
        (Some(100), None, Fit::Inside, false, (100, 50)),
        (None, Some(50), Fit::Inside, false, (100, 50)),
        (Some(1000), Some(1000), Fit::Inside, false, (400, 200)),
        (Some(1000), Some(1000), Fit::Cover, false, (200, 200)),
        (Some(1000), Some(1000), Fit::Inside, true, (1000, 500)),
        (Some(300), Some(300), Fit::Cover, true, (300, 300)),
    ];
    for (w, h, fit, enlarge, want) in cases {
        let r = Rendition { enlarge, ..rendition("t", w, h, fit, Format::Png) };
        let (out, _) = one(&src, r.clone());
        assert_eq!((out.width, out.height), want, "{r:?}");
        let p = pixels(&out);
        assert_eq!((p.0, p.1), want, "encoded size for {r:?}");
    }
    let (thumb, _) = one(&fixture("../../../tests/fixtures/myphoto.jpg"), Rendition::thumbnail());
    assert_eq!((thumb.width, thumb.height, thumb.content_type), (512, 512, "image/jpeg"));
}

#[test]
fn cover_crops_the_centre() {
    let colours = [R, G, B];
    let src = png_of(&ImageBuffer::from_fn(300, 100, |x, _| Rgb(colours[(x / 100) as usize])));
    let (out, _) = one(&src, rendition("c", Some(40), Some(40), Fit::Cover, Format::Png));
    let p = pixels(&out);
    // Lanczos reads a few source pixels past the crop edge, so stay 4 px inside it.
    for (x, y) in [(4, 4), (35, 4), (20, 20), (4, 35), (35, 35)] {
        assert_near(&at(&p, x, y), &G, 4, "cover keeps the green middle");
    }
}

#[test]
fn all_eight_orientations_come_out_upright() {
    // Stored quadrants: red, green / blue, white. Expected upright corners TL, TR, BL, BR.
    let expected: [[[u8; 3]; 4]; 8] = [
        [R, G, B, W],
        [G, R, W, B],
        [W, B, G, R],
        [B, W, R, G],
        [R, B, G, W],
        [B, R, W, G],
        [W, G, B, R],
        [G, W, R, B],
    ];
    for o in 1..=8u8 {
        let input = fixture(&format!("orient_{o}.jpg"));
        for format in [Format::Png, Format::Jpeg] {
            let (out, rendered) = one(&input, rendition("o", Some(96), Some(96), Fit::Inside, format));
            let want_size = if o >= 5 { (64, 96) } else { (96, 64) };
            assert_eq!((out.width, out.height), want_size, "orientation {o}");
            assert_eq!(rendered.metadata.orientation, o);
            let p = pixels(&out);
            let (w, h) = (p.0 - 1, p.1 - 1);
            let corners = [(8, 8), (w - 8, 8), (8, h - 8), (w - 8, h - 8)];
            for (i, (x, y)) in corners.into_iter().enumerate() {
                assert_near(
                    &at(&p, x, y),
                    &expected[usize::from(o) - 1][i],
                    40,
                    &format!("orientation {o} corner {i}"),
                );
            }
        }
    }
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "sizes differ");
    let se: f64 = a.iter().zip(b).map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2)).sum();
    10.0 * (255.0f64 * 255.0 / (se / a.len() as f64).max(1e-10)).log10()
}

#[test]
fn half_scale_jpeg_decoding_matches_a_full_decode() {
    // 640² → 300²: the JPEG is decoded at 1/2 (320², just above the output); the same pixels
    // as a PNG are decoded in full. Both go through Lanczos3 to the same size.
    let jpeg = fixture("../../../tests/fixtures/myphoto.jpg");
    let full = turbojpeg::decompress(&jpeg, turbojpeg::PixelFormat::RGB).expect("jpeg decodes");
    let as_png =
        png_of(&ImageBuffer::<Rgb<u8>, _>::from_raw(full.width as u32, full.height as u32, full.pixels).expect("fits"));
    let r = || rendition("t", Some(300), Some(300), Fit::Inside, Format::Png);
    let (from_jpeg, _) = one(&jpeg, r());
    let (from_png, _) = one(&as_png, r());
    let (a, b) = (pixels(&from_jpeg), pixels(&from_png));
    assert_eq!((a.0, a.1, b.0, b.1), (300, 300, 300, 300));
    let db = psnr(&a.3, &b.3);
    assert!(db >= 38.0, "half-scale decode: PSNR {db:.1} dB against the full decode");
}

#[test]
fn cmyk_and_ycck_jpegs_match_the_reference_conversion() {
    // Reference: ImageMagick's `-colorspace sRGB` of the same patches (naive CMYK, no profile).
    let want: [(u32, u32, [u8; 3]); 4] =
        [(16, 16, [0, 255, 255]), (48, 16, [255, 0, 255]), (16, 48, [255, 0, 0]), (48, 48, [127, 127, 127])];
    for (file, space) in [("cmyk.jpg", "cmyk"), ("ycck.jpg", "ycck")] {
        let (out, rendered) = one(&fixture(file), rendition("c", Some(64), Some(64), Fit::Inside, Format::Png));
        assert_eq!(rendered.metadata.color_space, space);
        let p = pixels(&out);
        assert_eq!(p.2, 3, "{file}: CMYK becomes RGB");
        for (x, y, c) in want {
            assert_near(&at(&p, x, y), &c, 12, &format!("{file} at {x},{y}"));
        }
    }
}

#[test]
fn sixteen_bit_png_is_read() {
    let src = png_of(&ImageBuffer::from_fn(
        64,
        32,
        |x, _| {
            if x < 32 { Rgb([65535u16, 0, 0]) } else { Rgb([0u16, 0, 32768]) }
        },
    ));
    let (out, rendered) = one(&src, rendition("s", Some(32), None, Fit::Inside, Format::Jpeg));
    assert_eq!((rendered.metadata.bit_depth, out.width, out.height), (16, 32, 16));
    let p = pixels(&out);
    assert_near(&at(&p, 4, 8), &R, 8, "left red");
    assert_near(&at(&p, 28, 8), &[0, 0, 128], 8, "right half blue");
}

fn half_transparent_png() -> Vec<u8> {
    png_of(&ImageBuffer::from_fn(64, 32, |x, _| if x < 32 { Rgba([0u8, 0, 0, 0]) } else { Rgba([255, 0, 0, 255]) }))
}

#[test]
fn alpha_is_flattened_on_white_for_jpeg_and_kept_for_png_and_webp() {
    let src = half_transparent_png();
    let (jpeg, meta) = one(&src, rendition("j", Some(32), None, Fit::Inside, Format::Jpeg));
    assert!(meta.metadata.has_alpha);
    let p = pixels(&jpeg);
    assert_near(&at(&p, 3, 8), &W, 6, "transparent becomes white");
    assert_near(&at(&p, 28, 8), &R, 12, "opaque red stays");
    for format in [Format::Png, Format::Webp] {
        let (out, _) = one(&src, rendition("a", Some(32), None, Fit::Inside, format));
        let p = pixels(&out);
        assert_eq!(p.2, 4, "{format:?} keeps alpha");
        assert!(at(&p, 3, 8)[3] <= 5, "{format:?}: transparent stays transparent");
        assert_near(&at(&p, 28, 8), &[255, 0, 0, 255], 12, "opaque red");
    }
    for file in ["alpha_lossy.webp", "alpha_lossless.webp"] {
        let (out, _) = one(&fixture(file), rendition("w", Some(64), None, Fit::Inside, Format::Png));
        let p = pixels(&out);
        assert_eq!(p.2, 4, "{file}: alpha is read");
        let alphas = p.3.chunks_exact(4).map(|px| px[3]);
        let (lo, hi) = alphas.fold((255, 0), |(lo, hi), a| (a.min(lo), a.max(hi)));
        assert!(lo < 64 && hi > 192, "{file}: the alpha gradient survives ({lo}..{hi})");
    }
}

#[test]
fn animations_give_their_first_frame() {
    for file in ["animated.gif", "animated.webp"] {
        let (out, rendered) = one(&fixture(file), rendition("f", Some(40), None, Fit::Inside, Format::Png));
        assert_eq!((out.width, out.height), (40, 30), "{file}");
        assert_near(&at(&pixels(&out), 20, 15)[..3], &R, 4, file);
        assert_eq!(rendered.metadata.format, file.rsplit('.').next().expect("ext"));
    }
}

#[test]
fn other_formats_decode_with_the_right_content() {
    for file in ["quadrants.bmp", "quadrants.tif", "palette.png", "gray.jpg", "progressive.jpg"] {
        let (out, rendered) = one(&fixture(file), rendition("x", Some(200), None, Fit::Inside, Format::Png));
        assert_eq!((out.width, out.height), (rendered.metadata.width, rendered.metadata.height), "{file}");
        let p = pixels(&out);
        let tl = at(&p, 2, 2);
        if file == "gray.jpg" {
            assert_near(&tl[..1], &[76], 6, file); // luma of pure red
        } else {
            assert_near(&tl[..3], &R, 12, file);
        }
    }
    let meta = one(&fixture("progressive.jpg"), Rendition::thumbnail()).1.metadata;
    assert_eq!((meta.progressive, meta.color_space.as_str()), (Some(true), "rgb"));
    let meta = one(&fixture("gray.jpg"), Rendition::thumbnail()).1.metadata;
    assert_eq!(meta.color_space, "gray");
}

#[test]
fn kept_icc_profiles_are_embedded_in_every_output_format() {
    let keep_icc: protocol::metadata::MetadataPolicy = "keep:icc".parse().expect("a policy");
    let icc = fixture("srgb.icc");
    for file in ["icc.jpg", "icc.png"] {
        let input = fixture(file);
        let renditions = [
            rendition("j", Some(32), None, Fit::Inside, Format::Jpeg),
            rendition("p", Some(32), None, Fit::Inside, Format::Png),
            rendition("w", Some(32), None, Fit::Inside, Format::Webp),
        ];
        let budget = worker::image::MemoryBudget::unlimited();
        let rendered =
            worker::image::render_within(&input, &renditions, &keep_icc, &Limits::default(), &budget).expect("renders");
        assert!(rendered.metadata.has_icc, "{file}");
        let jpeg = &rendered.outputs[0].bytes;
        let sig = jpeg.windows(12).position(|w| w == b"ICC_PROFILE\0").expect("APP2 ICC written");
        assert_eq!(&jpeg[sig + 14..sig + 14 + icc.len()], icc.as_slice(), "{file}: JPEG ICC");
        let mut png =
            image::codecs::png::PngDecoder::new(std::io::Cursor::new(&rendered.outputs[1].bytes)).expect("png");
        assert_eq!(png.icc_profile().expect("reads"), Some(icc.clone()), "{file}: PNG ICC");
        let mut webp =
            image::codecs::webp::WebPDecoder::new(std::io::Cursor::new(&rendered.outputs[2].bytes)).expect("webp");
        assert_eq!(webp.icc_profile().expect("reads"), Some(icc.clone()), "{file}: WebP ICC");
    }
}

#[test]
fn outputs_carry_no_exif_xmp_or_gps_and_metadata_is_right() {
    let input = fixture("camera.jpg");
    let renditions = [
        rendition("j", Some(40), None, Fit::Inside, Format::Jpeg),
        rendition("p", Some(40), None, Fit::Inside, Format::Png),
        rendition("w", Some(40), Some(40), Fit::Cover, Format::Webp),
    ];
    let rendered = render(&input, &renditions, &Limits::default()).expect("renders");
    let names: Vec<_> = rendered.outputs.iter().map(|o| o.rendition.as_str()).collect();
    assert_eq!(names, ["j", "p", "w"]);
    for out in &rendered.outputs {
        for needle in [&b"Exif"[..], b"GPS", b"xmpmeta", b"ns.adobe.com/xap", b"ExampleCam", b"eXIf"] {
            assert!(!out.bytes.windows(needle.len()).any(|w| w == needle), "{} leaks {needle:?}", out.rendition);
        }
    }
    // Stored 80×60 with orientation 6: upright 60×80, so a 40-wide box gives 40×53.
    assert_eq!((rendered.outputs[0].width, rendered.outputs[0].height), (40, 53));
    let m = &rendered.metadata;
    assert_eq!((m.format.as_str(), m.width, m.height, m.orientation), ("jpeg", 80, 60, 6));
    assert_eq!((m.upright_width, m.upright_height), (60, 80));
    assert_eq!(m.camera_make.as_deref(), Some("ExampleCam"));
    assert_eq!(m.camera_model.as_deref(), Some("Model 7"));
    assert_eq!(m.capture_time.as_deref(), Some("2021-07-04T12:30:59"));
    assert!(m.has_gps && m.has_exif && m.has_xmp && !m.has_icc && !m.has_alpha);
    let json = serde_json::to_value(m).expect("serialises");
    assert_eq!(json["cameraMake"], "ExampleCam");
    assert_eq!(json["hasGps"], true);
    assert_eq!(json["colorSpace"], "rgb");

    let plain = one(&fixture("orient_base.jpg"), Rendition::thumbnail()).1.metadata;
    assert!(!plain.has_exif && !plain.has_gps && plain.camera_make.is_none() && plain.orientation == 1);
}

/// Width and height from an AVIF file's `ispe` box (the image's spatial extent).
fn avif_extent(bytes: &[u8]) -> Option<(u32, u32)> {
    let at = bytes.windows(4).position(|w| w == b"ispe")?;
    let be = |i: usize| bytes.get(i..i + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    Some((be(at + 8)?, be(at + 12)?))
}

#[test]
fn avif_output_is_a_real_avif_of_the_right_size() {
    let r = rendition("a", Some(64), None, Fit::Inside, Format::Avif);
    let (out, _) = one(&fixture("orient_base.jpg"), r);
    assert_eq!(out.content_type, "image/avif");
    assert_eq!(&out.bytes[4..12], b"ftypavif", "an AVIF file");
    assert_eq!(avif_extent(&out.bytes), Some((out.width, out.height)));
    assert_eq!(out.width.max(out.height), 64);
    assert!(!out.bytes.windows(4).any(|w| w == b"Exif"), "no Exif in AVIF");
}
