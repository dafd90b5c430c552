//! Cheap walks over container structures (PNG chunks, GIF blocks, WebP chunks) that tell what a
//! decoder would meet before it meets it: a metadata chunk, a frame larger than the canvas, how
//! many frames an animation has and how often it loops.

const PNG_SIGNATURE: usize = 8;

/// Whether a PNG carries a chunk of type `kind` before its image data.
pub fn png_has_chunk(png: &[u8], kind: &[u8; 4]) -> bool {
    png_chunk_len(png, kind).is_some()
}

/// The declared data length of the first `kind` chunk before the image data, if any.
pub fn png_chunk_len(png: &[u8], kind: &[u8; 4]) -> Option<usize> {
    let mut pos = PNG_SIGNATURE;
    while let Some(header) = png.get(pos..pos + 8) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        match &header[4..8] {
            t if t == kind => return Some(len),
            b"IDAT" | b"IEND" => return None,
            _ => {}
        }
        // Length, type, data, CRC.
        pos = pos.saturating_add(12).saturating_add(len);
    }
    None
}

/// The sizes every GIF frame declares, in file order. The walk stops quietly at damaged
/// data: the decoder, not this walk, decides whether the file is corrupt.
pub fn gif_frame_sizes(gif: &[u8]) -> Vec<(u32, u32)> {
    let mut frames = Vec::new();
    // Header (6) and logical screen descriptor (7), then the optional global colour table.
    let Some(&packed) = gif.get(10) else { return frames };
    let mut pos = 13 + color_table_len(packed);
    let u16_at = |at: usize| gif.get(at..at + 2).map(|b| u32::from(u16::from_le_bytes([b[0], b[1]])));
    loop {
        match gif.get(pos) {
            Some(0x21) => pos = skip_sub_blocks(gif, pos + 2),
            Some(0x2C) => {
                let (Some(w), Some(h), Some(&packed)) = (u16_at(pos + 5), u16_at(pos + 7), gif.get(pos + 9)) else {
                    break;
                };
                frames.push((w, h));
                // Descriptor (10), local colour table, LZW minimum code size (1), then data.
                pos = skip_sub_blocks(gif, pos + 10 + color_table_len(packed) + 1);
            }
            _ => break,
        }
    }
    frames
}

/// The loop count of a GIF's NETSCAPE2.0 (or ANIMEXTS1.0) application extension, as stored
/// (0: forever); `None` when the file has none.
pub fn gif_loop_count(gif: &[u8]) -> Option<u16> {
    let packed = *gif.get(10)?;
    let mut pos = 13 + color_table_len(packed);
    loop {
        match gif.get(pos)? {
            0x21 => {
                // Label, then sub-blocks: 11 bytes of identifier, then `3, 1, count (LE)`.
                let app = gif.get(pos + 1) == Some(&0xFF) && gif.get(pos + 2) == Some(&11);
                let id = gif.get(pos + 3..pos + 14);
                if app && (id == Some(b"NETSCAPE2.0") || id == Some(b"ANIMEXTS1.0")) {
                    if let Some(&[3, 1, lo, hi]) = gif.get(pos + 14..pos + 18) {
                        return Some(u16::from_le_bytes([lo, hi]));
                    }
                }
                pos = skip_sub_blocks(gif, pos + 2);
            }
            0x2C => {
                let packed = *gif.get(pos + 9)?;
                pos = skip_sub_blocks(gif, pos + 10 + color_table_len(packed) + 1);
            }
            _ => return None,
        }
    }
}

/// What an animated WebP's chunks declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WebpAnimation {
    /// The canvas (`VP8X`).
    pub canvas: (u32, u32),
    /// `ANMF` chunks.
    pub frames: u64,
    /// The `ANIM` loop count (0: forever).
    pub loop_count: u16,
}

/// The canvas, frame count and loop count of an animated WebP; `None` for a still WebP or a
/// file whose `VP8X` or `ANIM` chunk is missing. Stops quietly at damaged data, like
/// [`gif_frame_sizes`].
pub fn webp_animation(webp: &[u8]) -> Option<WebpAnimation> {
    let u24 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], 0]) + 1;
    let (mut canvas, mut loop_count, mut frames) = (None, None, 0u64);
    // RIFF header (12), then chunks: fourcc, size (LE), data padded to an even length.
    let mut pos = 12usize;
    while let Some(header) = pos.checked_add(8).and_then(|end| webp.get(pos..end)) {
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        // The chunk's own bytes (as many as the file holds): a short chunk never reads the next.
        let start = pos + 8;
        let data = webp.get(start..start.saturating_add(len).min(webp.len())).unwrap_or_default();
        match &header[..4] {
            b"VP8X" if data.len() >= 10 => canvas = Some((u24(&data[4..7]), u24(&data[7..10]))),
            b"ANIM" if data.len() >= 6 => loop_count = Some(u16::from_le_bytes([data[4], data[5]])),
            b"ANMF" => frames += 1,
            _ => {}
        }
        pos = pos.saturating_add(8).saturating_add(len).saturating_add(len & 1);
    }
    Some(WebpAnimation { canvas: canvas?, frames, loop_count: loop_count? })
}

fn color_table_len(packed: u8) -> usize {
    if packed & 0x80 == 0 { 0 } else { 3 << ((packed & 7) + 1) }
}

/// The position after a run of sub-blocks starting at `pos` (past the end if truncated).
fn skip_sub_blocks(gif: &[u8], mut pos: usize) -> usize {
    while let Some(&len) = gif.get(pos) {
        pos += 1 + usize::from(len);
        if len == 0 {
            return pos;
        }
    }
    gif.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_png_chunks_before_the_image_data() {
        let chunk = |kind: &[u8; 4], data: &[u8]| {
            let mut c = (data.len() as u32).to_be_bytes().to_vec();
            c.extend_from_slice(kind);
            c.extend_from_slice(data);
            c.extend_from_slice(&[0; 4]);
            c
        };
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(chunk(b"IHDR", &[0; 13]));
        png.extend(chunk(b"iCCP", b"x\0\0"));
        png.extend(chunk(b"IDAT", &[]));
        png.extend(chunk(b"eXIf", &[]));
        assert!(png_has_chunk(&png, b"iCCP"));
        assert!(!png_has_chunk(&png, b"eXIf"), "after the image data");
        assert!(!png_has_chunk(&png[..20], b"iCCP"));
    }

    #[test]
    fn lists_gif_frames() {
        let mut gif = b"GIF89a\x10\x00\x10\x00\x80\x00\x00".to_vec();
        gif.extend_from_slice(&[0; 6]); // global colour table, two entries
        gif.extend_from_slice(&[0x21, 0xF9, 4, 0, 0, 0, 0, 0]); // graphic control extension
        gif.extend_from_slice(&[0x2C, 0, 0, 0, 0, 0x10, 0, 0x10, 0, 0, 2, 2, 0x4C, 0x01, 0]);
        gif.extend_from_slice(&[0x2C, 0, 0, 0, 0, 0xFF, 0xFF, 0x01, 0x00, 0, 2, 0]);
        assert_eq!(gif_frame_sizes(&gif), vec![(16, 16), (65_535, 1)]);
        assert_eq!(gif_frame_sizes(&gif[..30]), vec![]);
        assert_eq!(gif_loop_count(&gif), None);
        let mut looping = gif[..19].to_vec();
        looping.extend_from_slice(b"\x21\xFF\x0BNETSCAPE2.0\x03\x01\x05\x00\x00");
        looping.extend_from_slice(&gif[19..]);
        assert_eq!(gif_loop_count(&looping), Some(5));
        assert_eq!(gif_frame_sizes(&looping), vec![(16, 16), (65_535, 1)]);
    }

    #[test]
    fn reads_webp_animation_chunks() {
        let chunk = |kind: &[u8; 4], data: &[u8]| {
            let mut c = kind.to_vec();
            c.extend_from_slice(&(data.len() as u32).to_le_bytes());
            c.extend_from_slice(data);
            if data.len() % 2 == 1 {
                c.push(0);
            }
            c
        };
        let mut webp = b"RIFF\0\0\0\0WEBP".to_vec();
        webp.extend(chunk(b"VP8X", &[0x02, 0, 0, 0, 39, 0, 0, 29, 0, 0]));
        webp.extend(chunk(b"ANIM", &[0, 0, 0, 0, 3, 0]));
        webp.extend(chunk(b"ANMF", &[0; 17]));
        webp.extend(chunk(b"ANMF", &[0; 16]));
        let want = WebpAnimation { canvas: (40, 30), frames: 2, loop_count: 3 };
        assert_eq!(webp_animation(&webp), Some(want));
        assert_eq!(webp_animation(&webp[..40]), None, "no ANIM chunk");
        let mut still = b"RIFF\0\0\0\0WEBP".to_vec();
        still.extend(chunk(b"VP8L", &[0; 5]));
        assert_eq!(webp_animation(&still), None);
    }
}
