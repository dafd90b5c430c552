//! Animated GIF and WebP sources to animated WebP, for renditions that ask (`"animated": true`).
//!
//! Frames stream: the `image` crate's decoders give one full-canvas RGBA frame at a time, each
//! is resized by the rendition's plan (the still path's geometry), oriented, and handed to
//! libwebp's `WebPAnimEncoder`, which keeps only its own canvases and the encoded frames. So
//! memory is a few canvases, a few outputs and the encoded file, whatever the frame count.
//!
//! The bound, checked from the container before any frame is decoded and again as frames come:
//! the pixels decoded over all frames — each frame counted at its canvas, or at its own size
//! when a GIF frame declares more — are at most [`Limits::max_pixels`](super::Limits), the
//! pixels a still may decode; frames at most [`Limits::max_frames`](super::Limits); and the
//! output's pixels over all frames at most [`Limits::max_job_output_pixels`](super::Limits).
//!
//! Timing follows `gif2webp`: a GIF frame of 10 ms or less lasts 100 ms (as browsers play it);
//! a GIF's loop count N (repeats after the first play) becomes WebP's N + 1 (plays), 0 stays
//! forever, and a GIF without a loop extension plays once. A WebP source's delays and loop
//! count are copied. libwebp merges a frame identical to the one before into it (the duration
//! adds up), as `gif2webp` does. Animated outputs carry no metadata: a source's ICC profile is
//! converted away (frames written as sRGB) and kept Exif fields are not written.
#![allow(unsafe_code)]

use std::io::Cursor;
use std::ptr::NonNull;

use image::codecs::gif::GifDecoder;
use image::codecs::webp::WebPDecoder;
use image::{AnimationDecoder, ImageDecoder};
use libwebp_sys as sys;
use protocol::Rendition;

use super::container::{gif_frame_sizes, gif_loop_count, webp_animation};
use super::detect::SourceFormat;
use super::error::from_image_error;
use super::geometry::{Plan, swaps_axes};
use super::keep::Carried;
use super::pixels::Pixels;
use super::{Encoded, ImageError, Limits, encode, resize};

/// libwebp's key-frame spacing for lossy animations (`gif2webp`'s): a key frame at least every
/// 5 frames bounds the frames the encoder holds back while it chooses.
const KEY_FRAMES: (i32, i32) = (3, 5);

/// An animated source, as its container declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Animation {
    format: SourceFormat,
    canvas: (u32, u32),
    frames: u64,
    /// Pixels decoded over all frames (each at least the canvas).
    pixels: u64,
    /// The largest frame, in pixels (at least the canvas).
    largest_frame: u64,
    /// The output's loop count, in WebP's meaning: plays, 0 forever.
    loop_count: u16,
}

impl Animation {
    /// The animation `input` holds when a rendition asks for one: `None` when none does, or
    /// the source is not a GIF or WebP of more than one frame (those renditions then take the
    /// still path and its first frame).
    ///
    /// # Errors
    /// [`ImageError::TooLarge`] when the frames or the pixels over all frames pass the limits.
    pub fn scan(
        input: &[u8],
        format: SourceFormat,
        renditions: &[Rendition],
        limits: &Limits,
    ) -> Result<Option<Self>, ImageError> {
        if !renditions.iter().any(|r| r.animated) {
            return Ok(None);
        }
        let animation = match format {
            SourceFormat::Gif => {
                let Some(&[w0, w1, h0, h1]) = input.get(6..10) else { return Ok(None) };
                let canvas = (u32::from(u16::from_le_bytes([w0, w1])), u32::from(u16::from_le_bytes([h0, h1])));
                let canvas_px = u64::from(canvas.0) * u64::from(canvas.1);
                // The decoder reads a frame at its declared size, then composes the canvas.
                let (frames, pixels, largest_frame) =
                    gif_frame_sizes(input).iter().fold((0u64, 0u64, canvas_px), |(n, sum, largest), &(w, h)| {
                        let px = (u64::from(w) * u64::from(h)).max(canvas_px);
                        (n + 1, sum.saturating_add(px), largest.max(px))
                    });
                let loop_count = match gif_loop_count(input) {
                    None => 1,
                    Some(0) => 0,
                    Some(n) => n.saturating_add(1),
                };
                Animation { format, canvas, frames, pixels, largest_frame, loop_count }
            }
            SourceFormat::Webp => {
                let Some(anim) = webp_animation(input) else { return Ok(None) };
                // A WebP frame lies within its canvas.
                let canvas_px = u64::from(anim.canvas.0) * u64::from(anim.canvas.1);
                Animation {
                    format,
                    canvas: anim.canvas,
                    frames: anim.frames,
                    pixels: anim.frames.saturating_mul(canvas_px),
                    largest_frame: canvas_px,
                    loop_count: anim.loop_count,
                }
            }
            _ => return Ok(None),
        };
        if animation.frames < 2 {
            return Ok(None);
        }
        check_decoded(animation.frames, animation.pixels, limits)?;
        Ok(Some(animation))
    }

    /// Checks the animated renditions' outputs over all frames against the job's output limit,
    /// and returns the memory they need beyond the still path's [`peak_estimate`]: the
    /// decoder's canvases, one frame's resized and oriented copies, the encoder's canvases
    /// and candidates, and the encoded file (1 byte a pixel, lossy) twice while assembled.
    ///
    /// [`peak_estimate`]: super::budget::peak_estimate
    ///
    /// # Errors
    /// [`ImageError::InvalidRendition`] when an animated output would pass the job's output
    /// pixels over all its frames.
    pub fn check(&self, renditions: &[Rendition], plans: &[Plan], limits: &Limits) -> Result<u64, ImageError> {
        let canvas = u64::from(self.canvas.0) * u64::from(self.canvas.1);
        let mut outputs = 0u64;
        let mut largest = 0u64;
        for (r, p) in renditions.iter().zip(plans).filter(|(r, _)| r.animated) {
            let out = u64::from(p.out_w) * u64::from(p.out_h);
            let total = out.saturating_mul(self.frames);
            if total > limits.max_job_output_pixels {
                return Err(ImageError::InvalidRendition(format!(
                    "rendition {:?} would be {}×{} pixels for each of {} frames = {total}; a job may produce at \
                     most {}",
                    r.name, p.out_w, p.out_h, self.frames, limits.max_job_output_pixels
                )));
            }
            outputs = outputs.saturating_add(total * 2);
            largest = largest.max(out);
        }
        let decoder = (canvas * 3 + self.largest_frame) * 4;
        let frame = largest * 4 * 2;
        let encoder = largest * 4 * 10;
        Ok(decoder + frame + encoder + outputs)
    }

    /// Renders `r` (animated) from every frame: resized by `plan`, turned upright by
    /// `orientation`, encoded as an animated WebP at `r.quality`.
    ///
    /// # Errors
    /// [`ImageError::Corrupt`] when a frame cannot be decoded, [`ImageError::TooLarge`] when
    /// the decoder yields more than the container declared and that passes the limits, and
    /// [`ImageError::Encode`] when libwebp fails.
    pub fn render(
        &self,
        input: &[u8],
        r: &Rendition,
        plan: &Plan,
        orientation: u8,
        carried: &Carried,
        limits: &Limits,
    ) -> Result<Encoded, ImageError> {
        let mut image_limits = image::Limits::default();
        image_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
        let frames = match self.format {
            SourceFormat::Gif => {
                let mut dec = GifDecoder::new(Cursor::new(input)).map_err(from_image_error)?;
                dec.set_limits(image_limits).map_err(from_image_error)?;
                dec.into_frames()
            }
            _ => {
                let mut dec = WebPDecoder::new(Cursor::new(input)).map_err(from_image_error)?;
                dec.set_limits(image_limits).map_err(from_image_error)?;
                dec.into_frames()
            }
        };
        let (cw, ch) = self.canvas;
        let (width, height) = if swaps_axes(orientation) { (plan.out_h, plan.out_w) } else { (plan.out_w, plan.out_h) };
        let mut encoder = AnimEncoder::new(width, height, self.loop_count, r.quality)?;
        let mut resizer = fast_image_resize::Resizer::new();
        let (mut count, mut decoded, mut timestamp) = (0u64, 0u64, 0i32);
        for frame in frames {
            let frame = frame.map_err(from_image_error)?;
            count += 1;
            // Again as frames come (a canvas each), should the decoder find more than declared.
            decoded = decoded.saturating_add(u64::from(cw) * u64::from(ch));
            check_decoded(count, decoded, limits)?;
            // And the output, should the container have declared fewer frames than it holds.
            let written = count.saturating_mul(u64::from(width) * u64::from(height));
            if written > limits.max_job_output_pixels {
                return Err(ImageError::TooLarge {
                    what: "output pixels over all frames",
                    actual: written,
                    limit: limits.max_job_output_pixels,
                });
            }
            let (num, den) = frame.delay().numer_denom_ms();
            let mut delay = num.checked_div(den).unwrap_or(0);
            if self.format == SourceFormat::Gif && delay <= 10 {
                delay = 100;
            }
            let buffer = frame.into_buffer();
            if buffer.dimensions() != (cw, ch) {
                return Err(ImageError::Corrupt(format!(
                    "animation frame {count} is {:?}, the canvas {cw}×{ch}",
                    buffer.dimensions()
                )));
            }
            let px = Pixels { data: buffer.into_raw(), width: cw, height: ch, channels: 4 };
            let px = carried.to_srgb(resize::resize(&mut resizer, &px, plan, cw, ch)?.orient(orientation)?);
            encoder.add(&px, timestamp)?;
            timestamp =
                i32::try_from(delay).ok().and_then(|d| timestamp.checked_add(d)).ok_or(ImageError::TooLarge {
                    what: "animation length (ms)",
                    actual: u64::from(delay).saturating_add(timestamp.unsigned_abs().into()),
                    limit: i32::MAX as u64,
                })?;
        }
        if count == 0 {
            return Err(ImageError::Corrupt("the animation has no frame".into()));
        }
        let mut bytes = encoder.finish(timestamp)?;
        // The kept Exif fields, as a still WebP carries them; the frames are already sRGB.
        if let Some(exif) = carried.exif.as_deref() {
            bytes = encode::webp_with_metadata(&bytes, None, Some(exif), width, height, false);
        }
        Ok(Encoded { rendition: r.name.clone(), bytes, content_type: r.format.content_type(), width, height })
    }
}

fn check_decoded(frames: u64, pixels: u64, limits: &Limits) -> Result<(), ImageError> {
    if frames > limits.max_frames {
        return Err(ImageError::TooLarge { what: "animation frames", actual: frames, limit: limits.max_frames });
    }
    if pixels > limits.max_pixels {
        return Err(ImageError::TooLarge { what: "pixels over all frames", actual: pixels, limit: limits.max_pixels });
    }
    Ok(())
}

/// libwebp's animation encoder, deleted on drop.
struct AnimEncoder {
    enc: NonNull<sys::WebPAnimEncoder>,
    config: sys::WebPConfig,
    width: i32,
    height: i32,
}

fn encode_error(what: &str) -> ImageError {
    ImageError::Encode(format!("WebP animation: {what}"))
}

impl AnimEncoder {
    fn new(width: u32, height: u32, loop_count: u16, quality: u8) -> Result<Self, ImageError> {
        let (Ok(width), Ok(height)) = (i32::try_from(width), i32::try_from(height)) else {
            return Err(encode_error("dimensions overflow"));
        };
        let mux_abi = sys::WebPGetMuxABIVersion();
        let mut options = std::mem::MaybeUninit::<sys::WebPAnimEncoderOptions>::uninit();
        // SAFETY: libwebp writes its defaults into `options`, a struct we own, laid out as the
        // bindings for this ABI version declare.
        if unsafe { sys::WebPAnimEncoderOptionsInitInternal(options.as_mut_ptr(), mux_abi) } == 0 {
            return Err(encode_error("libwebp version mismatch"));
        }
        // SAFETY: initialised by the call above, which succeeded.
        let mut options = unsafe { options.assume_init() };
        options.anim_params.loop_count = i32::from(loop_count);
        (options.kmin, options.kmax) = KEY_FRAMES;
        let config = super::encode::webp_config(quality)?;
        // SAFETY: `config` is an initialised config that libwebp only reads.
        if unsafe { sys::WebPValidateConfig(&config) } == 0 {
            return Err(encode_error("invalid configuration"));
        }
        // SAFETY: `options` is initialised; libwebp copies it and keeps no pointer to it.
        let enc = unsafe { sys::WebPAnimEncoderNewInternal(width, height, &options, mux_abi) };
        let enc = NonNull::new(enc).ok_or_else(|| encode_error("cannot create the encoder"))?;
        Ok(Self { enc, config, width, height })
    }

    /// libwebp's message for the last failure.
    fn error(&self, what: &str) -> ImageError {
        // SAFETY: the encoder is alive; the message is a NUL-terminated string inside it (or
        // null), copied before the encoder changes.
        let msg = unsafe { sys::WebPAnimEncoderGetError(self.enc.as_ptr()) };
        let msg = if msg.is_null() {
            String::new()
        } else {
            // SAFETY: as above: non-null and NUL-terminated, alive while `self` is.
            unsafe { std::ffi::CStr::from_ptr(msg) }.to_string_lossy().into_owned()
        };
        encode_error(&format!("{what}: {msg}"))
    }

    /// Adds a frame of the canvas size, shown from `timestamp` ms.
    fn add(&mut self, px: &Pixels, timestamp: i32) -> Result<(), ImageError> {
        let rows = px.width as usize * usize::from(px.channels) * px.height as usize;
        if (i32::try_from(px.width), i32::try_from(px.height)) != (Ok(self.width), Ok(self.height))
            || !matches!(px.channels, 3 | 4)
            || px.data.len() < rows
        {
            return Err(encode_error("a frame does not match the canvas"));
        }
        let stride = i32::try_from(px.width as usize * usize::from(px.channels))
            .map_err(|_| encode_error("dimensions overflow"))?;
        let mut pic = std::mem::MaybeUninit::<sys::WebPPicture>::uninit();
        // SAFETY: libwebp zeroes and initialises `pic`, a struct we own.
        if unsafe { sys::WebPPictureInitInternal(pic.as_mut_ptr(), sys::WEBP_ENCODER_ABI_VERSION as i32) } == 0 {
            return Err(encode_error("libwebp version mismatch"));
        }
        // SAFETY: initialised by the call above, which succeeded.
        let mut pic = unsafe { pic.assume_init() };
        pic.use_argb = 1;
        (pic.width, pic.height) = (self.width, self.height);
        // SAFETY: `px.data` holds `height` rows of `stride` bytes (checked above: the picture's
        // size, 3 or 4 channels and the buffer's length), alive for the call; libwebp allocates the picture's own
        // ARGB buffer and copies into it.
        let imported = unsafe {
            match px.channels {
                3 => sys::WebPPictureImportRGB(&mut pic, px.data.as_ptr(), stride),
                _ => sys::WebPPictureImportRGBA(&mut pic, px.data.as_ptr(), stride),
            }
        };
        let added = imported != 0
            // SAFETY: the encoder is alive, `pic` a valid picture of the canvas size, `config`
            // validated; the encoder copies what it keeps of the picture.
            && unsafe { sys::WebPAnimEncoderAdd(self.enc.as_ptr(), &mut pic, timestamp, &self.config) } != 0;
        // SAFETY: frees the buffer the import allocated (nothing when it failed); `pic` is not
        // used after.
        unsafe { sys::WebPPictureFree(&mut pic) };
        match (imported != 0, added) {
            (false, _) => Err(ImageError::Allocation(u64::from(px.width) * u64::from(px.height) * 4)),
            (true, false) => Err(self.error("adding a frame failed")),
            (true, true) => Ok(()),
        }
    }

    /// Ends the last frame at `end` ms and returns the file.
    fn finish(self, end: i32) -> Result<Vec<u8>, ImageError> {
        // SAFETY: the encoder is alive; a null frame (with no config) marks the end, its
        // timestamp closing the last frame's duration.
        if unsafe { sys::WebPAnimEncoderAdd(self.enc.as_ptr(), std::ptr::null_mut(), end, std::ptr::null()) } == 0 {
            return Err(self.error("closing the last frame failed"));
        }
        let mut data = sys::WebPData::default();
        // SAFETY: the encoder is alive; `data` is empty and receives a buffer libwebp allocates.
        if unsafe { sys::WebPAnimEncoderAssemble(self.enc.as_ptr(), &mut data) } == 0 {
            return Err(self.error("assembling failed"));
        }
        // The encoder's frames go before the file is copied out of libwebp's buffer.
        drop(self);
        let mut out = Vec::new();
        let copied = out.try_reserve_exact(data.size).map(|()| {
            // SAFETY: on success `data.bytes` points at `data.size` bytes libwebp allocated for
            // us, alive until cleared below.
            out.extend_from_slice(unsafe { std::slice::from_raw_parts(data.bytes, data.size) });
        });
        let size = data.size as u64;
        // SAFETY: frees libwebp's buffer, which nothing refers to any more.
        unsafe { sys::WebPDataClear(&mut data) };
        copied.map_err(|_| ImageError::Allocation(size))?;
        Ok(out)
    }
}

impl Drop for AnimEncoder {
    fn drop(&mut self) {
        // SAFETY: the encoder was created by `WebPAnimEncoderNewInternal` and is deleted once.
        unsafe { sys::WebPAnimEncoderDelete(self.enc.as_ptr()) };
    }
}
