//! Camera frames for the `bridge` job: the seed's JSON messages (ids, timestamp, a base64
//! image file or a nested pixel array, detections) become Protocol Buffers
//! [`ProcessedFrame`]s (`proto/frame.proto`, package `ferry.frames.v1`) whose image is
//! re-encoded as JPEG, WebP or PNG, or kept as it came.
//!
//! ```no_run
//! use ferry_connectors::frames::{ImageTarget, transform_json_frame};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let message = br#"{"frame_id": "f1", "camera_id": "cam1", "image_base64": "..."}"#;
//! let target: ImageTarget = "jpeg:85".parse()?;
//! let out = transform_json_frame(message, &target)?;
//! println!("{} bytes → {} bytes", out.source_bytes, out.bytes.len());
//! # Ok(()) }
//! ```
//!
//! - [`transform_json_frame`]: what the JSON may hold and how each field is read.
//! - [`decode_image`] / [`encode_image`]: PNG (`png` crate), JPEG (libjpeg-turbo), WebP
//!   (libwebp), to and from [`RgbImage`].
//! - [`psnr`]: how close a lossy copy is to its original.
//!
//! Untrusted input gives a [`FrameError`], never a panic: image sizes are checked against
//! [`MAX_SIDE`] and [`MAX_PIXELS`] from the headers before any pixel memory is allocated.

mod error;
mod image;
mod json;
mod proto;
mod quality;
mod target;
#[cfg(test)]
mod tests;

pub use error::{FormatName, FrameError, ImageArrayError};
pub use image::{MAX_PIXELS, MAX_SIDE, RgbImage, decode_image, encode_image, probe_image};
/// prost's trait: `encode_to_vec()`, `decode()` and friends on [`ProcessedFrame`].
pub use prost::Message;
pub use proto::{Detection, ImageFormat, ProcessedFrame};
pub use quality::psnr;
pub use target::ImageTarget;

use json::SourceImage;

/// A transformed frame: the message, its Protocol Buffers encoding and the sizes to report.
#[derive(Debug, Clone)]
pub struct Transformed {
    /// The frame.
    pub frame: ProcessedFrame,
    /// `frame` encoded as Protocol Buffers: what the sink writes.
    pub bytes: Vec<u8>,
    /// Size of the whole source message in bytes.
    pub source_bytes: usize,
    /// Size of the source message's image in bytes (see `ProcessedFrame.source_size`).
    pub source_image_bytes: usize,
    /// Size of the frame's (re-encoded) image in bytes.
    pub image_bytes: usize,
}

/// Reads one JSON camera frame and re-encodes its image as `target` says.
///
/// The message is an object with:
/// - `frame_id`, `camera_id` (required): non-empty strings (numbers are taken as written);
/// - `timestamp` (optional, 0 when absent): Unix seconds as a number or numeric string, or an
///   RFC 3339 / ISO 8601 time (UTC when it has no offset);
/// - exactly one image: `image_base64`, a PNG, JPEG or WebP file in standard or URL-safe
///   base64, padded or not, optionally as a `data:image/...;base64,` URL; or `image_array`,
///   H×W×3 nested lists (or H×W grey) of integers 0..=255;
/// - `detections` (optional): a list of objects with `label`, `confidence` and either
///   `bbox: [x, y, w, h]` or `x`, `y`, `w`, `h`;
/// - anything else goes to `metadata`: strings as they are, other values in their JSON
///   spelling; the entries of a `metadata` object are merged in (a later key wins).
///
/// With [`ImageTarget::Keep`] an image file is passed through unchanged after its header is
/// checked (format and size; its pixels are not decoded) and an `image_array` becomes PNG;
/// any other target decodes the image and encodes it anew.
pub fn transform_json_frame(
    message: &[u8],
    target: &ImageTarget,
) -> Result<Transformed, FrameError> {
    let parsed = json::parse(message)?;
    let source_image_bytes;
    let (image, format, quality, width, height) = match parsed.image {
        SourceImage::Encoded(bytes) => {
            source_image_bytes = bytes.len();
            if *target == ImageTarget::Keep {
                let (format, width, height) = probe_image(&bytes)?;
                (bytes, format, 0, width, height)
            } else {
                let (pixels, _) = decode_image(&bytes)?;
                let (format, quality) = encoding(target);
                let image = encode_image(&pixels, target)?;
                (image, format, quality, pixels.width(), pixels.height())
            }
        }
        SourceImage::Raw(pixels) => {
            source_image_bytes = pixels.pixels().len();
            let (format, quality) = encoding(target);
            let image = encode_image(&pixels, target)?;
            (image, format, quality, pixels.width(), pixels.height())
        }
    };
    let frame = ProcessedFrame {
        frame_id: parsed.frame_id,
        camera_id: parsed.camera_id,
        timestamp: parsed.timestamp,
        width,
        height,
        format: format as i32,
        image,
        quality,
        detections: parsed.detections,
        metadata: parsed.metadata,
        source_size: source_image_bytes as u64,
    };
    let bytes = frame.encode_to_vec();
    Ok(Transformed {
        image_bytes: frame.image.len(),
        source_bytes: message.len(),
        source_image_bytes,
        bytes,
        frame,
    })
}

/// The format and quality [`encode_image`] gives for `target`.
fn encoding(target: &ImageTarget) -> (ImageFormat, u32) {
    match *target {
        ImageTarget::Jpeg { quality } => (ImageFormat::Jpeg, quality.into()),
        ImageTarget::Webp { quality } => (ImageFormat::Webp, quality.into()),
        ImageTarget::Png | ImageTarget::Keep => (ImageFormat::Png, 0),
    }
}
