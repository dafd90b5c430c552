//! The image engine: bytes and a list of renditions in, encoded outputs and source metadata
//! out. Pure and synchronous; callers run it on a blocking thread.
//!
//! Layout:
//! - [`detect`]: format from magic bytes.
//! - [`decode`]: header probe, limit checks, decoding (`jpeg` for JPEG via libjpeg-turbo).
//! - [`geometry`]: fit modes, crops, orientation mapping, DCT shrink choice.
//! - `webp_native`: still WebP through libwebp with scaled decoding.
//! - `heif`: HEIF/HEIC and AVIF through libheif (the `heif` feature).
//! - `resize`, `pixels`, `encode`: Lanczos3 resampling, orientation/flattening, encoders.
//! - [`metadata`]: the [`SourceMetadata`] sidecar and Exif parsing; `keep`: what of it the
//!   outputs carry, by the job's metadata policy.
//! - [`budget`]: the memory budget renders share, and each render's peak estimate.
//! - `animation`: animated GIF/WebP to animated WebP, for renditions that ask.

mod animation;
pub mod budget;
mod container;
pub mod decode;
pub mod detect;
mod encode;
mod error;
pub mod geometry;
mod heif;
mod jpeg;
mod keep;
pub mod metadata;
pub mod pixels;
mod resize;
mod webp_native;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use pipeline_core::telemetry;
use protocol::Rendition;
use protocol::metadata::MetadataPolicy;
use protocol::rendition::{Format, MAX_AVIF_OUTPUT_PIXELS, MAX_JOB_OUTPUT_PIXELS, MAX_OUTPUT_PIXELS, MAX_RENDITIONS};

pub use budget::MemoryBudget;
pub use detect::SourceFormat;
pub use error::ImageError;
pub use metadata::SourceMetadata;

/// Caps on what a single input may declare, checked from its header before decoding, and on
/// what its renditions may produce, checked from their plans before any pixel is allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted input, in bytes.
    pub max_input_bytes: u64,
    /// Largest accepted width × height.
    pub max_pixels: u64,
    /// Largest accepted width or height.
    pub max_dimension: u32,
    /// Most renditions one job may ask for.
    pub max_renditions: usize,
    /// Largest width × height of one output.
    pub max_output_pixels: u64,
    /// Largest sum of width × height over one job's outputs.
    pub max_job_output_pixels: u64,
    /// Largest width × height of one AVIF output (the encoder is slow).
    pub max_avif_pixels: u64,
    /// Most frames an animated rendition may take from its source. Their pixels together
    /// (frames × canvas) are held to `max_pixels`, the pixels a still may decode.
    pub max_frames: u64,
}

impl Default for Limits {
    /// Inputs: 100 MiB, 100 megapixels, 30 000 px a side. Outputs: the intake caps of
    /// [`protocol::rendition`] (16 renditions, 40 MP each, 100 MP a job, AVIF 4096²).
    /// Animations: 10 000 frames.
    fn default() -> Self {
        Self {
            max_input_bytes: 100 << 20,
            max_pixels: 100_000_000,
            max_dimension: 30_000,
            max_renditions: MAX_RENDITIONS,
            max_output_pixels: MAX_OUTPUT_PIXELS,
            max_job_output_pixels: MAX_JOB_OUTPUT_PIXELS,
            max_avif_pixels: MAX_AVIF_OUTPUT_PIXELS,
            max_frames: 10_000,
        }
    }
}

/// One encoded rendition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// The rendition's name.
    pub rendition: String,
    /// The encoded file.
    pub bytes: Vec<u8>,
    /// Its MIME type.
    pub content_type: &'static str,
    /// Output width in pixels (upright).
    pub width: u32,
    /// Output height in pixels (upright).
    pub height: u32,
}

/// Everything one source produced.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// One output per requested rendition, in request order.
    pub outputs: Vec<Encoded>,
    /// Facts about the source.
    pub metadata: SourceMetadata,
    /// The memory the render reserved: its [`budget::peak_estimate`].
    pub reserved: u64,
}

fn check_limits(width: u32, height: u32, limits: &Limits) -> Result<(), ImageError> {
    let too_large = |what, actual: u64, limit: u64| ImageError::TooLarge { what, actual, limit };
    let max_dim = u64::from(limits.max_dimension);
    if u64::from(width) > max_dim {
        return Err(too_large("width", width.into(), max_dim));
    }
    if u64::from(height) > max_dim {
        return Err(too_large("height", height.into(), max_dim));
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(too_large("pixels", pixels, limits.max_pixels));
    }
    if width == 0 || height == 0 {
        return Err(ImageError::Corrupt(format!("header declares a {width}×{height} image")));
    }
    Ok(())
}

/// Checks the planned outputs against the output limits, before any of them is allocated.
fn check_outputs(renditions: &[Rendition], plans: &[geometry::Plan], limits: &Limits) -> Result<(), ImageError> {
    let mut total = 0u64;
    for (r, p) in renditions.iter().zip(plans) {
        let pixels = u64::from(p.out_w) * u64::from(p.out_h);
        let (cap, kind) = if r.format == Format::Avif {
            (limits.max_avif_pixels, "an AVIF output")
        } else {
            (limits.max_output_pixels, "an output")
        };
        if pixels > cap {
            return Err(ImageError::InvalidRendition(format!(
                "rendition {:?} would be {}×{} = {pixels} pixels from this image; {kind} may have at most {cap}",
                r.name, p.out_w, p.out_h
            )));
        }
        total += pixels;
    }
    if total > limits.max_job_output_pixels {
        return Err(ImageError::InvalidRendition(format!(
            "the renditions would total {total} pixels from this image; a job may produce at most {}",
            limits.max_job_output_pixels
        )));
    }
    Ok(())
}

/// Runs `f`, turning a panic inside a decoder into a [`ImageError::Corrupt`].
fn isolated<T>(what: &str, f: impl FnOnce() -> Result<T, ImageError>) -> Result<T, ImageError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(ImageError::Corrupt(format!("{what} failed: {msg}")))
    })
}

fn metadata_of(p: &decode::Probe) -> SourceMetadata {
    let swap = geometry::swaps_axes(p.orientation);
    let exif = p.exif.clone().unwrap_or_default();
    SourceMetadata {
        format: p.format.name().into(),
        width: p.width,
        height: p.height,
        upright_width: if swap { p.height } else { p.width },
        upright_height: if swap { p.width } else { p.height },
        orientation: p.orientation,
        color_space: p.color_space.into(),
        bit_depth: p.bit_depth,
        has_alpha: p.has_alpha,
        has_icc: p.icc.is_some() || p.icc_dropped,
        icc_dropped: p.icc_dropped,
        has_exif: p.exif.is_some(),
        has_xmp: p.has_xmp,
        has_gps: exif.has_gps || p.xmp_gps,
        progressive: p.progressive,
        camera_make: exif.make,
        camera_model: exif.model,
        capture_time: exif.capture_time,
        kept: Vec::new(),
    }
}

/// Decodes `input` once and produces every rendition from it.
///
/// Never panics: decoding runs under `catch_unwind`, and the limits are checked from the header
/// and the renditions' plans before any pixel buffer is allocated.
///
/// # Errors
/// An [`ImageError`], all of them permanent: not an image, unsupported, corrupt, over the
/// limits, or an encoder failure.
pub fn render(input: &[u8], renditions: &[Rendition], limits: &Limits) -> Result<Rendered, ImageError> {
    render_within(input, renditions, &MetadataPolicy::Strip, limits, &MemoryBudget::unlimited())
}

/// [`render`] with a metadata policy, within a memory budget shared with other renders: once
/// the header is read and
/// the renditions planned, and before any pixel buffer is allocated, the render reserves its
/// [`budget::peak_estimate`], waiting for room, and holds it until it returns.
///
/// # Errors
/// As [`render`]; also [`ImageError::TooLarge`] (`memory`) when the estimate alone exceeds
/// the whole budget.
pub fn render_within(
    input: &[u8],
    renditions: &[Rendition],
    metadata: &MetadataPolicy,
    limits: &Limits,
    budget: &MemoryBudget,
) -> Result<Rendered, ImageError> {
    if input.len() as u64 > limits.max_input_bytes {
        return Err(ImageError::TooLarge { what: "bytes", actual: input.len() as u64, limit: limits.max_input_bytes });
    }
    if renditions.is_empty() {
        return Err(ImageError::InvalidRendition("no rendition requested".into()));
    }
    if renditions.len() > limits.max_renditions {
        return Err(ImageError::InvalidRendition(format!(
            "{} renditions requested; a job may ask for at most {}",
            renditions.len(),
            limits.max_renditions
        )));
    }
    let format = detect::detect(input)?;
    let animation = animation::Animation::scan(input, format, renditions, limits)?;
    let mut reserved = None;
    let decoding = Instant::now();
    let decoded = isolated("decoding", || {
        decode::decode(input, format, limits, |probe| {
            check_limits(probe.width, probe.height, limits)?;
            let plans = renditions
                .iter()
                .map(|r| geometry::plan(r, probe.width, probe.height, probe.orientation))
                .collect::<Result<Vec<_>, _>>()?;
            check_outputs(renditions, &plans, limits)?;
            let animating = animation.as_ref().map_or(Ok(0), |a| a.check(renditions, &plans, limits))?;
            reserved = Some(budget.reserve(budget::peak_estimate(input.len(), probe, renditions, &plans) + animating)?);
            Ok(plans)
        })
    })?;
    telemetry::stage("decode", decoding.elapsed().as_secs_f64());
    let probe = &decoded.probe;
    let carried = keep::Carried::new(probe, metadata);
    let mut resizer = fast_image_resize::Resizer::new();
    let mut outputs = Vec::with_capacity(renditions.len());
    for (r, plan) in renditions.iter().zip(&decoded.plans) {
        let out = isolated("rendering", || {
            if let Some(animation) = animation.as_ref().filter(|_| r.animated) {
                let animating = Instant::now();
                let out = animation.render(input, r, plan, probe.orientation, &carried, limits);
                telemetry::stage("animate", animating.elapsed().as_secs_f64());
                return out;
            }
            let resizing = Instant::now();
            let px = resize::resize(&mut resizer, &decoded.pixels, plan, probe.width, probe.height)?;
            let px = px.orient(probe.orientation)?;
            telemetry::stage("resize", resizing.elapsed().as_secs_f64());
            let (width, height) = (px.width, px.height);
            let encoding = Instant::now();
            let (px, icc) = carried.prepare(px, r.format);
            let bytes = encode::encode(px, r, icc, carried.exif.as_deref())?;
            telemetry::stage("encode", encoding.elapsed().as_secs_f64());
            Ok(Encoded { rendition: r.name.clone(), bytes, content_type: r.format.content_type(), width, height })
        })?;
        outputs.push(out);
    }
    let reserved = reserved.map_or(0, |r| r.bytes());
    let metadata = SourceMetadata { kept: carried.kept, ..metadata_of(probe) };
    Ok(Rendered { outputs, metadata, reserved })
}
