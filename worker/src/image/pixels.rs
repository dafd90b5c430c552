//! An 8-bit interleaved pixel buffer and the cheap whole-buffer steps applied to it:
//! EXIF orientation, alpha flattening, CMYK conversion, channel expansion.

use super::ImageError;

/// A zeroed buffer for `width`×`height` pixels of `channels` bytes, allocated fallibly so a
/// size that slipped past the limits becomes an error instead of aborting the process.
///
/// # Errors
/// [`ImageError::Allocation`] when the size overflows or the allocator refuses it.
pub fn zeroed(width: usize, height: usize, channels: usize) -> Result<Vec<u8>, ImageError> {
    let len = width.checked_mul(height).and_then(|n| n.checked_mul(channels));
    let bytes = (width as u64).saturating_mul(height as u64).saturating_mul(channels as u64);
    let len = len.ok_or(ImageError::Allocation(bytes))?;
    let mut data = Vec::new();
    data.try_reserve_exact(len).map_err(|_| ImageError::Allocation(bytes))?;
    data.resize(len, 0);
    Ok(data)
}

/// Interleaved 8-bit pixels: 1 = gray, 2 = gray+alpha, 3 = RGB, 4 = RGBA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pixels {
    /// Row-major samples, `width * height * channels` long, no padding.
    pub data: Vec<u8>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Samples per pixel.
    pub channels: u8,
}

impl Pixels {
    /// Whether the last channel is alpha.
    pub fn has_alpha(&self) -> bool {
        self.channels == 2 || self.channels == 4
    }

    /// Applies an EXIF orientation (1–8) so the pixels come out upright.
    ///
    /// # Errors
    /// [`ImageError::Allocation`] if the rotated copy cannot be allocated.
    pub fn orient(self, orientation: u8) -> Result<Pixels, ImageError> {
        if !(2..=8).contains(&orientation) {
            return Ok(self);
        }
        let (w, h, c) = (self.width as usize, self.height as usize, usize::from(self.channels));
        let swap = (5..=8).contains(&orientation);
        let (ow, oh) = if swap { (h, w) } else { (w, h) };
        let mut out = zeroed(w, h, c)?;
        for y in 0..oh {
            for x in 0..ow {
                let (sx, sy) = match orientation {
                    2 => (w - 1 - x, y),
                    3 => (w - 1 - x, h - 1 - y),
                    4 => (x, h - 1 - y),
                    5 => (y, x),
                    6 => (y, h - 1 - x),
                    7 => (w - 1 - y, h - 1 - x),
                    _ => (w - 1 - y, x),
                };
                let (si, di) = ((sy * w + sx) * c, (y * ow + x) * c);
                out[di..di + c].copy_from_slice(&self.data[si..si + c]);
            }
        }
        Ok(Pixels { data: out, width: ow as u32, height: oh as u32, channels: self.channels })
    }

    /// Composites alpha over white, dropping the alpha channel (for JPEG).
    pub fn flatten_on_white(self) -> Pixels {
        if !self.has_alpha() {
            return self;
        }
        let c = usize::from(self.channels);
        let mut out = Vec::with_capacity(self.data.len() / c * (c - 1));
        for px in self.data.chunks_exact(c) {
            let a = u32::from(px[c - 1]);
            for &v in &px[..c - 1] {
                out.push(((u32::from(v) * a + 255 * (255 - a) + 127) / 255) as u8);
            }
        }
        Pixels { data: out, width: self.width, height: self.height, channels: self.channels - 1 }
    }

    /// Converts CMYK samples to RGB with the usual device formula. Files with an Adobe APP14
    /// marker (Photoshop and most tools since) store the samples inverted.
    pub fn cmyk_to_rgb(self, inverted: bool) -> Pixels {
        let mut out = Vec::with_capacity(self.data.len() / 4 * 3);
        for px in self.data.chunks_exact(4) {
            let ink = |v: u8| if inverted { u32::from(v) } else { 255 - u32::from(v) };
            let k = ink(px[3]);
            for &v in &px[..3] {
                out.push(((ink(v) * k + 127) / 255) as u8);
            }
        }
        Pixels { data: out, width: self.width, height: self.height, channels: 3 }
    }

    /// Expands gray (and gray+alpha) to RGB (and RGBA), for encoders without gray support.
    pub fn to_color(self) -> Pixels {
        match self.channels {
            1 => Pixels { data: self.data.iter().flat_map(|&v| [v, v, v]).collect(), channels: 3, ..self },
            2 => Pixels {
                data: self.data.chunks_exact(2).flat_map(|p| [p[0], p[0], p[0], p[1]]).collect(),
                channels: 4,
                ..self
            },
            _ => self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3×2 gray image numbered in reading order.
    fn sample() -> Pixels {
        Pixels { data: vec![1, 2, 3, 4, 5, 6], width: 3, height: 2, channels: 1 }
    }

    #[test]
    fn orientations_match_the_exif_definitions() {
        let cases: [(u8, &[u8], u32); 8] = [
            (1, &[1, 2, 3, 4, 5, 6], 3),
            (2, &[3, 2, 1, 6, 5, 4], 3),
            (3, &[6, 5, 4, 3, 2, 1], 3),
            (4, &[4, 5, 6, 1, 2, 3], 3),
            (5, &[1, 4, 2, 5, 3, 6], 2),
            (6, &[4, 1, 5, 2, 6, 3], 2),
            (7, &[6, 3, 5, 2, 4, 1], 2),
            (8, &[3, 6, 2, 5, 1, 4], 2),
        ];
        for (o, want, w) in cases {
            let got = sample().orient(o).expect("small buffer");
            assert_eq!((got.data.as_slice(), got.width), (want, w), "orientation {o}");
        }
    }

    #[test]
    fn flattening_and_cmyk() {
        let rgba = Pixels { data: vec![0, 0, 0, 0, 255, 0, 0, 255], width: 2, height: 1, channels: 4 };
        assert_eq!(rgba.flatten_on_white().data, vec![255, 255, 255, 255, 0, 0]);
        let cmyk = Pixels { data: vec![0, 255, 255, 0], width: 1, height: 1, channels: 4 };
        assert_eq!(cmyk.clone().cmyk_to_rgb(false).data, vec![255, 0, 0]);
        let inv = Pixels { data: vec![255, 0, 0, 255], ..cmyk };
        assert_eq!(inv.cmyk_to_rgb(true).data, vec![255, 0, 0]);
    }

    #[test]
    fn absurd_buffers_are_errors_not_aborts() {
        assert_eq!(zeroed(2, 3, 4).map(|v| v.len()), Ok(24));
        assert!(matches!(zeroed(usize::MAX, 2, 1), Err(ImageError::Allocation(_))));
        // About 8 TB: more than any machine this runs on will hand out.
        assert!(matches!(zeroed(16_384, 491_520_000, 1), Err(ImageError::Allocation(_))));
    }
}
