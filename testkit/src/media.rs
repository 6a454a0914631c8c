//! Sample media files for the media suites (feature `media`): a picture
//! whose pixels a test can compare after a round trip, its PNG, a JPEG
//! carrying an EXIF block with a GPS position (as phones write them), an
//! MP4 as far as its first box goes, and a PNG whose header claims more
//! pixels than any limit allows (a decompression bomb's first line).

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{Rgb, RgbImage};

/// A `width` × `height` picture with a different colour at every pixel.
pub fn picture(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([
            (x * 7 % 256) as u8,
            (y * 3 % 256) as u8,
            ((x ^ y) % 256) as u8,
        ])
    })
}

/// [`picture`] as a PNG.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    picture(width, height)
        .write_with_encoder(PngEncoder::new(&mut out))
        .expect("a PNG encodes");
    out
}

/// [`picture`] as a JPEG with an EXIF block (APP1) holding a GPS position
/// right after the start marker.
pub fn jpeg_with_gps(width: u32, height: u32) -> Vec<u8> {
    let mut jpeg = Vec::new();
    picture(width, height)
        .write_with_encoder(JpegEncoder::new_with_quality(&mut jpeg, 92))
        .expect("a JPEG encodes");
    let payload = b"Exif\0\0MM\0\x2a\0\0\0\x08GPSLatitude 48.8584 N GPSLongitude 2.2945 E";
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// An MP4's `ftyp` box, then noise: `size` bytes in all.
pub fn mp4(size: usize) -> Vec<u8> {
    let mut bytes = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2".to_vec();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    while bytes.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(size);
    bytes
}

/// A small PNG whose header claims `width` × `height` pixels, its CRC
/// fixed up, so only the size gives it away.
pub fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = png(8, 8);
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

/// CRC-32 as PNG chunks carry it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Whether `needle` occurs in `haystack` (an EXIF marker in a stored file).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bomb_claims_its_size_with_a_valid_header() {
        let bytes = png_claiming(60_000, 50_000);
        let (width, height) = image::ImageReader::new(std::io::Cursor::new(&bytes[..]))
            .with_guessed_format()
            .unwrap()
            .into_dimensions()
            .unwrap();
        assert_eq!((width, height), (60_000, 50_000));
        assert!(contains(&jpeg_with_gps(8, 8), b"GPSLatitude"));
        assert_eq!(&mp4(100)[4..8], b"ftyp");
        assert_eq!(mp4(100).len(), 100);
    }
}
