//! Lanczos3 resampling (SIMD, `fast_image_resize`) of a plan's crop to its output size,
//! alpha-aware so transparent edges do not bleed dark fringes.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use super::ImageError;
use super::geometry::Plan;
use super::pixels::Pixels;

fn pixel_type(channels: u8) -> Result<PixelType, ImageError> {
    Ok(match channels {
        1 => PixelType::U8,
        2 => PixelType::U8x2,
        3 => PixelType::U8x3,
        4 => PixelType::U8x4,
        n => return Err(ImageError::Unsupported(format!("{n} channels per pixel"))),
    })
}

/// Resamples `src` (decoded from a `full_w`×`full_h` source, possibly DCT-reduced) to
/// `plan`'s output size, taking only the plan's crop.
///
/// # Errors
/// [`ImageError::Allocation`] if the output buffer cannot be allocated, and
/// [`ImageError::Encode`] if the resampler rejects the buffers (it should not).
pub fn resize(
    resizer: &mut Resizer,
    src: &Pixels,
    plan: &Plan,
    full_w: u32,
    full_h: u32,
) -> Result<Pixels, ImageError> {
    let kx = f64::from(src.width) / f64::from(full_w.max(1));
    let ky = f64::from(src.height) / f64::from(full_h.max(1));
    let (cx, cy) = (plan.crop.x * kx, plan.crop.y * ky);
    let (cw, ch) = ((plan.crop.w * kx).min(f64::from(src.width)), (plan.crop.h * ky).min(f64::from(src.height)));
    let whole = cx.abs() < 1e-9 && cy.abs() < 1e-9 && cw >= f64::from(src.width) && ch >= f64::from(src.height);
    if whole && plan.out_w == src.width && plan.out_h == src.height {
        return Ok(src.clone());
    }
    let pt = pixel_type(src.channels)?;
    let fail = |e: &dyn std::fmt::Display| ImageError::Encode(format!("resize: {e}"));
    let src_view = ImageRef::new(src.width, src.height, &src.data, pt).map_err(|e| fail(&e))?;
    let data = super::pixels::zeroed(plan.out_w as usize, plan.out_h as usize, usize::from(src.channels))?;
    let mut dst = Image::from_vec_u8(plan.out_w, plan.out_h, data, pt).map_err(|e| fail(&e))?;
    let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3)).crop(cx, cy, cw, ch);
    resizer.resize(&src_view, &mut dst, &opts).map_err(|e| fail(&e))?;
    Ok(Pixels { data: dst.into_vec(), width: plan.out_w, height: plan.out_h, channels: src.channels })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::geometry::Crop;

    #[test]
    fn halves_a_flat_image_and_crops_from_scaled_sources() {
        let src = Pixels { data: vec![90; 64 * 32 * 3], width: 64, height: 32, channels: 3 };
        let plan = Plan { out_w: 16, out_h: 16, crop: Crop { x: 64.0, y: 0.0, w: 64.0, h: 64.0 } };
        // The source was decoded at 1/2 of a 128×64 original; the crop is the right half.
        let out = resize(&mut Resizer::new(), &src, &plan, 128, 64).expect("test input is valid");
        assert_eq!((out.width, out.height, out.data.len()), (16, 16, 16 * 16 * 3));
        assert!(out.data.iter().all(|&v| v.abs_diff(90) <= 1));
    }
}
