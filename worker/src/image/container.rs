//! Cheap walks over container structures (PNG chunks, GIF blocks) that tell what a decoder
//! would meet before it meets it: a metadata chunk, or a frame larger than the canvas.

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
    }
}
