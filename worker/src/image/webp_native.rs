//! Still WebP decoding through libwebp, which can scale while decoding ("shrink-on-load", as
//! libvips does) and is about twice as fast as the pure-Rust decoder on lossy files.
//!
//! This is the engine's only FFI of its own: one `WebPDecode` into a buffer we own.
#![allow(unsafe_code)]

use libwebp_sys as sys;

use super::ImageError;
use super::pixels::Pixels;

fn corrupt(what: &str, status: sys::VP8StatusCode) -> ImageError {
    ImageError::Corrupt(format!("WebP: {what} ({status:?})"))
}

/// Decodes a still WebP at 1/`shrink` of its size (rounded up). Returns `None` for animated
/// files, which the caller decodes (first frame) with the `image` crate.
///
/// # Errors
/// [`ImageError::Corrupt`] when libwebp rejects the data.
pub fn decode(input: &[u8], shrink: u32) -> Result<Option<Pixels>, ImageError> {
    let mut config =
        sys::WebPDecoderConfig::new().map_err(|()| ImageError::Corrupt("WebP: decoder version mismatch".into()))?;
    // SAFETY: `input` is a live slice of `input.len()` bytes; `config.input` is a plain struct
    // that libwebp fills in.
    let status = unsafe { sys::WebPGetFeatures(input.as_ptr(), input.len(), &mut config.input) };
    if status != sys::VP8StatusCode::VP8_STATUS_OK {
        return Err(corrupt("unreadable header", status));
    }
    if config.input.has_animation != 0 {
        return Ok(None);
    }
    let (Ok(width), Ok(height)) = (u32::try_from(config.input.width), u32::try_from(config.input.height)) else {
        return Err(ImageError::Corrupt("WebP: negative dimensions".into()));
    };
    let shrink = shrink.max(1);
    let (sw, sh) = (width.div_ceil(shrink).max(1), height.div_ceil(shrink).max(1));
    let alpha = config.input.has_alpha != 0;
    let channels: u8 = if alpha { 4 } else { 3 };
    let stride = sw as usize * usize::from(channels);
    let (Ok(stride_c), Ok(sw_c), Ok(sh_c)) = (i32::try_from(stride), i32::try_from(sw), i32::try_from(sh)) else {
        return Err(ImageError::Corrupt("WebP: dimensions overflow".into()));
    };
    let mut data = super::pixels::zeroed(sw as usize, sh as usize, usize::from(channels))?;
    if shrink > 1 {
        config.options.use_scaling = 1;
        config.options.scaled_width = sw_c;
        config.options.scaled_height = sh_c;
    }
    config.output.colorspace = if alpha { sys::WEBP_CSP_MODE::MODE_RGBA } else { sys::WEBP_CSP_MODE::MODE_RGB };
    config.output.is_external_memory = 1;
    config.output.u.RGBA = sys::WebPRGBABuffer { rgba: data.as_mut_ptr(), stride: stride_c, size: data.len() };
    // SAFETY: the output points at `data`, exactly `stride * sh` bytes for an `sw`×`sh` image
    // in the requested mode, alive and not otherwise borrowed during the call; libwebp checks
    // the buffer against the (scaled) size before writing.
    let status = unsafe { sys::WebPDecode(input.as_ptr(), input.len(), &mut config) };
    // SAFETY: releases libwebp's internal state; with external memory our buffer is untouched.
    unsafe { sys::WebPFreeDecBuffer(&mut config.output) };
    if status != sys::VP8StatusCode::VP8_STATUS_OK {
        return Err(corrupt("decoding failed", status));
    }
    Ok(Some(Pixels { data, width: sw, height: sh, channels }))
}
