//! Cheap walks over container structures that tell what a decoder would meet before it
//! meets it: here, a PNG's metadata chunks.

const PNG_SIGNATURE: usize = 8;

/// Whether a PNG carries a chunk of type `kind` before its image data.
pub fn png_has_chunk(png: &[u8], kind: &[u8; 4]) -> bool {
    let mut pos = PNG_SIGNATURE;
    while let Some(header) = png.get(pos..pos + 8) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        match &header[4..8] {
            t if t == kind => return true,
            b"IDAT" | b"IEND" => return false,
            _ => {}
        }
        // Length, type, data, CRC.
        pos = pos.saturating_add(12).saturating_add(len);
    }
    false
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
}
