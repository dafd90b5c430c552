//! The metadata policy: `strip` writes no Exif and converts a colour profile away; `keep`
//! carries only the named fields (read back with an Exif reader from every output format),
//! never location, maker notes or serial numbers.

use exif::experimental::Writer;
use exif::{Field, In, Rational, Tag, Value};
use image::{ImageDecoder, ImageEncoder};
use protocol::metadata::{KeptMetadata, MetadataPolicy};
use protocol::rendition::{Fit, Format, Rendition};
use worker::image::{Limits, MemoryBudget, Rendered, render_within};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn ascii(tag: Tag, ifd: In, text: &str) -> Field {
    Field { tag, ifd_num: ifd, value: Value::Ascii(vec![text.as_bytes().to_vec()]) }
}

/// A JPEG photo whose Exif carries credits, a capture time, a camera serial number, a maker
/// note, a thumbnail-free IFD1 and a GPS position.
fn credited_photo() -> Vec<u8> {
    with_exif(&credits())
}

/// The Exif fields of [`credited_photo`].
fn credits() -> [Field; 9] {
    [
        ascii(Tag::Copyright, In::PRIMARY, "© 2026 Ada Lovelace"),
        ascii(Tag::Artist, In::PRIMARY, "Ada Lovelace"),
        ascii(Tag::Make, In::PRIMARY, "ExampleCam"),
        ascii(Tag::BodySerialNumber, In::PRIMARY, "SN-0042-SECRET"),
        ascii(Tag::DateTimeOriginal, In::PRIMARY, "2026:05:01 10:20:30"),
        ascii(Tag::OffsetTimeOriginal, In::PRIMARY, "+02:00"),
        Field { tag: Tag::MakerNote, ifd_num: In::PRIMARY, value: Value::Undefined(b"MAKERNOTE-PRIVATE".to_vec(), 0) },
        ascii(Tag::GPSLatitudeRef, In::PRIMARY, "N"),
        Field {
            tag: Tag::GPSLatitude,
            ifd_num: In::PRIMARY,
            value: Value::Rational(vec![Rational { num: 48, denom: 1 }, Rational { num: 51, denom: 1 }]),
        },
    ]
}

/// An Exif block (TIFF structure) of `fields`.
fn exif_block(fields: &[Field]) -> Vec<u8> {
    let mut writer = Writer::new();
    for f in fields {
        writer.push_field(f);
    }
    let mut exif = std::io::Cursor::new(Vec::new());
    writer.write(&mut exif, false).expect("an Exif block");
    exif.into_inner()
}

/// The sample photo with an Exif block of `fields` in its APP1.
fn with_exif(fields: &[Field]) -> Vec<u8> {
    let exif = exif_block(fields);
    let jpeg = fixture("orient_base.jpg");
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((2 + 6 + exif.len()) as u16).to_be_bytes());
    out.extend_from_slice(b"Exif\0\0");
    out.extend_from_slice(&exif);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn renditions() -> Vec<Rendition> {
    [("j", Format::Jpeg), ("p", Format::Png), ("w", Format::Webp)]
        .map(|(name, format)| Rendition {
            name: name.into(),
            width: Some(48),
            height: None,
            fit: Fit::Inside,
            format,
            quality: 90,
            enlarge: false,
            animated: false,
        })
        .to_vec()
}

fn render(input: &[u8], policy: &str) -> Rendered {
    let policy: MetadataPolicy = policy.parse().expect("a policy");
    render_within(input, &renditions(), &policy, &Limits::default(), &MemoryBudget::unlimited()).expect("renders")
}

/// The Exif of an encoded output, read as an Exif reader reads files.
fn exif_of(bytes: &[u8]) -> Option<exif::Exif> {
    exif::Reader::new().read_from_container(&mut std::io::Cursor::new(bytes)).ok()
}

fn text(exif: &exif::Exif, tag: Tag) -> Option<String> {
    let field = exif.get_field(tag, In::PRIMARY)?;
    let Value::Ascii(parts) = &field.value else { return None };
    Some(String::from_utf8_lossy(&parts[0]).into_owned())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_default_strips_everything() {
    let rendered = render(&credited_photo(), "strip");
    assert!(rendered.metadata.has_gps && rendered.metadata.has_exif, "the source has both");
    assert!(rendered.metadata.kept.is_empty());
    for out in &rendered.outputs {
        assert!(exif_of(&out.bytes).is_none(), "{}: no Exif at all", out.rendition);
        for secret in [&b"Ada"[..], b"SN-0042", b"MAKERNOTE", b"ExampleCam"] {
            assert!(!contains(&out.bytes, secret), "{}: {:?} leaked", out.rendition, String::from_utf8_lossy(secret));
        }
    }
    let json = serde_json::to_value(&rendered.metadata).expect("json");
    assert!(json.get("kept").is_none(), "nothing kept, nothing said: {json}");
}

#[test]
fn keep_copyright_carries_the_copyright_and_no_location() {
    let rendered = render(&credited_photo(), "keep:copyright");
    assert_eq!(rendered.metadata.kept, [KeptMetadata::Copyright]);
    for out in &rendered.outputs {
        let exif = exif_of(&out.bytes).unwrap_or_else(|| panic!("{}: an Exif block", out.rendition));
        assert_eq!(text(&exif, Tag::Copyright).as_deref(), Some("© 2026 Ada Lovelace"), "{}", out.rendition);
        let tags: Vec<Tag> = exif.fields().map(|f| f.tag).collect();
        assert_eq!(tags, [Tag::Copyright], "{}: only the copyright", out.rendition);
        for secret in [&b"SN-0042"[..], b"MAKERNOTE", b"ExampleCam"] {
            assert!(!contains(&out.bytes, secret), "{}: {:?} leaked", out.rendition, String::from_utf8_lossy(secret));
        }
    }
    let json = serde_json::to_value(&rendered.metadata).expect("json");
    assert_eq!(json["kept"], serde_json::json!(["copyright"]), "the sidecar says what was kept");
}

#[test]
fn keep_credits_and_capture_time_in_every_format() {
    let rendered = render(&credited_photo(), "keep:copyright,artist,captureTime,icc");
    // The source has no profile: `icc` is asked for but not reported as kept.
    assert_eq!(rendered.metadata.kept, [KeptMetadata::Copyright, KeptMetadata::Artist, KeptMetadata::CaptureTime]);
    for out in &rendered.outputs {
        let exif = exif_of(&out.bytes).unwrap_or_else(|| panic!("{}: an Exif block", out.rendition));
        assert_eq!(text(&exif, Tag::Artist).as_deref(), Some("Ada Lovelace"), "{}", out.rendition);
        assert_eq!(text(&exif, Tag::DateTimeOriginal).as_deref(), Some("2026:05:01 10:20:30"), "{}", out.rendition);
        assert_eq!(text(&exif, Tag::OffsetTimeOriginal).as_deref(), Some("+02:00"), "{}", out.rendition);
        assert!(exif.fields().all(|f| f.tag.context() != exif::Context::Gps), "{}: no GPS", out.rendition);
        assert!(text(&exif, Tag::BodySerialNumber).is_none() && exif.get_field(Tag::MakerNote, In::PRIMARY).is_none());
    }
    // The outputs still decode as images of the asked size.
    let jpeg = turbojpeg::decompress(&rendered.outputs[0].bytes, turbojpeg::PixelFormat::RGB).expect("decodes");
    assert_eq!(jpeg.width, 48);
    let webp = image::load_from_memory_with_format(&rendered.outputs[2].bytes, image::ImageFormat::WebP);
    assert_eq!(webp.expect("a valid WebP").width(), 48);
}

#[test]
fn a_file_time_is_kept_as_a_file_time_not_promoted_to_a_capture_time() {
    let photo = with_exif(&[ascii(Tag::DateTime, In::PRIMARY, "2026:05:02 08:00:00")]);
    let rendered = render(&photo, "keep:captureTime");
    assert_eq!(rendered.metadata.kept, [KeptMetadata::CaptureTime]);
    let exif = exif_of(&rendered.outputs[0].bytes).expect("an Exif block");
    assert_eq!(text(&exif, Tag::DateTime).as_deref(), Some("2026:05:02 08:00:00"));
    assert!(exif.get_field(Tag::DateTimeOriginal, In::PRIMARY).is_none());
}

/// A 16×16 PNG of one colour with a Display P3 profile.
fn p3_png(rgb: [u8; 3]) -> (Vec<u8>, Vec<u8>) {
    let icc = moxcms::ColorProfile::new_display_p3().encode().expect("a profile");
    let data: Vec<u8> = std::iter::repeat_n(rgb, 16 * 16).flatten().collect();
    let mut png = Vec::new();
    let mut enc = image::codecs::png::PngEncoder::new(&mut png);
    enc.set_icc_profile(icc.clone()).expect("PNG takes a profile");
    enc.write_image(&data, 16, 16, image::ExtendedColorType::Rgb8).expect("encodes");
    (png, icc)
}

fn centre(png: &[u8]) -> [u8; 3] {
    let img = image::load_from_memory_with_format(png, image::ImageFormat::Png).expect("decodes").to_rgb8();
    img.get_pixel(img.width() / 2, img.height() / 2).0
}

fn png_icc(png: &[u8]) -> Option<Vec<u8>> {
    let mut dec = image::codecs::png::PngDecoder::new(std::io::Cursor::new(png)).expect("png");
    dec.icc_profile().expect("reads")
}

#[test]
fn strip_converts_a_wide_gamut_profile_to_srgb_and_keep_icc_embeds_it() {
    // P3 (200, 60, 40) is a red more saturated than sRGB can say with the same numbers.
    let (input, icc) = p3_png([200, 60, 40]);
    let stripped = render(&input, "strip");
    let png = &stripped.outputs[1].bytes;
    assert_eq!(png_icc(png), None, "no profile written");
    let [r, g, b] = centre(png);
    assert!(r > 210 && g < 55 && b < 35, "converted to sRGB, more saturated in sRGB numbers: {:?}", [r, g, b]);
    assert!(stripped.metadata.has_icc && stripped.metadata.kept.is_empty());

    let kept = render(&input, "keep:icc");
    let png = &kept.outputs[1].bytes;
    assert_eq!(png_icc(png).as_deref(), Some(icc.as_slice()), "the profile travels unchanged");
    let [r, g, b] = centre(png);
    assert!(r.abs_diff(200) <= 1 && g.abs_diff(60) <= 1 && b.abs_diff(40) <= 1, "pixels untouched: {:?}", [r, g, b]);
    assert_eq!(kept.metadata.kept, [KeptMetadata::Icc]);
}

#[test]
fn an_srgb_profile_is_dropped_without_changing_the_colours() {
    let input = fixture("icc.png");
    let stripped = render(&input, "strip");
    let kept = render(&input, "keep:icc");
    assert_eq!(png_icc(&stripped.outputs[1].bytes), None);
    assert!(png_icc(&kept.outputs[1].bytes).is_some());
    let rgb = |png: &[u8]| image::load_from_memory(png).expect("decodes").to_rgb8();
    let (stripped, kept) = (rgb(&stripped.outputs[1].bytes), rgb(&kept.outputs[1].bytes));
    assert_eq!(stripped.dimensions(), kept.dimensions());
    let worst = stripped.as_raw().iter().zip(kept.as_raw()).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0);
    assert!(worst <= 2, "sRGB to sRGB changes nothing but rounding: worst sample off by {worst}");
}

/// The animated WebP fixture (two frames) with an `EXIF` chunk of `fields`.
fn animated_webp_with_exif(fields: &[Field]) -> Vec<u8> {
    let mut webp = fixture("animated.webp");
    assert_eq!(&webp[12..16], b"VP8X", "an animation is in the extended layout");
    webp[20] |= 0x08;
    let exif = exif_block(fields);
    webp.extend_from_slice(b"EXIF");
    webp.extend_from_slice(&(exif.len() as u32).to_le_bytes());
    webp.extend_from_slice(&exif);
    if exif.len() % 2 == 1 {
        webp.push(0);
    }
    let riff = (webp.len() - 8) as u32;
    webp[4..8].copy_from_slice(&riff.to_le_bytes());
    webp
}

#[test]
fn an_animated_output_carries_the_kept_fields_too() {
    let input = animated_webp_with_exif(&credits());
    let animated = Rendition {
        name: "a".into(),
        width: Some(20),
        height: None,
        fit: Fit::Inside,
        format: Format::Webp,
        quality: 90,
        enlarge: false,
        animated: true,
    };
    let render = |policy: &str| {
        let policy: MetadataPolicy = policy.parse().expect("a policy");
        render_within(&input, std::slice::from_ref(&animated), &policy, &Limits::default(), &MemoryBudget::unlimited())
            .expect("renders")
    };
    let kept = render("keep:copyright");
    let out = &kept.outputs[0].bytes;
    let frames = image::codecs::webp::WebPDecoder::new(std::io::Cursor::new(out)).expect("a WebP");
    assert!(frames.has_animation(), "still animated");
    assert_eq!(image::AnimationDecoder::into_frames(frames).count(), 2, "both frames");
    let exif = exif_of(out).expect("an Exif block");
    assert_eq!(text(&exif, Tag::Copyright).as_deref(), Some("© 2026 Ada Lovelace"));
    let tags: Vec<Tag> = exif.fields().map(|f| f.tag).collect();
    assert_eq!(tags, [Tag::Copyright], "only the copyright");
    for secret in [&b"SN-0042"[..], b"MAKERNOTE", b"ExampleCam"] {
        assert!(!contains(out, secret), "{:?} leaked", String::from_utf8_lossy(secret));
    }
    assert_eq!(kept.metadata.kept, [KeptMetadata::Copyright]);

    let stripped = render("strip");
    assert!(exif_of(&stripped.outputs[0].bytes).is_none(), "strip writes no Exif into an animation either");
}
