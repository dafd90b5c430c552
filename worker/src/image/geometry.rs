//! Pure size arithmetic: the output size and source crop of each fit mode, how EXIF
//! orientation maps them onto the stored pixels, and the DCT shrink a JPEG can afford.

use protocol::rendition::{Fit, Rendition};

use super::ImageError;

/// Where one rendition's pixels come from and how big it ends up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plan {
    /// Output size before orientation, i.e. in the stored image's axes.
    pub out_w: u32,
    /// See [`Plan::out_w`].
    pub out_h: u32,
    /// The source region (in full-resolution stored pixels) that maps onto the output.
    pub crop: Crop,
}

/// A rectangle of the source in stored pixel coordinates (fractional, centred crops).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Crop {
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
}

/// Whether an EXIF orientation (1–8) swaps width and height.
pub fn swaps_axes(orientation: u8) -> bool {
    (5..=8).contains(&orientation)
}

fn round_dim(v: f64) -> u32 {
    // Clamped to at least one pixel; the cast saturates for absurd values.
    (v.round() as u32).max(1)
}

/// Computes a rendition's plan for a stored image of `width`×`height` carrying `orientation`.
///
/// The rendition's box is read in upright axes (what a viewer sees); the result is mapped back to
/// stored axes so resampling happens before the (cheap, small) orientation transform.
///
/// # Errors
/// [`ImageError::InvalidRendition`] when the rendition has no usable box.
pub fn plan(r: &Rendition, width: u32, height: u32, orientation: u8) -> Result<Plan, ImageError> {
    let swap = swaps_axes(orientation);
    let (sw, sh) = if swap { (height, width) } else { (width, height) };
    let (sw, sh) = (f64::from(sw.max(1)), f64::from(sh.max(1)));
    let (bw, bh) = match (r.width, r.height) {
        (Some(w), Some(h)) if w > 0 && h > 0 => (f64::from(w), f64::from(h)),
        (Some(w), None) if w > 0 => (f64::from(w), f64::INFINITY),
        (None, Some(h)) if h > 0 => (f64::INFINITY, f64::from(h)),
        _ => {
            return Err(ImageError::InvalidRendition(format!(
                "rendition {:?} needs a positive width or height",
                r.name
            )));
        }
    };
    let fit = if bw.is_infinite() || bh.is_infinite() { Fit::Inside } else { r.fit };
    let (ow, oh, crop_w, crop_h) = match fit {
        Fit::Inside => {
            let (kw, kh) = (bw / sw, bh / sh);
            let (ow, oh) = if !r.enlarge && kw.min(kh) >= 1.0 {
                (round_dim(sw), round_dim(sh))
            } else if kw <= kh {
                (round_dim(bw), round_dim(sh * kw))
            } else {
                (round_dim(sw * kh), round_dim(bh))
            };
            (ow, oh, sw, sh)
        }
        Fit::Cover | Fit::Fill => {
            // Without enlargement, shrink the box (keeping its aspect) until it fits the source.
            let shrink = if r.enlarge { 1.0 } else { (sw / bw).min(sh / bh).min(1.0) };
            let (bw, bh) = (bw * shrink, bh * shrink);
            let (ow, oh) = (round_dim(bw), round_dim(bh));
            if fit == Fit::Fill {
                (ow, oh, sw, sh)
            } else {
                let scale = (bw / sw).max(bh / sh);
                (ow, oh, (bw / scale).min(sw), (bh / scale).min(sh))
            }
        }
    };
    let (ow, oh, crop_w, crop_h) = if swap { (oh, ow, crop_h, crop_w) } else { (ow, oh, crop_w, crop_h) };
    let (full_w, full_h) = (f64::from(width.max(1)), f64::from(height.max(1)));
    let crop = Crop { x: (full_w - crop_w) / 2.0, y: (full_h - crop_h) / 2.0, w: crop_w, h: crop_h };
    Ok(Plan { out_w: ow, out_h: oh, crop })
}

/// The smallest reduction any plan asks of the source (1.0 or more when every plan shrinks).
fn least_reduction(plans: &[Plan]) -> f64 {
    plans
        .iter()
        .map(|p| (p.crop.w / f64::from(p.out_w)).min(p.crop.h / f64::from(p.out_h)))
        .fold(f64::INFINITY, f64::min)
}

/// How much the decoder may shrink the source while still leaving the resampler at least 2×
/// to reduce for every plan (1.0 or more; 1.0 means decode at full size).
pub fn prescale_limit(plans: &[Plan]) -> f64 {
    (least_reduction(plans) / 2.0).max(1.0)
}

/// The largest JPEG DCT shrink (1, 2, 4 or 8) that keeps quality Lanczos-grade while decoding
/// does less work. libjpeg's reduced inverse DCTs give the full decode averaged over 2×2, 4×4
/// or 8×8 pixels. Averaging 4×4 or 8×8 blurs and aliases, so 1/4 and 1/8 leave the resampler
/// at least 2× (as libvips does); averaging 2×2 is mild, so 1/2 only needs the decoded image
/// to be no smaller than the output (as sharp's default does). On the corpus at 1600 px this
/// costs 0.15 dB of luma PSNR against a full-decode Lanczos reference and saves a quarter of
/// the peak memory (README, *Speed*).
pub fn dct_shrink(plans: &[Plan]) -> u32 {
    // Each DCT scale, largest first, with the reduction it must leave the resampler.
    const SCALES: [(u32, f64); 3] = [(8, 2.0), (4, 2.0), (2, 1.0)];
    let least = least_reduction(plans);
    SCALES.iter().find(|&&(d, left)| f64::from(d) * left <= least).map_or(1, |&(d, _)| d)
}

/// The integer shrink for decoders that scale by any factor (libwebp), within [`prescale_limit`].
pub fn any_shrink(plans: &[Plan]) -> u32 {
    prescale_limit(plans).floor().min(f64::from(u16::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::rendition::Format;

    fn r(w: Option<u32>, h: Option<u32>, fit: Fit, enlarge: bool) -> Rendition {
        Rendition {
            name: "t".into(),
            width: w,
            height: h,
            fit,
            format: Format::Jpeg,
            quality: 80,
            enlarge,
            animated: false,
        }
    }

    #[test]
    fn inside_keeps_aspect_and_never_enlarges() {
        let p = plan(&r(Some(512), Some(512), Fit::Inside, false), 4000, 3000, 1).expect("test input is valid");
        assert_eq!((p.out_w, p.out_h), (512, 384));
        let p = plan(&r(Some(512), Some(512), Fit::Inside, false), 300, 200, 1).expect("test input is valid");
        assert_eq!((p.out_w, p.out_h), (300, 200));
        let p = plan(&r(Some(600), None, Fit::Inside, true), 300, 200, 1).expect("test input is valid");
        assert_eq!((p.out_w, p.out_h), (600, 400));
        let p = plan(&r(None, Some(100), Fit::Inside, false), 4000, 3000, 1).expect("test input is valid");
        assert_eq!((p.out_w, p.out_h), (133, 100));
    }

    #[test]
    fn cover_crops_centre_and_fill_stretches() {
        let p = plan(&r(Some(200), Some(200), Fit::Cover, false), 400, 200, 1).expect("test input is valid");
        assert_eq!((p.out_w, p.out_h), (200, 200));
        assert_eq!(p.crop, Crop { x: 100.0, y: 0.0, w: 200.0, h: 200.0 });
        let p = plan(&r(Some(500), Some(500), Fit::Cover, false), 400, 200, 1).expect("test input is valid");
        assert_eq!((p.out_w, p.out_h), (200, 200));
        let p = plan(&r(Some(100), Some(300), Fit::Fill, false), 400, 200, 1).expect("test input is valid");
        assert_eq!((p.out_w, p.out_h), (67, 200));
        assert_eq!(p.crop.w, 400.0);
    }

    #[test]
    fn rotated_sources_plan_in_stored_axes() {
        // Stored 400×200, orientation 6: upright 200×400; a 100×100 inside box → upright 50×100.
        let p = plan(&r(Some(100), Some(100), Fit::Inside, false), 400, 200, 6).expect("test input is valid");
        assert_eq!((p.out_w, p.out_h), (100, 50));
        let p = plan(&r(Some(100), Some(50), Fit::Cover, false), 400, 200, 8).expect("test input is valid");
        assert_eq!((p.out_w, p.out_h), (50, 100));
        assert_eq!((p.crop.w, p.crop.h), (100.0, 200.0));
    }

    #[test]
    fn shrink_leaves_two_x_below_half_scale() {
        let plan_for = |w, h, b| plan(&r(Some(b), Some(b), Fit::Inside, false), w, h, 1).expect("test input is valid");
        assert_eq!(dct_shrink(&[plan_for(4000, 3000, 512)]), 2);
        assert_eq!(dct_shrink(&[plan_for(4096, 4096, 256)]), 8);
        assert_eq!(dct_shrink(&[plan_for(4096, 4096, 512)]), 4);
        assert_eq!(dct_shrink(&[plan_for(300, 200, 512)]), 1);
        // Half scale only needs the decoded image to cover the output, in both axes.
        assert_eq!(dct_shrink(&[plan_for(4096, 4096, 128), plan_for(4096, 4096, 1600)]), 2);
        assert_eq!(dct_shrink(&[plan_for(3200, 2400, 1600)]), 2);
        assert_eq!(dct_shrink(&[plan_for(3100, 2400, 1600)]), 1);
        assert_eq!(dct_shrink(&[plan_for(4096, 4096, 2100)]), 1);
        let cover = plan(&r(Some(1600), Some(1600), Fit::Cover, false), 6000, 3100, 1).expect("valid");
        assert_eq!(dct_shrink(&[cover]), 1, "the crop's short side 3100 < 2 × 1600");
        assert_eq!(any_shrink(&[plan_for(4096, 4096, 512)]), 4);
        assert_eq!(any_shrink(&[plan_for(4096, 4096, 300)]), 6);
    }
}
