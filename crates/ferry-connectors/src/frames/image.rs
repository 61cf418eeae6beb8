//! Image codecs: PNG (`png` crate), JPEG (system libjpeg-turbo through `turbojpeg`) and WebP
//! (bundled libwebp through `webp`), all to and from 8-bit RGB.
//!
//! Every decoder reads the image's declared size from its header and checks it against
//! [`MAX_SIDE`] and [`MAX_PIXELS`] before allocating pixel memory.

use std::cell::RefCell;
use std::io::Cursor;

use super::{FrameError, ImageFormat, ImageTarget};

/// The largest width or height Ferry decodes or accepts, in pixels.
pub const MAX_SIDE: u32 = 16_384;
/// The largest width × height Ferry decodes or accepts (64 MiP: 192 MiB of RGB8).
pub const MAX_PIXELS: u64 = 64 << 20;
/// The largest width or height WebP can hold.
const WEBP_MAX_SIDE: u32 = 16_383;
/// JPEG chroma subsampling, as Pillow and most cameras write it.
const JPEG_SUBSAMPLING: turbojpeg::Subsamp = turbojpeg::Subsamp::Sub2x2;

/// An 8-bit RGB image: `height` rows of `width` × 3 bytes, top row first, no padding.
#[derive(Clone, PartialEq, Eq)]
pub struct RgbImage {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl RgbImage {
    /// An image from its pixels; refuses a buffer whose length is not `width × height × 3`
    /// and sizes beyond [`MAX_SIDE`] / [`MAX_PIXELS`].
    pub fn new(width: u32, height: u32, pixels: Vec<u8>) -> Result<Self, FrameError> {
        check_dimensions(width.into(), height.into())?;
        let expected = u64::from(width) * u64::from(height) * 3;
        if pixels.len() as u64 != expected {
            return Err(FrameError::PixelBuffer {
                width,
                height,
                len: pixels.len(),
                expected,
            });
        }
        Ok(RgbImage {
            width,
            height,
            pixels,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The pixels, R, G, B per pixel, row after row.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// The pixel buffer.
    pub fn into_pixels(self) -> Vec<u8> {
        self.pixels
    }

    fn width_usize(&self) -> usize {
        self.width as usize
    }

    fn height_usize(&self) -> usize {
        self.height as usize
    }
}

impl std::fmt::Debug for RgbImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RgbImage({}×{})", self.width, self.height)
    }
}

/// Refuses sizes beyond [`MAX_SIDE`] per side or [`MAX_PIXELS`] in all, and empty images.
pub(crate) fn check_dimensions(width: u64, height: u64) -> Result<(), FrameError> {
    if width > u64::from(MAX_SIDE) || height > u64::from(MAX_SIDE) || width * height > MAX_PIXELS {
        return Err(FrameError::DimensionTooLarge {
            width,
            height,
            max_side: MAX_SIDE,
            max_pixels: MAX_PIXELS,
        });
    }
    if width == 0 || height == 0 {
        return Err(FrameError::decode(
            ImageFormat::RawRgb8,
            format!("image is {width}×{height} pixels, which is empty"),
        ));
    }
    Ok(())
}

/// The format an encoded image's first bytes name: PNG, JPEG or WebP.
pub fn sniff_format(bytes: &[u8]) -> Result<ImageFormat, FrameError> {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.starts_with(PNG) {
        Ok(ImageFormat::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Ok(ImageFormat::Jpeg)
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Ok(ImageFormat::Webp)
    } else {
        let first: Vec<String> = bytes.iter().take(12).map(|b| format!("{b:02x}")).collect();
        Err(FrameError::UnknownImageFormat {
            first_bytes: if first.is_empty() {
                "none: the image is empty".to_owned()
            } else {
                first.join(" ")
            },
        })
    }
}

/// The format and size of an encoded image from its header alone (no pixel is decoded);
/// sizes beyond the limits are refused.
pub fn probe_image(bytes: &[u8]) -> Result<(ImageFormat, u32, u32), FrameError> {
    let format = sniff_format(bytes)?;
    let (width, height) = match format {
        ImageFormat::Png => {
            let mut decoder = png::Decoder::new(Cursor::new(bytes));
            let info = decoder
                .read_header_info()
                .map_err(|e| FrameError::decode(format, e))?;
            (info.width, info.height)
        }
        ImageFormat::Jpeg => with_decompressor(|d| {
            let header = d
                .read_header(bytes)
                .map_err(|e| FrameError::decode(format, e))?;
            Ok((saturating_u32(header.width), saturating_u32(header.height)))
        })?,
        _ => {
            let features = webp_features(bytes)?;
            (features.width(), features.height())
        }
    };
    check_dimensions(width.into(), height.into())?;
    Ok((format, width, height))
}

/// Decodes a PNG, JPEG or WebP image (told apart by its first bytes) to RGB8. Grey and
/// palette images are expanded, 16-bit samples reduced to 8 and alpha dropped.
pub fn decode_image(bytes: &[u8]) -> Result<(RgbImage, ImageFormat), FrameError> {
    let format = sniff_format(bytes)?;
    let image = match format {
        ImageFormat::Png => decode_png(bytes)?,
        ImageFormat::Jpeg => decode_jpeg(bytes)?,
        _ => decode_webp(bytes)?,
    };
    Ok((image, format))
}

/// Encodes `image` as `target` says; [`ImageTarget::Keep`] means lossless PNG here (an
/// already decoded image has no original encoding to keep).
pub fn encode_image(image: &RgbImage, target: &ImageTarget) -> Result<Vec<u8>, FrameError> {
    match *target {
        ImageTarget::Jpeg { quality } => encode_jpeg(image, quality),
        ImageTarget::Webp { quality } => encode_webp(image, quality),
        ImageTarget::Png | ImageTarget::Keep => encode_png(image),
    }
}

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

// --- PNG ---------------------------------------------------------------------------------

fn decode_png(bytes: &[u8]) -> Result<RgbImage, FrameError> {
    let err = |e: png::DecodingError| FrameError::decode(ImageFormat::Png, e);
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    // Palette → RGB, grey below 8 bits → 8, 16-bit → 8: the output is 8-bit grey, grey +
    // alpha, RGB or RGBA.
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let info = decoder.read_header_info().map_err(err)?;
    let (width, height) = (info.width, info.height);
    check_dimensions(width.into(), height.into())?;
    let mut reader = decoder.read_info().map_err(err)?;
    let (color, _) = reader.output_color_type();
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| FrameError::decode(ImageFormat::Png, "output size overflows"))?;
    let mut buf = vec![0u8; size];
    let frame = reader.next_frame(&mut buf).map_err(err)?;
    buf.truncate(frame.buffer_size());
    let pixels = match color {
        png::ColorType::Rgb => buf,
        png::ColorType::Rgba => buf
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        png::ColorType::Grayscale => buf.iter().flat_map(|&g| [g, g, g]).collect(),
        png::ColorType::GrayscaleAlpha => buf.chunks_exact(2).flat_map(|p| [p[0]; 3]).collect(),
        png::ColorType::Indexed => {
            return Err(FrameError::decode(
                ImageFormat::Png,
                "palette image was not expanded",
            ));
        }
    };
    RgbImage::new(width, height, pixels)
}

fn encode_png(image: &RgbImage) -> Result<Vec<u8>, FrameError> {
    let err = |e: png::EncodingError| FrameError::encode(ImageFormat::Png, e);
    let mut out = Vec::with_capacity(image.pixels.len() / 2);
    let mut encoder = png::Encoder::new(&mut out, image.width, image.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // fdeflate with adaptive filters: several times faster than zlib level 6 at a few
    // per cent more bytes, which suits a frame pipeline.
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().map_err(err)?;
    writer.write_image_data(&image.pixels).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(out)
}

// --- JPEG --------------------------------------------------------------------------------

thread_local! {
    // TurboJPEG handles are cheap to keep and not free to create: one of each per thread.
    static DECOMPRESSOR: RefCell<Option<turbojpeg::Decompressor>> = const { RefCell::new(None) };
    static COMPRESSOR: RefCell<Option<turbojpeg::Compressor>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's decompressor. A handle that failed is dropped, not reused:
/// libjpeg-turbo keeps state from a failed decode (a truncated JPEG made the next, valid frame
/// decode as 0×0 pixels).
fn with_decompressor<T>(
    f: impl FnOnce(&mut turbojpeg::Decompressor) -> Result<T, FrameError>,
) -> Result<T, FrameError> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let mut handle = match slot.take() {
            Some(handle) => handle,
            None => turbojpeg::Decompressor::new()
                .map_err(|e| FrameError::decode(ImageFormat::Jpeg, e))?,
        };
        let result = f(&mut handle);
        if result.is_ok() {
            *slot = Some(handle);
        }
        result
    })
}

/// Runs `f` with this thread's compressor; like the decompressor, one that failed is dropped.
fn with_compressor<T>(
    f: impl FnOnce(&mut turbojpeg::Compressor) -> Result<T, FrameError>,
) -> Result<T, FrameError> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let mut handle = match slot.take() {
            Some(handle) => handle,
            None => turbojpeg::Compressor::new()
                .map_err(|e| FrameError::encode(ImageFormat::Jpeg, e))?,
        };
        let result = f(&mut handle);
        if result.is_ok() {
            *slot = Some(handle);
        }
        result
    })
}

fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage, FrameError> {
    let err = |e: turbojpeg::Error| FrameError::decode(ImageFormat::Jpeg, e);
    with_decompressor(|d| {
        let header = d.read_header(bytes).map_err(err)?;
        check_dimensions(header.width as u64, header.height as u64)?;
        let (width, height) = (header.width, header.height);
        let mut pixels = vec![0u8; width * height * 3];
        let output = turbojpeg::Image {
            pixels: pixels.as_mut_slice(),
            width,
            pitch: width * 3,
            height,
            format: turbojpeg::PixelFormat::RGB,
        };
        d.decompress(bytes, output).map_err(err)?;
        RgbImage::new(width as u32, height as u32, pixels)
    })
}

fn encode_jpeg(image: &RgbImage, quality: u8) -> Result<Vec<u8>, FrameError> {
    let input = turbojpeg::Image {
        pixels: image.pixels.as_slice(),
        width: image.width_usize(),
        pitch: image.width_usize() * 3,
        height: image.height_usize(),
        format: turbojpeg::PixelFormat::RGB,
    };
    with_compressor(|c| {
        c.set_quality(i32::from(quality));
        c.set_subsamp(JPEG_SUBSAMPLING);
        c.compress_to_vec(input)
            .map_err(|e| FrameError::encode(ImageFormat::Jpeg, e))
    })
}

// --- WebP --------------------------------------------------------------------------------

fn webp_features(bytes: &[u8]) -> Result<webp::BitstreamFeatures, FrameError> {
    let features = webp::BitstreamFeatures::new(bytes).ok_or_else(|| {
        FrameError::decode(
            ImageFormat::Webp,
            "libwebp cannot read the bitstream header",
        )
    })?;
    if features.has_animation() {
        return Err(FrameError::decode(
            ImageFormat::Webp,
            "animated WebP is not supported",
        ));
    }
    Ok(features)
}

fn decode_webp(bytes: &[u8]) -> Result<RgbImage, FrameError> {
    let features = webp_features(bytes)?;
    let (width, height) = (features.width(), features.height());
    check_dimensions(width.into(), height.into())?;
    let decoded = webp::Decoder::new(bytes)
        .decode()
        .ok_or_else(|| FrameError::decode(ImageFormat::Webp, "libwebp refused the data"))?;
    let pixels = if decoded.is_alpha() {
        decoded
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect()
    } else {
        decoded.to_vec()
    };
    RgbImage::new(decoded.width(), decoded.height(), pixels)
}

fn encode_webp(image: &RgbImage, quality: u8) -> Result<Vec<u8>, FrameError> {
    if image.width > WEBP_MAX_SIDE || image.height > WEBP_MAX_SIDE {
        return Err(FrameError::TooLargeForFormat {
            format: super::error::FormatName(ImageFormat::Webp),
            width: image.width,
            height: image.height,
            max_side: WEBP_MAX_SIDE,
        });
    }
    webp::Encoder::from_rgb(&image.pixels, image.width, image.height)
        .encode_simple(false, f32::from(quality))
        .map(|memory| memory.to_vec())
        .map_err(|e| FrameError::encode(ImageFormat::Webp, format!("{e:?}")))
}
