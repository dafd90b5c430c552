//! HEIF/HEIC and AVIF input: upright thumbnails that match the JPEG path's, the container's
//! rotation and grid applied once, and hostile files refused without decoding or panicking.
//!
//! The files in tests/fixtures/ come from `scripts/heif-fixtures.sh`: the seed photo cropped
//! (losslessly) to 640×480, encoded by heif-enc, with `irot`, grid and `ispe` edits by
//! `scripts/heif_boxes.py`.
#![cfg(feature = "heif")]

use std::time::{Duration, Instant};

use protocol::rendition::Rendition;
use worker::image::{Encoded, ImageError, Limits, Rendered, SourceFormat, detect::detect, render};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The seed photo cropped as the fixtures' source was: 640×480 from y = 80, on MCU bounds.
fn source_jpeg() -> Vec<u8> {
    let crop = turbojpeg::TransformCrop { x: 0, y: 80, width: Some(640), height: Some(480) };
    let mut transform = turbojpeg::Transform::default();
    (transform.crop, transform.perfect) = (Some(crop), true);
    turbojpeg::transform(&transform, &fixture("../../../tests/fixtures/myphoto.jpg")).expect("crops").to_vec()
}

fn thumbnail(input: &[u8]) -> (Encoded, Rendered) {
    let rendered = render(input, &[Rendition::thumbnail()], &Limits::default()).expect("renders");
    (rendered.outputs[0].clone(), rendered)
}

/// An RGB image: width, height, samples.
struct Rgb(u32, u32, Vec<u8>);

fn rgb(e: &Encoded) -> Rgb {
    let img = turbojpeg::decompress(&e.bytes, turbojpeg::PixelFormat::RGB).expect("jpeg decodes");
    Rgb(img.width as u32, img.height as u32, img.pixels)
}

/// The image turned 90° anticlockwise (what `irot` 1 asks for display).
fn rotated_anticlockwise(src: &Rgb) -> Rgb {
    let Rgb(w, h, data) = src;
    let (w, h) = (*w as usize, *h as usize);
    let mut out = vec![0; data.len()];
    for y in 0..w {
        for x in 0..h {
            // Output (x, y) shows source (w - 1 - y, x).
            let from = (x * w + (w - 1 - y)) * 3;
            let to = (y * h + x) * 3;
            out[to..to + 3].copy_from_slice(&data[from..from + 3]);
        }
    }
    Rgb(h as u32, w as u32, out)
}

fn psnr(a: &Rgb, b: &Rgb) -> f64 {
    assert_eq!((a.0, a.1), (b.0, b.1), "sizes differ");
    let se: f64 = a.2.iter().zip(&b.2).map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2)).sum();
    let mse = se / a.2.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-10)).log10()
}

#[test]
fn heic_avif_rotated_and_grid_thumbnails_match_the_jpeg_path() {
    let (jpeg_thumb, _) = thumbnail(&source_jpeg());
    let want = rgb(&jpeg_thumb);
    assert_eq!((want.0, want.1), (512, 384));
    let want_rotated = rotated_anticlockwise(&want);
    let cases = [
        ("photo.heic", "heif", &want, true),
        ("photo_grid.heic", "heif", &want, false),
        ("photo_irot90.heic", "heif", &want_rotated, true),
        ("photo.avif", "avif", &want, true),
    ];
    for (name, format, want, has_exif) in cases {
        let (out, rendered) = thumbnail(&fixture(name));
        let got = rgb(&out);
        assert_eq!((out.width, out.height), (want.0, want.1), "{name}: upright size");
        assert_eq!((got.0, got.1), (want.0, want.1), "{name}: encoded size");
        let db = psnr(&got, want);
        assert!(db >= 35.0, "{name}: PSNR {db:.1} dB against the JPEG path's thumbnail");
        let m = &rendered.metadata;
        assert_eq!(m.format, format, "{name}");
        // The container's rotation is applied by libheif; the Exif orientation is not reapplied.
        assert_eq!(m.orientation, 1, "{name}");
        assert_eq!((m.width, m.height), (m.upright_width, m.upright_height), "{name}");
        assert_eq!((m.upright_width, m.upright_height), (want.0 * 640 / 512, want.1 * 640 / 512), "{name}");
        assert_eq!(m.has_exif, has_exif, "{name}: heif-enc copies the JPEG's Exif; the grid has none");
        assert_eq!((m.bit_depth, m.has_alpha, m.color_space.as_str()), (8, false, "rgb"), "{name}");
    }
}

#[test]
fn formats_are_detected_by_content() {
    assert_eq!(detect(&fixture("photo.heic")), Ok(SourceFormat::Heif));
    assert_eq!(detect(&fixture("photo_grid.heic")), Ok(SourceFormat::Heif));
    assert_eq!(detect(&fixture("photo.avif")), Ok(SourceFormat::Avif));
}

#[test]
fn an_ispe_over_the_limits_is_refused_before_decoding() {
    let started = Instant::now();
    let err = render(&fixture("huge_ispe.heic"), &[Rendition::thumbnail()], &Limits::default()).expect_err("refused");
    assert!(matches!(err, ImageError::TooLarge { what: "width", actual: 100_000, .. }), "{err}");
    // 10^10 pixels were never decoded nor allocated.
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}

#[test]
fn damaged_files_are_corrupt_not_a_panic() {
    let mut garbage = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic".to_vec();
    let mut x = 0x2545_f491_u32;
    garbage.extend((0..4096).map(|_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as u8
    }));
    let photo = fixture("photo.heic");
    let truncated = &photo[..photo.len() / 2];
    let mut flipped = photo.clone();
    let mid = flipped.len() - 4000;
    flipped[mid..mid + 64].fill(0xA5);
    for (what, input) in [("garbage", &garbage[..]), ("truncated", truncated), ("damaged mdat", &flipped)] {
        match render(input, &[Rendition::thumbnail()], &Limits::default()) {
            Err(ImageError::Corrupt(_)) => {}
            // A damaged HEVC stream may still decode to (wrong) pixels; it must not panic.
            Ok(_) if what == "damaged mdat" => {}
            other => panic!("{what}: {other:?}"),
        }
    }
}

/// The patches of `p3_nclx.avif` (scripts/heif_boxes.py `PATCHES`), in row order.
const PATCHES: [[u8; 3]; 4] = [[200, 100, 50], [60, 160, 90], [70, 90, 200], [128, 128, 128]];

/// The centre of each 64×64 patch of a 128×128 output.
fn patch_centres(e: &Encoded) -> Vec<[u8; 3]> {
    let Rgb(w, h, data) = rgb(e);
    assert_eq!((w, h), (128, 128));
    [(32, 32), (96, 32), (32, 96), (96, 96)]
        .iter()
        .map(|&(x, y)| {
            let i = (y * 128 + x) * 3;
            [data[i], data[i + 1], data[i + 2]]
        })
        .collect()
}

fn near(a: [u8; 3], b: [u8; 3], tolerance: u8) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= tolerance)
}

#[test]
fn nclx_display_p3_colour_is_converted_to_srgb_or_kept_as_a_profile() {
    use moxcms::{ColorProfile, Layout, TransformOptions};
    use protocol::metadata::MetadataPolicy;
    use worker::image::{MemoryBudget, render_within};

    let input = fixture("p3_nclx.avif");
    let p3_to_srgb = ColorProfile::new_display_p3()
        .create_transform_8bit(Layout::Rgb, &ColorProfile::new_srgb(), Layout::Rgb, TransformOptions::default())
        .expect("a transform");
    let mut expected = [0u8; 12];
    p3_to_srgb.transform(PATCHES.as_flattened(), &mut expected).expect("converts");
    let render = |policy: &str| {
        let policy: MetadataPolicy = policy.parse().expect("a policy");
        render_within(&input, &[Rendition::thumbnail()], &policy, &Limits::default(), &MemoryBudget::unlimited())
            .expect("renders")
    };

    // Under strip: sRGB numbers, no profile. The coloured patches move by more than the
    // tolerance, so pixels passed through unconverted fail this.
    let stripped = render("strip");
    assert!(stripped.metadata.has_icc, "the nclx colour counts as the source's profile");
    let out = &stripped.outputs[0];
    for ((got, want), raw) in patch_centres(out).into_iter().zip(expected.chunks_exact(3)).zip(PATCHES) {
        let want = [want[0], want[1], want[2]];
        assert!(near(got, want, 6), "got {got:?}, Display P3 {raw:?} in sRGB is {want:?}");
    }
    assert!(!near(PATCHES[0], [expected[0], expected[1], expected[2]], 8), "the conversion is visible");

    // Under keep:icc the pixels stay as coded and a P3 profile travels with them.
    let kept = render("keep:icc");
    let out = &kept.outputs[0];
    for (got, raw) in patch_centres(out).into_iter().zip(PATCHES) {
        assert!(near(got, raw, 6), "got {got:?}, coded {raw:?}");
    }
    let profile = jpeg_icc(&out.bytes).expect("a profile embedded");
    let profile = ColorProfile::new_from_slice(&profile).expect("moxcms reads it");
    let p3 = ColorProfile::new_display_p3();
    let (got, want) = (profile.red_colorant, p3.red_colorant);
    assert!((got.x - want.x).abs() < 0.01 && (got.y - want.y).abs() < 0.01, "red {got:?} is P3's {want:?}");
}

/// The ICC profile in a JPEG's APP2 segments (one segment is enough here).
fn jpeg_icc(jpeg: &[u8]) -> Option<Vec<u8>> {
    let at = jpeg.windows(12).position(|w| w == b"ICC_PROFILE\0")?;
    let len = usize::from(u16::from_be_bytes([jpeg[at - 2], jpeg[at - 1]]));
    Some(jpeg[at + 14..at - 2 + len].to_vec())
}
