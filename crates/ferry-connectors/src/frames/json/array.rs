//! `image_array`, read straight into an RGB buffer.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, SeqAccess, Visitor};

use super::super::image::{MAX_PIXELS, MAX_SIDE};
use super::super::{FrameError, ImageArrayError, RgbImage};
use super::State;

// --- image_array -------------------------------------------------------------------------

/// The pixels read so far.
#[derive(Default)]
struct Pixels {
    rgb: Vec<u8>,
    /// The first row's length.
    width: Option<usize>,
    /// Whether pixels are grey numbers (`true`) or `[R, G, B]` lists (`false`).
    grey: Option<bool>,
    rows: usize,
}

fn too_large() -> FrameError {
    FrameError::ImageArray(ImageArrayError::TooLarge {
        max_side: MAX_SIDE,
        max_pixels: MAX_PIXELS,
    })
}

fn bad_pixel(row: usize, col: usize, reason: impl Into<String>) -> FrameError {
    FrameError::ImageArray(ImageArrayError::BadPixel {
        row,
        col,
        reason: reason.into(),
    })
}

/// Reads `image_array` into an RGB buffer.
pub(super) struct ArraySeed<'s> {
    pub(super) state: &'s mut State,
}

impl<'de> DeserializeSeed<'de> for ArraySeed<'_> {
    type Value = Option<RgbImage>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ArraySeed<'_> {
    type Value = Option<RgbImage>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of rows of pixels, [R, G, B] lists or grey values 0..=255")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut pixels = Pixels::default();
        while seq
            .next_element_seed(RowSeed {
                pixels: &mut pixels,
                state: &mut *self.state,
            })?
            .is_some()
        {}
        let (Some(width), rows) = (pixels.width, pixels.rows) else {
            return Err(self
                .state
                .fail(FrameError::ImageArray(ImageArrayError::Empty)));
        };
        // Both are at most MAX_SIDE (checked per row).
        RgbImage::new(width as u32, rows as u32, pixels.rgb)
            .map(Some)
            .map_err(|e| self.state.fail(e))
    }
}

/// Reads one row, checks its length against the first row's.
struct RowSeed<'a> {
    pixels: &'a mut Pixels,
    state: &'a mut State,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row {} as a list of pixels", self.pixels.rows)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let row = self.pixels.rows;
        if row >= MAX_SIDE as usize {
            return Err(self.state.fail(too_large()));
        }
        let mut col = 0;
        while seq
            .next_element_seed(PixelSeed {
                pixels: &mut *self.pixels,
                state: &mut *self.state,
                row,
                col,
            })?
            .is_some()
        {
            col += 1;
            if col > MAX_SIDE as usize {
                return Err(self.state.fail(too_large()));
            }
        }
        match self.pixels.width {
            None if col == 0 => {
                return Err(self
                    .state
                    .fail(FrameError::ImageArray(ImageArrayError::Empty)));
            }
            None => self.pixels.width = Some(col),
            Some(expected) if expected != col => {
                return Err(self
                    .state
                    .fail(FrameError::ImageArray(ImageArrayError::RaggedRow {
                        row,
                        got: col,
                        expected,
                    })));
            }
            Some(_) => {}
        }
        self.pixels.rows += 1;
        if (self.pixels.rows * col) as u64 > MAX_PIXELS {
            return Err(self.state.fail(too_large()));
        }
        Ok(())
    }
}

/// Reads one pixel: a grey value or an `[R, G, B]` list.
struct PixelSeed<'a> {
    pixels: &'a mut Pixels,
    state: &'a mut State,
    row: usize,
    col: usize,
}

impl PixelSeed<'_> {
    /// Fixes the array's kind on its first pixel, refuses a mix.
    fn kind<E: de::Error>(&mut self, grey: bool) -> Result<(), E> {
        match self.pixels.grey {
            None => self.pixels.grey = Some(grey),
            Some(g) if g != grey => {
                let reason = if grey {
                    "is a grey value, but the first pixel is an [R, G, B] list"
                } else {
                    "is an [R, G, B] list, but the first pixel is a grey value"
                };
                return Err(self.state.fail(bad_pixel(self.row, self.col, reason)));
            }
            Some(_) => {}
        }
        Ok(())
    }

    fn grey<E: de::Error>(mut self, sample: Result<u8, String>) -> Result<(), E> {
        self.kind(true)?;
        match sample {
            Ok(v) => {
                self.pixels.rgb.extend_from_slice(&[v, v, v]);
                Ok(())
            }
            Err(reason) => Err(self.state.fail(bad_pixel(self.row, self.col, reason))),
        }
    }
}

impl<'de> DeserializeSeed<'de> for PixelSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PixelSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "row {} pixel {} as [R, G, B] or a grey value 0..=255",
            self.row, self.col
        )
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.grey(sample_u64(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.grey(sample_i64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.grey(sample_f64(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.kind(false)?;
        let (row, col) = (self.row, self.col);
        let mut rgb = [0u8; 3];
        for (i, channel) in rgb.iter_mut().enumerate() {
            match seq.next_element_seed(SampleSeed { row, col })? {
                Some(Ok(v)) => *channel = v,
                Some(Err(reason)) => {
                    return Err(self.state.fail(bad_pixel(
                        row,
                        col,
                        format!("channel {i}: {reason}"),
                    )));
                }
                None => {
                    return Err(self.state.fail(bad_pixel(
                        row,
                        col,
                        format!("has {i} channels, expected 3 (R, G, B)"),
                    )));
                }
            }
        }
        let mut extra = 0;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            extra += 1;
        }
        if extra > 0 {
            return Err(self.state.fail(bad_pixel(
                row,
                col,
                format!("has {} channels, expected 3 (R, G, B)", 3 + extra),
            )));
        }
        self.pixels.rgb.extend_from_slice(&rgb);
        Ok(())
    }
}

/// One channel value; a number out of range is `Err(reason)`, other types a serde error.
struct SampleSeed {
    row: usize,
    col: usize,
}

impl<'de> DeserializeSeed<'de> for SampleSeed {
    type Value = Result<u8, String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SampleSeed {
    type Value = Result<u8, String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "an integer 0..=255 in row {} pixel {}",
            self.row, self.col
        )
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(sample_u64(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(sample_i64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(sample_f64(v))
    }
}

fn sample_u64(v: u64) -> Result<u8, String> {
    u8::try_from(v).map_err(|_| format!("value {v} is outside 0..=255"))
}

fn sample_i64(v: i64) -> Result<u8, String> {
    u8::try_from(v).map_err(|_| format!("value {v} is outside 0..=255"))
}

/// Integral floats (`12.0`) are accepted, as some encoders write them.
fn sample_f64(v: f64) -> Result<u8, String> {
    if v.fract() == 0.0 && (0.0..=255.0).contains(&v) {
        Ok(v as u8)
    } else {
        Err(format!("value {v} is not an integer 0..=255"))
    }
}
