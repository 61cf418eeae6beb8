use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use super::*;

mod conversion;
mod hostile;

// --- generated frames --------------------------------------------------------------------

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A street-camera-like test scene: a two-axis gradient, filled rectangles and discs in random
/// colours, and per-pixel noise of ±`noise`.
fn scene(width: u32, height: u32, seed: u64, noise: u8) -> RgbImage {
    let (w, h) = (width as usize, height as usize);
    let mut rng = Rng(seed);
    let mut px = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            let i = (y * w + x) * 3;
            px[i] = (x * 255 / w) as u8;
            px[i + 1] = (y * 255 / h) as u8;
            px[i + 2] = (((x + y) * 255) / (w + h)) as u8 / 2 + 64;
        }
    }
    for _ in 0..14 {
        let (x0, y0) = (rng.below(w as u64) as usize, rng.below(h as u64) as usize);
        let (rw, rh) = (
            rng.below(w as u64 / 4) as usize + 8,
            rng.below(h as u64 / 4) as usize + 8,
        );
        let colour = [
            rng.below(256) as u8,
            rng.below(256) as u8,
            rng.below(256) as u8,
        ];
        for y in y0..(y0 + rh).min(h) {
            for x in x0..(x0 + rw).min(w) {
                px[(y * w + x) * 3..][..3].copy_from_slice(&colour);
            }
        }
    }
    for _ in 0..10 {
        let (cx, cy) = (rng.below(w as u64) as i64, rng.below(h as u64) as i64);
        let r = rng.below(h as u64 / 6) as i64 + 6;
        let colour = [
            rng.below(256) as u8,
            rng.below(256) as u8,
            rng.below(256) as u8,
        ];
        for y in (cy - r).max(0)..(cy + r).min(h as i64) {
            for x in (cx - r).max(0)..(cx + r).min(w as i64) {
                if (x - cx).pow(2) + (y - cy).pow(2) <= r * r {
                    px[(y as usize * w + x as usize) * 3..][..3].copy_from_slice(&colour);
                }
            }
        }
    }
    if noise > 0 {
        let span = 2 * u64::from(noise) + 1;
        for v in &mut px {
            let d = rng.below(span) as i16 - i16::from(noise);
            *v = (i16::from(*v) + d).clamp(0, 255) as u8;
        }
    }
    RgbImage::new(width, height, px).unwrap()
}

/// A smooth, photograph-like image: overlapping low-frequency waves and soft blobs, with a
/// little sensor noise (±2).
fn smooth(width: u32, height: u32, seed: u64) -> RgbImage {
    let (w, h) = (width as usize, height as usize);
    let mut rng = Rng(seed);
    let blobs: Vec<(f64, f64, f64, [f64; 3])> = (0..6)
        .map(|_| {
            let c = [
                rng.below(200) as f64 - 100.0,
                rng.below(200) as f64 - 100.0,
                rng.below(200) as f64 - 100.0,
            ];
            (
                rng.below(w as u64) as f64,
                rng.below(h as u64) as f64,
                (rng.below(h as u64 / 4) + h as u64 / 8) as f64,
                c,
            )
        })
        .collect();
    let mut px = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f64 / w as f64, y as f64 / h as f64);
            let mut c = [
                120.0 + 60.0 * (fx * 5.0 + fy * 2.0).sin(),
                110.0 + 50.0 * (fy * 7.0 - fx * 3.0).cos(),
                100.0 + 40.0 * ((fx + fy) * 4.0).sin(),
            ];
            for (bx, by, r, colour) in &blobs {
                let d2 = ((x as f64 - bx).powi(2) + (y as f64 - by).powi(2)) / (r * r);
                let weight = (-d2).exp();
                for k in 0..3 {
                    c[k] += colour[k] * weight;
                }
            }
            for k in 0..3 {
                let n = rng.below(5) as f64 - 2.0;
                px[(y * w + x) * 3 + k] = (c[k] + n).clamp(0.0, 255.0) as u8;
            }
        }
    }
    RgbImage::new(width, height, px).unwrap()
}

fn png_of(image: &RgbImage) -> Vec<u8> {
    encode_image(image, &ImageTarget::Png).unwrap()
}

fn frame_json(image_field: (&str, serde_json::Value)) -> Vec<u8> {
    let mut message = json!({
        "frame_id": "frame_001",
        "camera_id": "camera_007",
        "timestamp": 1_764_000_000.25,
        "detections": [
            {"label": "car", "confidence": 0.93, "bbox": [10, 20.5, 100, 50]},
            {"label": "person", "confidence": 0.5, "x": 1, "y": 2, "w": 3, "h": 4}
        ],
        "location": "gate 3",
        "sequence": 42,
        "night": false,
    });
    message[image_field.0] = image_field.1;
    serde_json::to_vec(&message).unwrap()
}

fn png_frame(image: &RgbImage) -> (Vec<u8>, Vec<u8>) {
    let png = png_of(image);
    let message = frame_json(("image_base64", json!(STANDARD.encode(&png))));
    (png, message)
}

/// Decodes a transformed frame's image and checks its format and size.
fn decoded(out: &Transformed, format: ImageFormat) -> RgbImage {
    assert_eq!(out.frame.format(), format);
    let (image, found) = decode_image(&out.frame.image).unwrap();
    assert_eq!(found, format);
    assert_eq!(
        (image.width(), image.height()),
        (out.frame.width, out.frame.height)
    );
    image
}

/// A PNG that declares `width`×`height` and holds nothing else.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= u32::from(b);
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
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, adaptive, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    png
}

fn array_json(image: &RgbImage) -> String {
    let w = image.width() as usize;
    let rows: Vec<String> = image
        .pixels()
        .chunks(w * 3)
        .map(|row| {
            let pixels: Vec<String> = row
                .chunks(3)
                .map(|p| format!("[{},{},{}]", p[0], p[1], p[2]))
                .collect();
            format!("[{}]", pixels.join(","))
        })
        .collect();
    format!("[{}]", rows.join(","))
}

fn array_frame(array: &str) -> Vec<u8> {
    format!(r#"{{"frame_id": "a1", "camera_id": "c1", "timestamp": 5, "image_array": {array}}}"#)
        .into_bytes()
}
