//! What can go wrong turning a message into a [`ProcessedFrame`](super::ProcessedFrame).

use ferry_core::error::{Classify, ErrorClass};

use super::ImageFormat;

/// Why a frame message could not be transformed. Every variant but [`FrameError::Encode`] is a
/// fault of the message (count it, skip it, keep going); none is retryable.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The message is not valid JSON (syntax error, truncation, trailing data).
    #[error("message is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The message is valid JSON but not an object.
    #[error("message is a JSON {found}, expected an object with frame_id, camera_id and an image")]
    NotAnObject {
        /// What it is instead: "array", "string", "number", "boolean" or "null".
        found: &'static str,
    },
    /// A required field is absent (or `null`).
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field holds a value of the wrong type or out of range.
    #[error("field `{field}`: {reason}")]
    InvalidField {
        /// The field's path, e.g. `timestamp` or `detections[2].confidence`.
        field: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// `image_base64` is not base64 (standard or URL-safe alphabet).
    #[error("field `image_base64` is not valid base64: {0}")]
    Base64(#[source] base64::DecodeError),
    /// `image_array` is not a rectangular H×W×3 (or H×W grey) array of 0..=255 integers.
    #[error("field `image_array`: {0}")]
    ImageArray(ImageArrayError),
    /// The image bytes start with none of the signatures of PNG, JPEG or WebP.
    #[error("image is neither PNG nor JPEG nor WebP (first bytes {first_bytes})")]
    UnknownImageFormat {
        /// The first (up to 12) bytes in hex.
        first_bytes: String,
    },
    /// The image is larger than Ferry decodes (checked before any pixel memory is allocated).
    #[error(
        "image dimension too large: {width}×{height} pixels (at most {max_side} per side and {max_pixels} pixels in all)"
    )]
    DimensionTooLarge {
        /// Declared width in pixels.
        width: u64,
        /// Declared height in pixels.
        height: u64,
        /// The limit per side, [`MAX_SIDE`](super::MAX_SIDE).
        max_side: u32,
        /// The limit on width × height, [`MAX_PIXELS`](super::MAX_PIXELS).
        max_pixels: u64,
    },
    /// The image has the signature of `format` but cannot be decoded.
    #[error("{format} image cannot be decoded: {reason}")]
    Decode {
        /// The format its signature names.
        format: FormatName,
        /// The codec's message.
        reason: String,
    },
    /// Pixels and dimensions passed to [`RgbImage::new`](super::RgbImage::new) disagree.
    #[error("{len} pixel bytes do not make a {width}×{height} RGB image ({expected} bytes)")]
    PixelBuffer {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Bytes given.
        len: usize,
        /// Bytes a `width`×`height` RGB8 image needs.
        expected: u64,
    },
    /// The image is larger than the target format can hold.
    #[error(
        "a {width}×{height} image is too large for {format}, which holds at most {max_side} pixels per side"
    )]
    TooLargeForFormat {
        /// The target format.
        format: FormatName,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// The format's limit per side.
        max_side: u32,
    },
    /// The encoder failed (a bug or resource exhaustion, not a fault of the message).
    #[error("cannot encode the image as {format}: {reason}")]
    Encode {
        /// The target format.
        format: FormatName,
        /// The codec's message.
        reason: String,
    },
    /// An image target (`--image-format`, config) is not one of the accepted forms.
    #[error(
        "invalid image target `{0}`: expected `keep`, `png`, `jpeg:Q` or `webp:Q` with Q from 1 to 100 (e.g. `jpeg:85`)"
    )]
    InvalidTarget(String),
}

/// What is wrong with an `image_array`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageArrayError {
    /// The array does not have the H×W×3 (or H×W) shape; says where.
    #[error("{0}")]
    Shape(String),
    /// No rows, or a first row without pixels.
    #[error("no pixels (no rows, or an empty first row)")]
    Empty,
    /// A row's length differs from the first row's.
    #[error("row {row} has {got} pixels, expected {expected}")]
    RaggedRow {
        /// Row index, from 0.
        row: usize,
        /// Its number of pixels.
        got: usize,
        /// The first row's number of pixels.
        expected: usize,
    },
    /// A pixel has the wrong number of channels, or mixes grey and RGB.
    #[error("row {row} pixel {col}: {reason}")]
    BadPixel {
        /// Row index, from 0.
        row: usize,
        /// Pixel index in the row, from 0.
        col: usize,
        /// What is wrong.
        reason: String,
    },
    /// Too many rows or pixels (checked while reading, before the pixels are stored).
    #[error("more than {max_side} rows or pixels per row, or more than {max_pixels} pixels")]
    TooLarge {
        /// The limit per side.
        max_side: u32,
        /// The limit on width × height.
        max_pixels: u64,
    },
}

/// An image format's name in messages (the proto enum without its prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatName(pub ImageFormat);

impl std::fmt::Display for FormatName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            ImageFormat::Unspecified => "unspecified",
            ImageFormat::Jpeg => "JPEG",
            ImageFormat::Webp => "WebP",
            ImageFormat::Png => "PNG",
            ImageFormat::RawRgb8 => "raw RGB8",
        })
    }
}

impl FrameError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        FrameError::InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn decode(format: ImageFormat, reason: impl std::fmt::Display) -> Self {
        FrameError::Decode {
            format: FormatName(format),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn encode(format: ImageFormat, reason: impl std::fmt::Display) -> Self {
        FrameError::Encode {
            format: FormatName(format),
            reason: reason.to_string(),
        }
    }
}

impl Classify for FrameError {
    fn class(&self) -> ErrorClass {
        match self {
            FrameError::Encode { .. } => ErrorClass::Internal,
            _ => ErrorClass::User,
        }
    }

    fn retryable(&self) -> bool {
        false
    }
}
