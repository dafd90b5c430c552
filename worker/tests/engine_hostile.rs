//! Hostile and broken inputs: every one ends as a permanent, classified error, never a panic,
//! and pixel bombs are refused before any large allocation.
#![allow(unsafe_code)] // the allocation-tracking global allocator below

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use pipeline_core::rendition::{Fit, Format};
use pipeline_core::{ErrorClass, JobError, Rendition};
use worker::engine::{EngineError, Limits, render};

/// Records the largest single allocation made on the current thread.
struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: delegates to the system allocator; the bookkeeping touches only a const-initialised
// thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(layout.size())));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn thumb(input: &[u8]) -> Result<(), EngineError> {
    render(input, &[Rendition::thumbnail()], &Limits::default()).map(|_| ())
}

/// Runs `f` and reports the largest allocation made meanwhile.
fn largest_allocation_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let result = f();
    (result, LARGEST.with(Cell::get))
}

/// Renders a thumbnail and reports the largest allocation made meanwhile.
fn largest_allocation(input: &[u8]) -> (Result<(), EngineError>, usize) {
    largest_allocation_of(|| thumb(input))
}

/// A gray PNG of the given size.
fn gray_png(width: u32, height: u32) -> Vec<u8> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    let pixels = vec![128u8; (width * height) as usize];
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(&pixels, width, height, image::ExtendedColorType::L8)
        .expect("encodes");
    out
}

fn wide(name: &str, width: u32, format: Format) -> Rendition {
    Rendition {
        name: name.into(),
        width: Some(width),
        height: None,
        fit: Fit::Inside,
        format,
        quality: 80,
        enlarge: true,
    }
}

fn gif_bomb() -> Vec<u8> {
    let mut g = b"GIF89a".to_vec();
    g.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0]); // 65535×65535, no palette
    g.extend_from_slice(&[0x2C, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 2, 2, 0x4C, 0x01, 0, 0x3B]);
    g
}

/// The orientation base JPEG with its SOF dimensions rewritten to 65000×65000.
fn jpeg_bomb() -> Vec<u8> {
    let mut j = fixture("orient_base.jpg");
    let sof = j.windows(2).position(|w| w == [0xFF, 0xC0]).expect("baseline SOF");
    j[sof + 5..sof + 9].copy_from_slice(&[0xFD, 0xE8, 0xFD, 0xE8]);
    j
}

/// A lossless WebP whose VP8L header declares 16384×16384 and whose data then stops.
fn webp_bomb() -> Vec<u8> {
    let size = (16383u32) | (16383 << 14);
    let mut chunk = vec![0x2F];
    chunk.extend_from_slice(&size.to_le_bytes());
    chunk.extend_from_slice(&[0; 16]);
    let mut w = b"RIFF".to_vec();
    w.extend_from_slice(&(4 + 8 + chunk.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WEBPVP8L");
    w.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
    w.extend_from_slice(&chunk);
    w
}

/// A little-endian TIFF whose only IFD declares a 60000×60000 RGB strip image.
fn tiff_bomb() -> Vec<u8> {
    let mut t = b"II*\0\x08\0\0\0".to_vec();
    let entries: [(u16, u16, u32, u32); 8] = [
        (256, 4, 1, 60_000), // ImageWidth
        (257, 4, 1, 60_000), // ImageLength
        (258, 3, 1, 8),      // BitsPerSample
        (262, 3, 1, 2),      // Photometric RGB
        (273, 4, 1, 200),    // StripOffsets
        (277, 3, 1, 3),      // SamplesPerPixel
        (278, 4, 1, 60_000), // RowsPerStrip
        (279, 4, 1, 16),     // StripByteCounts
    ];
    t.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (tag, kind, count, value) in entries {
        t.extend_from_slice(&tag.to_le_bytes());
        t.extend_from_slice(&kind.to_le_bytes());
        t.extend_from_slice(&count.to_le_bytes());
        t.extend_from_slice(&value.to_le_bytes());
    }
    t.extend_from_slice(&[0; 4]);
    t.resize(216, 0);
    t
}

#[test]
fn pixel_bombs_are_refused_from_the_header() {
    let bombs = [
        ("png", fixture("bomb.png")),
        ("gif", gif_bomb()),
        ("jpeg", jpeg_bomb()),
        ("webp", webp_bomb()),
        ("tiff", tiff_bomb()),
    ];
    for (name, bomb) in bombs {
        let (result, largest) = largest_allocation(&bomb);
        let err = result.expect_err(name);
        // The WebP one stops short of any image data, so a decoder may call it corrupt first.
        let refused =
            matches!(err, EngineError::TooLarge { .. }) || (name == "webp" && matches!(err, EngineError::Corrupt(_)));
        assert!(refused, "{name}: {err}");
        assert!(largest < 8 << 20, "{name}: allocated {largest} bytes before refusing");
    }
    let small = Limits { max_pixels: 1000, ..Limits::default() };
    let err = render(&fixture("orient_base.jpg"), &[Rendition::thumbnail()], &small).expect_err("over 1000 px");
    assert_eq!(err, EngineError::TooLarge { what: "pixels", actual: 96 * 64, limit: 1000 });
    let tiny = Limits { max_input_bytes: 10, ..Limits::default() };
    let err = render(&fixture("orient_base.jpg"), &[Rendition::thumbnail()], &tiny).expect_err("over 10 bytes");
    assert!(matches!(err, EngineError::TooLarge { what: "bytes", .. }));
}

#[test]
fn broken_inputs_are_classified() {
    let photo = fixture("../../../tests/fixtures/myphoto.jpg");
    let mut bad_crc = fixture("icc.png");
    bad_crc[29] ^= 0xFF; // inside the IHDR CRC
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("zero bytes", Vec::new(), "NotAnImage"),
        ("text", b"hello, this is not an image\n".to_vec(), "NotAnImage"),
        ("truncated jpeg", photo[..photo.len() / 2].to_vec(), "CorruptImage"),
        ("jpeg header only", photo[..300].to_vec(), "CorruptImage"),
        ("png bad crc", bad_crc, "CorruptImage"),
        ("heic", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic".to_vec(), "UnsupportedFormat"),
    ];
    for (what, input, code) in cases {
        let err = thumb(&input).expect_err(what);
        assert_eq!(err.code(), code, "{what}: {err}");
        let job: JobError = err.into();
        assert_eq!((job.class, job.code.as_str()), (ErrorClass::Permanent, code), "{what}");
    }
}

#[test]
fn mangled_files_never_panic() {
    let files = [
        "orient_6.jpg",
        "progressive.jpg",
        "cmyk.jpg",
        "ycck.jpg",
        "icc.png",
        "palette.png",
        "animated.gif",
        "animated.webp",
        "alpha_lossy.webp",
        "quadrants.bmp",
        "quadrants.tif",
        "camera.jpg",
    ];
    let mut seed = 0x2545_f491_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for file in files {
        let good = fixture(file);
        thumb(&good).unwrap_or_else(|e| panic!("{file} itself must render: {e}"));
        for cut in (1..good.len()).step_by(good.len() / 40 + 1) {
            let _ = thumb(&good[..cut]);
        }
        for _ in 0..60 {
            let mut bad = good.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % bad.len();
                bad[i] = next() as u8;
            }
            let _ = thumb(&bad);
        }
    }
}

#[test]
fn output_bombs_are_refused_from_the_plan() {
    // 16384 wide, height following: 16384 × 491 520 000 pixels, about 8 TB.
    let sliver = gray_png(1, 30_000);
    let r = wide("x", 16_384, Format::Jpeg);
    let (result, largest) = largest_allocation_of(|| render(&sliver, std::slice::from_ref(&r), &Limits::default()));
    let err = result.expect_err("an 8 TB output");
    assert!(matches!(err, EngineError::InvalidRendition(ref m) if m.contains("\"x\"")), "{err}");
    assert!(largest < 8 << 20, "allocated {largest} bytes before refusing");
    let job: JobError = err.into();
    assert_eq!(job.class, ErrorClass::Permanent);

    // One output within bounds, but too many of them together; and AVIF's own cap.
    let square = gray_png(64, 64);
    let big = |name: &str| Rendition { height: Some(6000), ..wide(name, 6000, Format::Jpeg) };
    let three = [big("a"), big("b"), big("c")];
    let err = render(&square, &three, &Limits::default()).expect_err("108 MP in all");
    assert!(matches!(err, EngineError::InvalidRendition(ref m) if m.contains("total")), "{err}");
    let err = render(&square, &[wide("a", 5000, Format::Avif)], &Limits::default()).expect_err("25 MP AVIF");
    assert!(matches!(err, EngineError::InvalidRendition(ref m) if m.contains("AVIF")), "{err}");
    let many: Vec<Rendition> = (0..17).map(|i| Rendition { name: format!("r{i}"), ..Rendition::thumbnail() }).collect();
    let err = render(&square, &many, &Limits::default()).expect_err("17 renditions");
    assert!(matches!(err, EngineError::InvalidRendition(_)), "{err}");
    // Within every limit it renders.
    let ok = render(&square, &[wide("a", 2000, Format::Jpeg), Rendition::thumbnail()], &Limits::default());
    assert_eq!(ok.map(|o| (o.outputs[0].width, o.outputs[0].height)), Ok((2000, 2000)));
}

/// A 64×64 PNG whose `iCCP` chunk inflates to 256 MiB of zeros.
fn icc_bomb() -> Vec<u8> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    let mut enc = image::codecs::png::PngEncoder::new(&mut out);
    enc.set_icc_profile(vec![0; 256 << 20]).expect("PNG takes a profile");
    enc.write_image(&[90; 64 * 64], 64, 64, image::ExtendedColorType::L8).expect("encodes");
    out
}

#[test]
fn metadata_bombs_are_dropped_unread() {
    let bomb = icc_bomb();
    assert!(bomb.len() < 1 << 20, "the bomb itself is small: {} bytes", bomb.len());
    let renditions =
        [Rendition::thumbnail(), Rendition { name: "w".into(), format: Format::Webp, ..Rendition::thumbnail() }];
    let (result, largest) = largest_allocation_of(|| render(&bomb, &renditions, &Limits::default()));
    let rendered = result.expect("the image itself is fine");
    assert!(largest < 32 << 20, "allocated {largest} bytes");
    for out in &rendered.outputs {
        assert!(out.bytes.len() < 1 << 20, "{}: {} bytes", out.rendition, out.bytes.len());
    }
    assert!(rendered.metadata.has_icc && rendered.metadata.icc_dropped);
    let json = serde_json::to_value(&rendered.metadata).expect("serialises");
    assert_eq!(json["iccDropped"], true);
}
