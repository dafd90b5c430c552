//! What a job asks the image engine to produce, and where each output goes.

use serde::{Deserialize, Serialize};

/// The most renditions one job may ask for.
pub const MAX_RENDITIONS: usize = 16;
/// The largest width or height a rendition may ask for.
pub const MAX_DIMENSION: u32 = 16_384;
/// The most pixels one output may have (40 MP). The engine refuses larger outputs before
/// allocating them; intake refuses boxes that enlarge past it.
pub const MAX_OUTPUT_PIXELS: u64 = 40_000_000;
/// The most output pixels one job may produce across its renditions (100 MP).
pub const MAX_JOB_OUTPUT_PIXELS: u64 = 100_000_000;
/// The most pixels an AVIF output may have (4096 × 4096): the encoder is slow, and a larger
/// AVIF would outlast a job's deadline.
pub const MAX_AVIF_OUTPUT_PIXELS: u64 = 4096 * 4096;
/// Outputs go under this prefix of the destination bucket.
pub const OUTPUT_PREFIX: &str = "resized/";

/// How a rendition fits its box.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Scale to fit inside the box, keeping the aspect ratio.
    #[default]
    Inside,
    /// Scale to cover the box, keeping the aspect ratio, and crop the overflow (centred).
    Cover,
    /// Stretch to exactly the box, ignoring the aspect ratio.
    Fill,
}

/// An output encoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JPEG, 4:2:0.
    #[default]
    Jpeg,
    /// PNG.
    Png,
    /// WebP.
    Webp,
    /// AVIF.
    Avif,
}

impl Format {
    /// The file extension outputs of this format get.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Avif => "avif",
        }
    }

    /// The MIME type outputs of this format are stored with.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Webp => "image/webp",
            Format::Avif => "image/avif",
        }
    }
}

/// One output a job asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rendition {
    /// Names the output (see [`output_key`]): 1–32 lowercase letters, digits and `-`. No `_`
    /// or `.`, so the name can always be told apart from the source's name before it.
    #[schema(pattern = "^[a-z0-9-]{1,32}$")]
    pub name: String,
    /// Box width in pixels; absent means "follow the height".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 16384)]
    pub width: Option<u32>,
    /// Box height in pixels; absent means "follow the width".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 16384)]
    pub height: Option<u32>,
    /// How the image fits the box.
    #[serde(default)]
    pub fit: Fit,
    /// Output encoding.
    #[serde(default)]
    pub format: Format,
    /// Encoder quality, 1–100 (ignored by lossless formats).
    #[serde(default = "default_quality")]
    #[schema(minimum = 1, maximum = 100, default = 80)]
    pub quality: u8,
    /// Allow scaling up when the source is smaller than the box.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enlarge: bool,
    /// Keep every frame of an animated GIF or WebP source (an animated WebP output, with the
    /// source's frame delays and loop count); otherwise, and for still sources, the output is
    /// the first frame. Only with `format: webp`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub animated: bool,
}

fn default_quality() -> u8 {
    80
}

impl Rendition {
    /// The default rendition: `thumbnail`, longest edge 512, JPEG q80, never enlarged.
    pub fn thumbnail() -> Self {
        Self {
            name: "thumbnail".into(),
            width: Some(512),
            height: Some(512),
            fit: Fit::Inside,
            format: Format::Jpeg,
            quality: 80,
            enlarge: false,
            animated: false,
        }
    }

    /// Checks the rendition is well formed.
    ///
    /// # Errors
    /// A sentence saying what is wrong, fit for an API error message.
    pub fn validate(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 32
            && self.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err(format!("rendition name {:?} must be 1-32 characters of a-z, 0-9 or '-'", self.name));
        }
        for (label, dim) in [("width", self.width), ("height", self.height)] {
            if let Some(d) = dim {
                if d == 0 || d > MAX_DIMENSION {
                    return Err(format!("rendition {:?}: {label} must be between 1 and {MAX_DIMENSION}", self.name));
                }
            }
        }
        match (self.width, self.height, self.fit) {
            (None, None, _) => {
                return Err(format!("rendition {:?} needs a width or a height", self.name));
            }
            (Some(_), Some(_), _) | (_, _, Fit::Inside) => {}
            _ => {
                return Err(format!("rendition {:?}: fit {:?} needs both width and height", self.name, self.fit));
            }
        }
        if !(1..=100).contains(&self.quality) {
            return Err(format!("rendition {:?}: quality must be between 1 and 100", self.name));
        }
        if self.animated && self.format != Format::Webp {
            return Err(format!(
                "rendition {:?}: animated needs format webp (the only animated output), not {}",
                self.name,
                format!("{:?}", self.format).to_lowercase()
            ));
        }
        if let Some(worst) = self.enlarged_box_pixels() {
            let cap = if self.format == Format::Avif { MAX_AVIF_OUTPUT_PIXELS } else { MAX_OUTPUT_PIXELS };
            if worst > cap {
                return Err(format!(
                    "rendition {:?}: an enlarged output could reach {worst} pixels (a missing side counts as \
                     {MAX_DIMENSION}); the limit is {cap}",
                    self.name
                ));
            }
        }
        Ok(())
    }

    /// The largest output an enlarging rendition can produce: its box, a missing side counted
    /// as [`MAX_DIMENSION`] (a narrow source stretches it that far). `None` without `enlarge`,
    /// where outputs never exceed the source and the engine's own checks bound them.
    pub fn enlarged_box_pixels(&self) -> Option<u64> {
        let side = |d: Option<u32>| u64::from(d.unwrap_or(MAX_DIMENSION));
        self.enlarge.then(|| side(self.width) * side(self.height))
    }
}

/// Checks a job's list of renditions: 1 to [`MAX_RENDITIONS`], each valid, names unique.
///
/// # Errors
/// A sentence saying what is wrong.
pub fn validate_list(list: &[Rendition]) -> Result<(), String> {
    if list.is_empty() || list.len() > MAX_RENDITIONS {
        return Err(format!("renditions must list 1 to {MAX_RENDITIONS} entries"));
    }
    for (i, r) in list.iter().enumerate() {
        r.validate()?;
        if list[..i].iter().any(|o| o.name == r.name) {
            return Err(format!("rendition name {:?} is used twice", r.name));
        }
    }
    Ok(())
}

/// The extension a source keeps out of its outputs' names: the seed project's `myphoto.jpg`
/// gives `myphoto_thumbnail.jpg`.
const PLAIN_EXTENSION: &str = ".jpg";

/// Splits a source key into its folder (with its trailing `/`, or empty), the base its outputs
/// are named after, and the separator between that base and a rendition's name.
///
/// A file named `<stem>.jpg` (a non-empty stem) gives its stem and `_`; any other file (another
/// extension, `.JPG`, none, a dot-file) gives its whole name and `.`. Rendition names hold
/// neither `_` nor `.`, so the last of either in an output key is the separator, and the
/// separator says whether `.jpg` was dropped: the source is always recoverable.
fn dir_base_separator(source_key: &str) -> (&str, &str, char) {
    let (dir, file) = match source_key.rfind('/') {
        Some(i) => source_key.split_at(i + 1),
        None => ("", source_key),
    };
    match file.strip_suffix(PLAIN_EXTENSION) {
        Some(stem) if !stem.is_empty() => (dir, stem, '_'),
        _ => (dir, file, '.'),
    }
}

/// The key of a rendition's output: `resized/<folder of source>/<base><sep><rendition>.<ext>`,
/// where a source `<stem>.jpg` gives base `<stem>` and separator `_`, and any other source
/// file gives its whole name and `.`:
///
/// | source | rendition | output |
/// | --- | --- | --- |
/// | `myphoto.jpg` | `thumbnail` (JPEG) | `resized/myphoto_thumbnail.jpg` |
/// | `photos/a.jpg` | `thumbnail` (JPEG) | `resized/photos/a_thumbnail.jpg` |
/// | `a.png` | `thumbnail` (JPEG) | `resized/a.png.thumbnail.jpg` |
/// | `a.png.jpg` | `thumbnail` (JPEG) | `resized/a.png_thumbnail.jpg` |
/// | `scan` | `small` (WebP) | `resized/scan.small.webp` |
///
/// Injective for valid rendition names (no `_`, no `.`): two different sources, or two
/// renditions of different names or formats, never write the same key. Deterministic, so a
/// redelivered job rewrites the same keys.
pub fn output_key(source_key: &str, rendition: &Rendition) -> String {
    let (dir, base, sep) = dir_base_separator(source_key);
    format!("{OUTPUT_PREFIX}{dir}{base}{sep}{}.{}", rendition.name, rendition.format.extension())
}

/// The key of the metadata sidecar written beside the renditions of a job that asks for it
/// ([`Job::sidecar`](crate::message::Job::sidecar)): as [`output_key`] with
/// `metadata.json` in place of `<rendition>.<ext>` (`resized/myphoto_metadata.json`,
/// `resized/a.png.metadata.json`). Injective too, and never a rendition's key: no rendition
/// format ends in `.json`.
pub fn sidecar_key(source_key: &str) -> String {
    let (dir, base, sep) = dir_base_separator(source_key);
    format!("{OUTPUT_PREFIX}{dir}{base}{sep}metadata.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_keys_follow_the_seed_project() {
        let t = Rendition::thumbnail();
        assert_eq!(output_key("myphoto.jpg", &t), "resized/myphoto_thumbnail.jpg");
        assert_eq!(output_key("photos/a.jpg", &t), "resized/photos/a_thumbnail.jpg");
        assert_eq!(output_key("a/b/c.d.jpg", &t), "resized/a/b/c.d_thumbnail.jpg");
        assert_eq!(output_key("a/b/c.d.png", &t), "resized/a/b/c.d.png.thumbnail.jpg");
        assert_eq!(output_key("noext", &t), "resized/noext.thumbnail.jpg");
        assert_eq!(output_key("dir/.hidden", &t), "resized/dir/.hidden.thumbnail.jpg");
        assert_eq!(output_key("dir/.jpg", &t), "resized/dir/.jpg.thumbnail.jpg");
        assert_eq!(output_key("UPPER.JPG", &t), "resized/UPPER.JPG.thumbnail.jpg");
        assert_eq!(sidecar_key("a/photo.jpg"), "resized/a/photo_metadata.json");
        assert_eq!(sidecar_key("a/photo.png"), "resized/a/photo.png.metadata.json");
        let webp = Rendition { name: "w".into(), format: Format::Webp, ..t };
        assert_eq!(output_key("x.jpg", &webp), "resized/x_w.webp");
    }

    fn named(name: &str, format: Format) -> Rendition {
        Rendition { name: name.into(), format, ..Rendition::thumbnail() }
    }

    #[test]
    fn different_sources_never_share_an_output_key() {
        let jpeg = |name: &str| named(name, Format::Jpeg);
        // Each pair collided under `<stem>_<rendition>.<ext>` (or would under a looser rule).
        let pairs = [
            (("a.jpg", jpeg("thumbnail")), ("a.png", jpeg("thumbnail"))),
            (("a.jpg", jpeg("thumbnail")), ("a", jpeg("thumbnail"))),
            (("a.jpg", jpeg("thumbnail")), ("a.jpeg", jpeg("thumbnail"))),
            (("a.jpg", jpeg("thumbnail")), ("a.JPG", jpeg("thumbnail"))),
            (("a.png", jpeg("thumbnail")), ("a.png.jpg", jpeg("thumbnail"))),
            (("c.d.jpg", jpeg("thumbnail")), ("c.d", jpeg("thumbnail"))),
            (("x_small.jpg", jpeg("thumbnail")), ("x.jpg", jpeg("small-thumbnail"))),
            (("x-small.jpg", jpeg("thumbnail")), ("x.jpg", jpeg("small-thumbnail"))),
            (("x.small.jpg", jpeg("thumbnail")), ("x.jpg", jpeg("small-thumbnail"))),
            (("x.thumbnail", jpeg("small")), ("x", jpeg("thumbnail-small"))),
            (("d/a.jpg", jpeg("t")), ("d_a.jpg", jpeg("t"))),
            (("a.jpg", named("t", Format::Jpeg)), ("a.jpg", named("t", Format::Png))),
        ];
        for ((key_a, r_a), (key_b, r_b)) in pairs {
            let (a, b) = (output_key(key_a, &r_a), output_key(key_b, &r_b));
            assert_ne!(a, b, "{key_a} + {} and {key_b} + {}", r_a.name, r_b.name);
        }
        for (a, b) in [("a.jpg", "a.png"), ("a.jpg", "a"), ("a.png", "a.png.jpg"), ("c.d.jpg", "c.d")] {
            assert_ne!(sidecar_key(a), sidecar_key(b), "{a} and {b}");
        }
        // The sidecar is not a rendition, even one named `metadata`.
        assert_ne!(sidecar_key("a.jpg"), output_key("a.jpg", &jpeg("metadata")));
        assert!(validate_list(&[jpeg("small_thumbnail")]).is_err(), "'_' would make the separator ambiguous");
        assert!(validate_list(&[jpeg("small.thumbnail")]).is_err());
    }

    #[test]
    fn output_keys_are_injective_over_a_small_alphabet() {
        // Every key of up to 5 of these pieces, with every name and two formats.
        let pieces = ["a", ".", "_", "/", "-", ".jpg", ".png", "metadata"];
        let mut keys = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..5 {
            frontier = frontier.iter().flat_map(|k| pieces.iter().map(move |p| format!("{k}{p}"))).collect();
            keys.extend(frontier.iter().cloned());
        }
        keys.sort();
        keys.dedup();
        let names = ["a", "b", "a-b", "ab", "thumbnail", "metadata", "jpg", "png"];
        let renditions: Vec<Rendition> = names
            .iter()
            .flat_map(|n| [named(n, Format::Jpeg), named(n, Format::Png)])
            .inspect(|r| assert!(r.validate().is_ok(), "{r:?}"))
            .collect();
        let mut seen: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        for key in keys.iter().filter(|k| !k.is_empty()) {
            for r in &renditions {
                let origin = format!("{key:?} + {} ({:?})", r.name, r.format);
                if let Some(other) = seen.insert(output_key(key, r), origin.clone()) {
                    panic!("{origin} and {other} write {}", output_key(key, r));
                }
            }
            let origin = format!("{key:?} sidecar");
            if let Some(other) = seen.insert(sidecar_key(key), origin.clone()) {
                panic!("{origin} and {other} write {}", sidecar_key(key));
            }
        }
        assert!(seen.len() > 500_000, "the alphabet covers {} keys", seen.len());
    }

    #[test]
    fn validation_rejects_bad_renditions() {
        let ok = Rendition::thumbnail();
        assert!(ok.validate().is_ok());
        let cases = [
            Rendition { name: "Bad Name".into(), ..ok.clone() },
            Rendition { name: "under_score".into(), ..ok.clone() },
            Rendition { name: "dot.ted".into(), ..ok.clone() },
            Rendition { width: None, height: None, ..ok.clone() },
            Rendition { width: Some(0), ..ok.clone() },
            Rendition { width: Some(MAX_DIMENSION + 1), ..ok.clone() },
            Rendition { quality: 0, ..ok.clone() },
            Rendition { height: None, fit: Fit::Cover, ..ok.clone() },
        ];
        for case in cases {
            assert!(case.validate().is_err(), "{case:?} should be refused");
        }
        assert!(validate_list(&[]).is_err());
        assert!(validate_list(&[ok.clone(), ok.clone()]).is_err());
        assert!(validate_list(&[ok]).is_ok());
    }

    #[test]
    fn enlarging_boxes_are_bounded() {
        let wide = |w: u32| Rendition {
            name: "x".into(),
            width: Some(w),
            height: None,
            enlarge: true,
            ..Rendition::thumbnail()
        };
        // 16384 wide from a 1×30000 source would be 16384 × 491 520 000 pixels.
        assert!(wide(MAX_DIMENSION).validate().is_err());
        assert!(wide(2441).validate().is_ok(), "2441 × 16384 is just under 40 MP");
        assert!(wide(2442).validate().is_err());
        let boxed = Rendition { height: Some(MAX_DIMENSION), enlarge: false, ..wide(MAX_DIMENSION) };
        assert!(boxed.validate().is_ok(), "without enlarge the output never exceeds the source");
        assert!(Rendition { enlarge: true, ..boxed.clone() }.validate().is_err());
        let avif = Rendition { width: Some(4096), height: Some(4096), format: Format::Avif, ..wide(1) };
        assert!(avif.validate().is_ok());
        assert!(Rendition { width: Some(4097), ..avif }.validate().is_err());
        let many: Vec<Rendition> =
            (0..=MAX_RENDITIONS).map(|i| Rendition { name: format!("r{i}"), ..boxed.clone() }).collect();
        assert!(validate_list(&many[..MAX_RENDITIONS]).is_ok());
        assert!(validate_list(&many).is_err());
    }

    #[test]
    fn only_webp_renditions_may_be_animated() {
        let webp = Rendition { animated: true, ..named("anim", Format::Webp) };
        assert_eq!(webp.validate(), Ok(()));
        for format in [Format::Jpeg, Format::Png, Format::Avif] {
            let err = Rendition { format, ..webp.clone() }.validate().expect_err("refused");
            assert!(err.contains("animated needs format webp"), "{format:?}: {err}");
        }
        let parsed: Rendition =
            serde_json::from_str(r#"{"name":"a","width":64,"format":"webp","animated":true}"#).expect("parses");
        assert!(parsed.animated);
        assert_eq!(serde_json::to_value(&parsed).expect("json")["animated"], true);
        // Left out when false, so jobs that do not ask keep the ids they had.
        let still = serde_json::to_value(Rendition::thumbnail()).expect("json");
        assert!(still.get("animated").is_none(), "{still}");
        assert!(!serde_json::from_value::<Rendition>(still).expect("parses").animated);
    }

    #[test]
    fn defaults_fill_in_from_json() {
        let r: Rendition = serde_json::from_str(r#"{"name":"small","width":100}"#).expect("parses");
        assert_eq!((r.fit, r.format, r.quality, r.height), (Fit::Inside, Format::Jpeg, 80, None));
        assert!(serde_json::from_str::<Rendition>(r#"{"name":"x","width":1,"bogus":1}"#).is_err());
    }
}
