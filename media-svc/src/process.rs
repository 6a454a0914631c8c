//! What an upload is, from its bytes, and what is stored of an image.
//!
//! The type comes from the file's magic numbers, never from its name: a
//! text file renamed `.jpg` is refused. Images are decoded and re-encoded
//! in their own format, which drops every metadata block (EXIF with its GPS
//! position, XMP, comments) and anything hidden after the pixels; EXIF
//! orientation is applied to the pixels first, so photos stay upright
//! without it. A preview (longest side at most
//! [`PREVIEW_MAX_SIDE`](warble_proto::limits::media::PREVIEW_MAX_SIDE)) and a
//! blurhash are made from the same decoded pixels. Videos are only
//! recognised (an MP4 `ftyp` box), never decoded or transcoded.
//!
//! Decoding is CPU work: callers run [`process_image`] on a blocking thread.

use std::io::Cursor;

use image::codecs::gif::{GifDecoder, GifEncoder, Repeat};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{AnimationDecoder as _, DynamicImage, ImageDecoder as _, ImageFormat, ImageReader};
use warble_proto::limits::media::PREVIEW_MAX_SIDE;

use crate::error::Refusal;

/// Bytes [`sniff`] needs to tell every accepted format apart.
pub const SNIFF_BYTES: usize = 12;

/// JPEG quality of re-encoded photos and of previews: visually lossless
/// for photos, a quarter of the size of quality 100.
const JPEG_QUALITY: u8 = 90;
const PREVIEW_JPEG_QUALITY: u8 = 80;
/// Blurhash components (x, y): Mastodon's choice, 4 × 3.
const BLURHASH_COMPONENTS: (u32, u32) = (4, 3);
/// The blurhash is computed from a thumbnail this wide at most: the hash
/// keeps 12 frequencies, so more pixels only cost time.
const BLURHASH_SOURCE_SIDE: u32 = 64;

/// An accepted format, as detected from the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    Gif,
    WebP,
    Mp4,
}

impl Format {
    /// The MIME type the file is served with.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Gif => "image/gif",
            Format::WebP => "image/webp",
            Format::Mp4 => "video/mp4",
        }
    }

    /// Whether this is a video (stored as uploaded) rather than an image.
    pub fn is_video(self) -> bool {
        self == Format::Mp4
    }

    fn image_format(self) -> Option<ImageFormat> {
        match self {
            Format::Jpeg => Some(ImageFormat::Jpeg),
            Format::Png => Some(ImageFormat::Png),
            Format::Gif => Some(ImageFormat::Gif),
            Format::WebP => Some(ImageFormat::WebP),
            Format::Mp4 => None,
        }
    }
}

/// The format of a file starting with `head` (at least [`SNIFF_BYTES`]
/// bytes unless the file is shorter), or why it is refused.
pub fn sniff(head: &[u8]) -> Result<Format, Refusal> {
    let format = if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some(Format::Gif)
    } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        Some(Format::WebP)
    } else if head.len() >= 12 && &head[4..8] == b"ftyp" && is_mp4_brand(&head[8..12]) {
        Some(Format::Mp4)
    } else {
        None
    };
    format.ok_or_else(|| Refusal::UnsupportedType(describe(head)))
}

/// ISO base media brands that are MP4 video (QuickTime's `qt  ` and HEIF
/// images' `heic`/`mif1` share the box layout but are not accepted).
fn is_mp4_brand(brand: &[u8]) -> bool {
    matches!(
        brand,
        b"isom"
            | b"iso2"
            | b"iso4"
            | b"iso5"
            | b"iso6"
            | b"mp41"
            | b"mp42"
            | b"avc1"
            | b"M4V "
            | b"dash"
            | b"mmp4"
    )
}

/// A hint for the refusal message: what the bytes look like instead.
fn describe(head: &[u8]) -> String {
    if head.is_empty() {
        return " (it is empty)".into();
    }
    if head.starts_with(b"%PDF") {
        return " (it is a PDF)".into();
    }
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        return " (it is an ISO media file of an unsupported brand)".into();
    }
    if head
        .iter()
        .all(|byte| byte.is_ascii_graphic() || byte.is_ascii_whitespace())
    {
        return " (it is text)".into();
    }
    String::new()
}

/// What is stored of one image.
#[derive(Debug, Clone)]
pub struct ProcessedImage {
    /// The re-encoded original, without metadata.
    pub original: Vec<u8>,
    /// Its MIME type (the upload's own format).
    pub content_type: &'static str,
    /// The preview, longest side at most 400 px.
    pub preview: Vec<u8>,
    /// The preview's MIME type (JPEG, or PNG when the image has alpha).
    pub preview_content_type: &'static str,
    /// Pixel size, after orientation.
    pub width: u32,
    pub height: u32,
    /// Blurhash of the image.
    pub blurhash: String,
}

/// Decodes an image of `format`, refusing it when it decodes to more than
/// `max_pixels`, and re-encodes it without metadata, with its preview and
/// blurhash.
pub fn process_image(
    bytes: &[u8],
    format: Format,
    max_pixels: u64,
) -> Result<ProcessedImage, Refusal> {
    let image_format = format
        .image_format()
        .ok_or_else(|| Refusal::Malformed("a video is not an image".into()))?;
    // The header's size first: a bomb is refused before any pixel is
    // allocated. The decoder's own limits then hold whatever the header said.
    let (width, height) = reader(bytes, image_format)
        .into_dimensions()
        .map_err(undecodable)?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(Refusal::TooManyPixels {
            pixels,
            limit: max_pixels,
        });
    }
    let (original, first_frame) = if format == Format::Gif {
        reencode_gif(bytes, max_pixels)?
    } else {
        let mut reader = reader(bytes, image_format);
        let mut limits = image::Limits::default();
        // Four bytes a pixel (RGBA8), twice over for the decoder's buffers.
        limits.max_alloc = Some(max_pixels.saturating_mul(8));
        reader.limits(limits);
        let mut decoder = reader.into_decoder().map_err(undecodable)?;
        let orientation = decoder.orientation().map_err(undecodable)?;
        let mut image = DynamicImage::from_decoder(decoder).map_err(undecodable)?;
        image.apply_orientation(orientation);
        let original = encode(&image, format)?;
        (original, image)
    };
    let preview_image = first_frame.thumbnail(PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE);
    let (preview, preview_content_type) = if preview_image.color().has_alpha() {
        let mut out = Vec::new();
        preview_image
            .write_with_encoder(PngEncoder::new(&mut out))
            .map_err(encoding)?;
        (out, "image/png")
    } else {
        let mut out = Vec::new();
        preview_image
            .to_rgb8()
            .write_with_encoder(JpegEncoder::new_with_quality(
                &mut out,
                PREVIEW_JPEG_QUALITY,
            ))
            .map_err(encoding)?;
        (out, "image/jpeg")
    };
    let small = first_frame
        .thumbnail(BLURHASH_SOURCE_SIDE, BLURHASH_SOURCE_SIDE)
        .to_rgba8();
    let blurhash = blurhash::encode(
        BLURHASH_COMPONENTS.0,
        BLURHASH_COMPONENTS.1,
        small.width(),
        small.height(),
        small.as_raw(),
    )
    .map_err(|error| Refusal::Undecodable(format!("no blurhash: {error}")))?;
    Ok(ProcessedImage {
        original,
        content_type: format.content_type(),
        preview,
        preview_content_type,
        width: first_frame.width(),
        height: first_frame.height(),
        blurhash,
    })
}

fn reader(bytes: &[u8], format: ImageFormat) -> ImageReader<Cursor<&[u8]>> {
    ImageReader::with_format(Cursor::new(bytes), format)
}

fn undecodable(error: image::ImageError) -> Refusal {
    match error {
        image::ImageError::Limits(_) => Refusal::DecodeLimit,
        other => Refusal::Undecodable(other.to_string()),
    }
}

fn encoding(error: image::ImageError) -> Refusal {
    Refusal::Undecodable(format!("cannot re-encode: {error}"))
}

/// The image in its own format again, from pixels only.
fn encode(image: &DynamicImage, format: Format) -> Result<Vec<u8>, Refusal> {
    let mut out = Vec::new();
    match format {
        Format::Jpeg => image
            .to_rgb8()
            .write_with_encoder(JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)),
        Format::Png => image.write_with_encoder(PngEncoder::new(&mut out)),
        // The WebP encoder is lossless: pixels are kept exactly.
        Format::WebP => image
            .to_rgba8()
            .write_with_encoder(WebPEncoder::new_lossless(&mut out)),
        Format::Gif | Format::Mp4 => unreachable!("encoded elsewhere"),
    }
    .map_err(encoding)?;
    Ok(out)
}

/// Every frame of a GIF, re-encoded (animation and looping kept, comments
/// and application blocks dropped), and the first frame for the preview.
/// Frames count against `max_pixels` together: a small GIF of a million
/// frames is a bomb too.
fn reencode_gif(bytes: &[u8], max_pixels: u64) -> Result<(Vec<u8>, DynamicImage), Refusal> {
    let decoder = GifDecoder::new(Cursor::new(bytes)).map_err(undecodable)?;
    let (width, height) = decoder.dimensions();
    let frame_pixels = u64::from(width) * u64::from(height);
    let mut total = 0u64;
    let mut frames = Vec::new();
    for frame in decoder.into_frames() {
        total = total.saturating_add(frame_pixels);
        if total > max_pixels {
            return Err(Refusal::TooManyPixels {
                pixels: total,
                limit: max_pixels,
            });
        }
        frames.push(frame.map_err(undecodable)?);
    }
    let first = frames
        .first()
        .map(|frame| DynamicImage::ImageRgba8(frame.buffer().clone()))
        .ok_or_else(|| Refusal::Undecodable("the GIF has no frames".into()))?;
    let mut out = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut out);
        encoder.set_repeat(Repeat::Infinite).map_err(encoding)?;
        encoder.encode_frames(frames).map_err(encoding)?;
    }
    Ok((out, first))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage, Rgba, RgbaImage};

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = RgbImage::from_fn(width, height, |x, y| {
            Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
        });
        let mut out = Vec::new();
        image.write_with_encoder(PngEncoder::new(&mut out)).unwrap();
        out
    }

    #[test]
    fn formats_come_from_the_bytes() {
        assert_eq!(sniff(&png(2, 2)).unwrap(), Format::Png);
        assert_eq!(
            sniff(b"\xFF\xD8\xFF\xE0\0\x10JFIF\0").unwrap(),
            Format::Jpeg
        );
        assert_eq!(sniff(b"GIF89a\x01\0\x01\0\0\0").unwrap(), Format::Gif);
        assert_eq!(sniff(b"RIFF\x10\0\0\0WEBPVP8 ").unwrap(), Format::WebP);
        assert_eq!(sniff(b"\0\0\0\x20ftypisom\0\0").unwrap(), Format::Mp4);
        let text = sniff(b"hello, this is not a jpeg").unwrap_err();
        assert_eq!(text.reason(), "unsupported_type");
        assert!(text.to_string().contains("it is text"), "{text}");
        assert!(sniff(b"").unwrap_err().to_string().contains("empty"));
        // HEIF shares MP4's box layout; it is not a video.
        assert!(sniff(b"\0\0\0\x18ftypheic\0\0").is_err());
    }

    #[test]
    fn images_keep_their_pixels_and_get_a_preview_and_blurhash() {
        let processed = process_image(&png(1000, 500), Format::Png, 10_000_000).unwrap();
        assert_eq!((processed.width, processed.height), (1000, 500));
        assert_eq!(processed.content_type, "image/png");
        let original = image::load_from_memory(&processed.original).unwrap();
        let source = image::load_from_memory(&png(1000, 500)).unwrap();
        assert_eq!(original.to_rgb8(), source.to_rgb8());
        let preview = image::load_from_memory(&processed.preview).unwrap();
        assert_eq!((preview.width(), preview.height()), (400, 200));
        assert_eq!(processed.preview_content_type, "image/jpeg");
        assert!(processed.blurhash.len() >= 6, "{}", processed.blurhash);
    }

    #[test]
    fn bombs_are_refused_before_decoding() {
        let refusal = process_image(&png(3000, 3000), Format::Png, 1_000_000).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::TooManyPixels {
                pixels: 9_000_000,
                limit: 1_000_000
            }
        );
    }

    #[test]
    fn truncated_images_are_undecodable() {
        let bytes = png(64, 64);
        let refusal = process_image(&bytes[..bytes.len() / 2], Format::Png, 1_000_000).unwrap_err();
        assert_eq!(refusal.reason(), "undecodable", "{refusal}");
    }

    /// A JPEG carrying an EXIF block with a GPS position, as phones write
    /// them: the stored file has no EXIF left, and the same size.
    #[test]
    fn exif_and_gps_are_stripped() {
        let image = RgbImage::from_pixel(32, 16, Rgb([200, 10, 10]));
        let mut jpeg = Vec::new();
        image
            .write_with_encoder(JpegEncoder::new_with_quality(&mut jpeg, 95))
            .unwrap();
        let payload = b"Exif\0\0MM\0\x2a\0\0\0\x08GPSLatitude 48.8584 N GPSLongitude 2.2945 E";
        let mut segment = vec![0xFF, 0xE1];
        segment.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        segment.extend_from_slice(payload);
        let mut with_exif = jpeg[..2].to_vec();
        with_exif.extend_from_slice(&segment);
        with_exif.extend_from_slice(&jpeg[2..]);
        assert!(contains(&with_exif, b"GPSLatitude"));
        let processed = process_image(&with_exif, Format::Jpeg, 1_000_000).unwrap();
        assert!(!contains(&processed.original, b"Exif"));
        assert!(!contains(&processed.original, b"GPS"));
        assert!(!contains(&processed.preview, b"Exif"));
        assert_eq!((processed.width, processed.height), (32, 16));
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack
            .windows(needle.len())
            .any(|window| window == needle)
    }

    #[test]
    fn transparent_previews_stay_png() {
        let image = RgbaImage::from_pixel(10, 10, Rgba([1, 2, 3, 4]));
        let mut bytes = Vec::new();
        image
            .write_with_encoder(PngEncoder::new(&mut bytes))
            .unwrap();
        let processed = process_image(&bytes, Format::Png, 1_000).unwrap();
        assert_eq!(processed.preview_content_type, "image/png");
    }

    #[test]
    fn animated_gifs_keep_their_frames_within_the_pixel_budget() {
        let frames: Vec<image::Frame> = (0..3)
            .map(|index| {
                image::Frame::new(RgbaImage::from_pixel(20, 10, Rgba([index * 80, 0, 0, 255])))
            })
            .collect();
        let mut bytes = Vec::new();
        GifEncoder::new(&mut bytes)
            .encode_frames(frames.clone())
            .unwrap();
        let processed = process_image(&bytes, Format::Gif, 1_000).unwrap();
        let decoder = GifDecoder::new(Cursor::new(&processed.original[..])).unwrap();
        assert_eq!(decoder.into_frames().count(), 3);
        // 3 frames of 200 pixels: over a budget of 500.
        let refusal = process_image(&bytes, Format::Gif, 500).unwrap_err();
        assert_eq!(refusal.reason(), "too_many_pixels");
    }
}
