use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;

use super::*;

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

// --- the Protocol Buffers message --------------------------------------------------------

#[test]
fn protobuf_round_trip_keeps_every_field() {
    let frame = ProcessedFrame {
        frame_id: "frame_001".into(),
        camera_id: "camera_007".into(),
        timestamp: 1_764_000_000.125,
        width: 1280,
        height: 720,
        format: ImageFormat::Webp as i32,
        image: vec![0, 1, 2, 255, 128],
        quality: 80,
        detections: vec![
            Detection {
                label: "car".into(),
                confidence: 0.93,
                x: 10.0,
                y: 20.5,
                w: 100.0,
                h: 50.0,
            },
            Detection {
                label: "person".into(),
                confidence: 0.5,
                x: 1.0,
                y: 2.0,
                w: 3.0,
                h: 4.0,
            },
        ],
        metadata: [("location", "gate 3"), ("sequence", "42")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        source_size: 2_764_800,
    };
    let bytes = frame.encode_to_vec();
    let back = ProcessedFrame::decode(bytes.as_slice()).unwrap();
    assert_eq!(back, frame);
    assert_eq!(back.format(), ImageFormat::Webp);
    assert_eq!(back.detections[0].label, "car");
    assert_eq!(back.metadata["sequence"], "42");
    assert_eq!(back.source_size, 2_764_800);
    // Ordered maps: equal frames encode to equal bytes.
    assert_eq!(back.encode_to_vec(), bytes);
}

#[test]
fn transformed_bytes_decode_to_the_frame_with_all_fields_from_the_json() {
    let image = scene(320, 240, 7, 6);
    let (png, message) = png_frame(&image);
    let out = transform_json_frame(&message, &"jpeg:85".parse().unwrap()).unwrap();
    let frame = ProcessedFrame::decode(out.bytes.as_slice()).unwrap();
    assert_eq!(frame, out.frame);
    assert_eq!(frame.frame_id, "frame_001");
    assert_eq!(frame.camera_id, "camera_007");
    assert_eq!(frame.timestamp, 1_764_000_000.25);
    assert_eq!((frame.width, frame.height), (320, 240));
    assert_eq!(frame.format(), ImageFormat::Jpeg);
    assert_eq!(frame.quality, 85);
    assert_eq!(frame.source_size, png.len() as u64);
    assert_eq!(
        frame.detections,
        vec![
            Detection {
                label: "car".into(),
                confidence: 0.93,
                x: 10.0,
                y: 20.5,
                w: 100.0,
                h: 50.0
            },
            Detection {
                label: "person".into(),
                confidence: 0.5,
                x: 1.0,
                y: 2.0,
                w: 3.0,
                h: 4.0
            },
        ]
    );
    let metadata: Vec<(&str, &str)> = frame
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        metadata,
        [
            ("location", "gate 3"),
            ("night", "false"),
            ("sequence", "42")
        ]
    );
    assert_eq!(out.source_bytes, message.len());
    assert_eq!(out.source_image_bytes, png.len());
    assert_eq!(out.image_bytes, frame.image.len());
    assert!(
        out.bytes.len() < out.source_bytes / 3,
        "{} vs {}",
        out.bytes.len(),
        out.source_bytes
    );
}

// --- recompression quality ---------------------------------------------------------------

/// Re-encodes `image` (sent as base64 PNG) to `target`; returns the PSNR of the result and its
/// image size, after checking that it is smaller than the PNG.
fn recompress(image: &RgbImage, target: &str) -> (f64, usize, usize) {
    let (png, message) = png_frame(image);
    let target: ImageTarget = target.parse().unwrap();
    let out = transform_json_frame(&message, &target).unwrap();
    let format = match target {
        ImageTarget::Jpeg { .. } => ImageFormat::Jpeg,
        _ => ImageFormat::Webp,
    };
    let back = decoded(&out, format);
    assert!(
        out.image_bytes < png.len(),
        "{target}: {} bytes, PNG {} bytes",
        out.image_bytes,
        png.len()
    );
    (psnr(image, &back), out.image_bytes, png.len())
}

#[test]
fn png_scene_to_jpeg_85_keeps_psnr_above_30_db_and_is_smaller() {
    let image = scene(1280, 720, 1, 8);
    let (db, bytes, png) = recompress(&image, "jpeg:85");
    println!("noisy scene 1280×720, PNG {png} B → jpeg:85 {bytes} B, PSNR {db:.2} dB");
    assert!(db >= 30.0, "PSNR {db:.2} dB");
}

#[test]
fn png_scene_to_webp_80_keeps_psnr_above_30_db_and_is_smaller() {
    let image = scene(1280, 720, 1, 8);
    let (db, bytes, png) = recompress(&image, "webp:80");
    println!("noisy scene 1280×720, PNG {png} B → webp:80 {bytes} B, PSNR {db:.2} dB");
    assert!(db >= 30.0, "PSNR {db:.2} dB");
}

#[test]
fn smooth_natural_like_image_holds_the_psnr_bound_too() {
    let image = smooth(1280, 720, 99);
    for target in ["jpeg:85", "webp:80"] {
        let (db, bytes, png) = recompress(&image, target);
        println!("smooth image 1280×720, PNG {png} B → {target} {bytes} B, PSNR {db:.2} dB");
        assert!(db >= 30.0, "{target}: PSNR {db:.2} dB");
    }
}

#[test]
fn lower_quality_gives_fewer_bytes_and_lower_psnr() {
    let image = scene(640, 360, 3, 8);
    let jpeg = |q| encode_image(&image, &ImageTarget::Jpeg { quality: q }).unwrap();
    let (high, low) = (jpeg(95), jpeg(40));
    assert!(low.len() < high.len());
    let db = |bytes: &[u8]| psnr(&image, &decode_image(bytes).unwrap().0);
    assert!(db(&low) < db(&high));
}

#[test]
fn png_target_decodes_to_identical_pixels() {
    let image = scene(1280, 720, 2, 8);
    let (_, message) = png_frame(&image);
    let out = transform_json_frame(&message, &ImageTarget::Png).unwrap();
    assert_eq!(out.frame.quality, 0);
    let back = decoded(&out, ImageFormat::Png);
    assert_eq!(back, image);
    assert_eq!(psnr(&image, &back), f64::INFINITY);
}

#[test]
fn keep_passes_the_image_bytes_through_with_their_format() {
    let image = scene(320, 240, 4, 4);
    let jpeg = encode_image(&image, &ImageTarget::Jpeg { quality: 90 }).unwrap();
    let message = frame_json(("image_base64", json!(STANDARD.encode(&jpeg))));
    let out = transform_json_frame(&message, &ImageTarget::Keep).unwrap();
    assert_eq!(out.frame.image, jpeg);
    assert_eq!(out.frame.format(), ImageFormat::Jpeg);
    assert_eq!((out.frame.width, out.frame.height), (320, 240));
    assert_eq!(out.frame.quality, 0);
}

#[test]
fn webp_and_jpeg_inputs_are_decoded_too() {
    let image = scene(320, 240, 5, 4);
    for target in [
        ImageTarget::Webp { quality: 90 },
        ImageTarget::Jpeg { quality: 90 },
    ] {
        let bytes = encode_image(&image, &target).unwrap();
        let message = frame_json(("image_base64", json!(STANDARD.encode(&bytes))));
        let out = transform_json_frame(&message, &ImageTarget::Png).unwrap();
        let back = decoded(&out, ImageFormat::Png);
        assert!(psnr(&image, &back) > 30.0, "{target}");
    }
}

#[test]
fn grey_and_alpha_pngs_become_rgb() {
    let (w, h) = (5u32, 3u32);
    let encode = |color, data: &[u8]| {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(color);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(data).unwrap();
        writer.finish().unwrap();
        out
    };
    let grey: Vec<u8> = (0..w * h).map(|i| (i * 10) as u8).collect();
    let (image, format) = decode_image(&encode(png::ColorType::Grayscale, &grey)).unwrap();
    assert_eq!(format, ImageFormat::Png);
    assert_eq!(&image.pixels()[3..6], &[10, 10, 10]);
    let rgba: Vec<u8> = (0..w * h * 4).map(|i| i as u8).collect();
    let (image, _) = decode_image(&encode(png::ColorType::Rgba, &rgba)).unwrap();
    assert_eq!(&image.pixels()[..6], &[0, 1, 2, 4, 5, 6]);
}

// --- image_array -------------------------------------------------------------------------

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

#[test]
fn image_array_with_keep_becomes_lossless_png() {
    let image = scene(160, 90, 6, 8);
    let message = array_frame(&array_json(&image));
    let out = transform_json_frame(&message, &ImageTarget::Keep).unwrap();
    assert_eq!(out.source_image_bytes, 160 * 90 * 3);
    assert_eq!(out.frame.source_size, 160 * 90 * 3);
    assert_eq!(out.frame.quality, 0);
    assert_eq!(decoded(&out, ImageFormat::Png), image);
}

#[test]
fn image_array_to_jpeg_keeps_psnr_above_30_db() {
    let image = scene(640, 360, 8, 8);
    let message = array_frame(&array_json(&image));
    let out = transform_json_frame(&message, &"jpeg:85".parse().unwrap()).unwrap();
    assert_eq!(out.frame.quality, 85);
    let db = psnr(&image, &decoded(&out, ImageFormat::Jpeg));
    println!(
        "image_array 640×360 → jpeg:85 {} B, PSNR {db:.2} dB",
        out.image_bytes
    );
    assert!(db >= 30.0, "{db:.2} dB");
}

#[test]
fn grey_image_array_is_expanded_to_rgb() {
    let out =
        transform_json_frame(&array_frame("[[0, 128], [255.0, 7]]"), &ImageTarget::Keep).unwrap();
    let back = decoded(&out, ImageFormat::Png);
    assert_eq!(
        back.pixels(),
        &[0, 0, 0, 128, 128, 128, 255, 255, 255, 7, 7, 7]
    );
}

// --- lenient fields ----------------------------------------------------------------------

#[test]
fn base64_variants_decode_to_the_same_image() {
    let png = png_of(&scene(32, 24, 9, 4));
    let standard = STANDARD.encode(&png);
    let wrapped: String = standard
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    for text in [
        standard.clone(),
        standard.trim_end_matches('=').to_owned(),
        URL_SAFE_NO_PAD.encode(&png),
        format!("data:image/png;base64,{standard}"),
        wrapped,
    ] {
        let message = frame_json(("image_base64", json!(text)));
        let out = transform_json_frame(&message, &ImageTarget::Keep).unwrap();
        assert_eq!(out.frame.image, png);
    }
}

#[test]
fn timestamps_are_numbers_numeric_strings_or_rfc_3339() {
    let png = STANDARD.encode(png_of(&scene(8, 8, 1, 0)));
    let at = |ts: serde_json::Value| {
        let message =
            json!({"frame_id": "f", "camera_id": "c", "timestamp": ts, "image_base64": png});
        transform_json_frame(&serde_json::to_vec(&message).unwrap(), &ImageTarget::Keep)
            .map(|out| out.frame.timestamp)
    };
    assert_eq!(at(json!(1_700_000_000.5)).unwrap(), 1_700_000_000.5);
    assert_eq!(at(json!("1700000000.5")).unwrap(), 1_700_000_000.5);
    assert_eq!(
        at(json!("2023-11-14T22:13:20.5Z")).unwrap(),
        1_700_000_000.5
    );
    assert_eq!(
        at(json!("2023-11-15T00:13:20.5+02:00")).unwrap(),
        1_700_000_000.5
    );
    assert_eq!(at(json!(null)).unwrap(), 0.0);
    assert!(matches!(
        at(json!("yesterday")),
        Err(FrameError::InvalidField { ref field, .. }) if field == "timestamp"
    ));
    assert!(matches!(
        at(json!([1])),
        Err(FrameError::InvalidField { ref field, .. }) if field == "timestamp"
    ));
}

#[test]
fn metadata_object_and_other_fields_become_strings() {
    let png = STANDARD.encode(png_of(&scene(8, 8, 1, 0)));
    let message = json!({
        "frame_id": 17, "camera_id": "c", "image_base64": png,
        "metadata": {"site": "north", "lanes": 3, "gone": null},
        "tags": ["a", "b"], "speed": 12.5, "skipped": null,
    });
    let out =
        transform_json_frame(&serde_json::to_vec(&message).unwrap(), &ImageTarget::Keep).unwrap();
    assert_eq!(out.frame.frame_id, "17");
    let metadata: Vec<(&str, &str)> = out
        .frame
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        metadata,
        [
            ("lanes", "3"),
            ("site", "north"),
            ("speed", "12.5"),
            ("tags", r#"["a","b"]"#)
        ]
    );
}

// --- the image target --------------------------------------------------------------------

#[test]
fn image_targets_parse_and_display_their_accepted_forms() {
    for (text, target) in [
        ("keep", ImageTarget::Keep),
        ("png", ImageTarget::Png),
        ("jpeg:85", ImageTarget::Jpeg { quality: 85 }),
        ("JPEG:1", ImageTarget::Jpeg { quality: 1 }),
        ("webp:100", ImageTarget::Webp { quality: 100 }),
    ] {
        let parsed: ImageTarget = text.parse().unwrap();
        assert_eq!(parsed, target);
        assert_eq!(parsed.to_string(), text.to_ascii_lowercase());
    }
    for bad in [
        "jpeg", "jpeg:0", "jpeg:101", "webp:x", "gif:80", "png:5", "", "keep:1",
    ] {
        let err = bad.parse::<ImageTarget>().unwrap_err();
        assert!(matches!(err, FrameError::InvalidTarget(_)), "{bad}");
        let message = err.to_string();
        assert!(
            message.contains("`keep`, `png`, `jpeg:Q` or `webp:Q`"),
            "{message}"
        );
    }
}

// --- hostile input -----------------------------------------------------------------------

fn transform(message: &[u8]) -> FrameError {
    transform_json_frame(message, &ImageTarget::Jpeg { quality: 85 }).unwrap_err()
}

#[test]
fn not_json_is_refused_as_not_json() {
    for message in [
        &b"hello"[..],
        b"",
        b"{\"frame_id\": ",
        b"{} trailing",
        b"\xff\xfe{}",
    ] {
        assert!(
            matches!(transform(message), FrameError::NotJson(_)),
            "{message:?}"
        );
    }
    assert!(matches!(
        transform(b"[1, 2]"),
        FrameError::NotAnObject { found: "array" }
    ));
    assert!(matches!(
        transform(b" 42 "),
        FrameError::NotAnObject { found: "number" }
    ));
}

#[test]
fn nul_bytes_are_refused_as_not_json() {
    assert!(matches!(transform(b"\0\0\0\0"), FrameError::NotJson(_)));
    let message = b"{\"frame_id\": \"a\0b\", \"camera_id\": \"c\", \"image_base64\": \"\"}";
    assert!(matches!(transform(message), FrameError::NotJson(_)));
}

#[test]
fn empty_object_names_the_first_missing_field() {
    let err = transform(b"{}");
    assert!(matches!(err, FrameError::MissingField("frame_id")), "{err}");
    assert_eq!(err.to_string(), "missing field `frame_id`");
    let err = transform(br#"{"frame_id": "f", "camera_id": "c"}"#);
    assert!(matches!(
        err,
        FrameError::MissingField("image_base64 or image_array")
    ));
}

#[test]
fn truncated_png_is_a_png_decode_error() {
    let png = png_of(&scene(320, 240, 10, 8));
    let message = frame_json((
        "image_base64",
        json!(STANDARD.encode(&png[..png.len() / 2])),
    ));
    let err = transform(&message);
    assert!(
        matches!(
            err,
            FrameError::Decode {
                format: FormatName(ImageFormat::Png),
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn truncated_jpeg_is_a_jpeg_decode_error() {
    let jpeg = encode_image(&scene(320, 240, 10, 8), &ImageTarget::Jpeg { quality: 80 }).unwrap();
    let err = decode_image(&jpeg[..jpeg.len() / 2]).unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::Decode {
                format: FormatName(ImageFormat::Jpeg),
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_valid_jpeg_decodes_after_a_corrupt_one_on_the_same_thread() {
    let solid = RgbImage::new(64, 48, [10u8, 20, 30].repeat(64 * 48)).unwrap();
    let small = encode_image(&solid, &ImageTarget::Jpeg { quality: 85 }).unwrap();
    for cut in [small.len() / 2, small.len() / 3, 40] {
        let _ = decode_image(&small[..cut]);
        let (image, _) =
            decode_image(&small).unwrap_or_else(|e| panic!("after a cut at {cut}: {e}"));
        assert_eq!(
            (image.width(), image.height()),
            (64, 48),
            "after a cut at {cut}"
        );
    }
    let jpeg = encode_image(&scene(320, 240, 10, 8), &ImageTarget::Jpeg { quality: 80 }).unwrap();
    for cut in [4, 20, 200, jpeg.len() / 2] {
        let _ = decode_image(&jpeg[..cut]);
        let mut garbage = jpeg.clone();
        let from = cut.min(garbage.len() - 1);
        garbage[from..].fill(0xff);
        let _ = decode_image(&garbage);
        let (image, _) =
            decode_image(&jpeg).unwrap_or_else(|e| panic!("after a cut at {cut}: {e}"));
        assert_eq!(
            (image.width(), image.height()),
            (320, 240),
            "after a cut at {cut}"
        );
    }
}

#[test]
fn wrong_base64_is_a_base64_error() {
    for text in ["!!!not base64!!!", "iVBORw0KGgo+AAA-_", "A"] {
        let message = frame_json(("image_base64", json!(text)));
        assert!(
            matches!(transform(&message), FrameError::Base64(_)),
            "{text}"
        );
    }
    let message = frame_json(("image_base64", json!(5)));
    assert!(matches!(
        transform(&message),
        FrameError::InvalidField { ref field, .. } if field == "image_base64"
    ));
}

#[test]
fn bytes_of_no_known_image_format_are_named_in_the_error() {
    let message = frame_json(("image_base64", json!(STANDARD.encode(b"GIF89a\x01\x00"))));
    let err = transform(&message);
    assert!(
        matches!(err, FrameError::UnknownImageFormat { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("47 49 46 38 39 61 01 00"), "{err}");
    let garbage_webp = b"RIFF\x20\x00\x00\x00WEBPVP8 garbage garbage".to_vec();
    let err = decode_image(&garbage_webp).unwrap_err();
    assert!(matches!(
        err,
        FrameError::Decode {
            format: FormatName(ImageFormat::Webp),
            ..
        }
    ));
}

#[test]
fn ragged_image_array_rows_name_the_row() {
    let err = transform(&array_frame("[[[1,2,3],[4,5,6]], [[1,2,3]]]"));
    assert!(
        matches!(
            err,
            FrameError::ImageArray(ImageArrayError::RaggedRow {
                row: 1,
                got: 1,
                expected: 2
            })
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "field `image_array`: row 1 has 1 pixels, expected 2"
    );
}

#[test]
fn bad_image_array_pixels_name_the_pixel() {
    let bad_pixel = |array: &str, row: usize, col: usize| {
        let err = transform(&array_frame(array));
        assert!(
            matches!(
                err,
                FrameError::ImageArray(ImageArrayError::BadPixel { row: r, col: c, .. })
                    if (r, c) == (row, col)
            ),
            "{array}: {err}"
        );
    };
    bad_pixel("[[[1,2,3],[4,5,300]]]", 0, 1);
    bad_pixel("[[[1,2,3]],[[4,5,-1]]]", 1, 0);
    bad_pixel("[[[1,2,3],[4,5]]]", 0, 1);
    bad_pixel("[[[1,2,3,4]]]", 0, 0);
    bad_pixel("[[[1,2,3],7]]", 0, 1);
    bad_pixel("[[1, 2.5]]", 0, 1);
    for array in ["[]", "[[]]"] {
        assert!(matches!(
            transform(&array_frame(array)),
            FrameError::ImageArray(ImageArrayError::Empty)
        ));
    }
    for array in ["\"pixels\"", "[[\"red\"]]", "[5]", "[[[1,\"2\",3]]]"] {
        let err = transform(&array_frame(array));
        assert!(
            matches!(err, FrameError::ImageArray(ImageArrayError::Shape(_))),
            "{array}: {err}"
        );
    }
}

#[test]
fn image_array_beyond_the_size_limit_is_refused_while_reading() {
    let row = format!("[{}]", vec!["0"; MAX_SIDE as usize + 1].join(","));
    let err = transform(&array_frame(&format!("[{row}]")));
    assert!(
        matches!(
            err,
            FrameError::ImageArray(ImageArrayError::TooLarge { .. })
        ),
        "{err}"
    );
}

#[test]
fn huge_declared_png_is_refused_before_decoding() {
    let png = png_header_only(100_000, 100_000);
    for result in [
        decode_image(&png).map(|_| ()),
        probe_image(&png).map(|_| ()),
    ] {
        assert!(matches!(
            result,
            Err(FrameError::DimensionTooLarge {
                width: 100_000,
                height: 100_000,
                ..
            })
        ));
    }
    let message = frame_json(("image_base64", json!(STANDARD.encode(&png))));
    for target in [ImageTarget::Keep, ImageTarget::Jpeg { quality: 85 }] {
        let err = transform_json_frame(&message, &target).unwrap_err();
        assert!(matches!(err, FrameError::DimensionTooLarge { .. }), "{err}");
    }
    // Within each side's limit but beyond the pixel count.
    let err = decode_image(&png_header_only(16_384, 16_384)).unwrap_err();
    assert!(matches!(err, FrameError::DimensionTooLarge { .. }), "{err}");
}

#[test]
fn huge_declared_jpeg_is_refused_before_decoding() {
    let mut jpeg = encode_image(&scene(64, 48, 11, 4), &ImageTarget::Jpeg { quality: 80 }).unwrap();
    // SOF0: FF C0, length (2), precision (1), height (2), width (2). 60000 is within
    // libjpeg's own limit (65500), so the check is Ferry's.
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
    let err = decode_image(&jpeg).unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::DimensionTooLarge {
                width: 60_000,
                height: 60_000,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn detections_with_wrong_types_name_the_field() {
    let png = STANDARD.encode(png_of(&scene(8, 8, 1, 0)));
    let field_of = |detections: serde_json::Value| {
        let message = json!({"frame_id": "f", "camera_id": "c", "image_base64": png, "detections": detections});
        match transform(&serde_json::to_vec(&message).unwrap()) {
            FrameError::InvalidField { field, .. } => field,
            other => panic!("{other}"),
        }
    };
    assert_eq!(
        field_of(json!([{"label": "car", "confidence": "high", "bbox": [1, 2, 3, 4]}])),
        "detections[0].confidence"
    );
    assert_eq!(
        field_of(json!([{"label": "a", "confidence": 1, "bbox": [1, 2, 3, 4]}, {"label": 5}])),
        "detections[1].label"
    );
    assert_eq!(
        field_of(json!([{"label": "car", "confidence": 1, "bbox": [1, 2, 3]}])),
        "detections[0].bbox"
    );
    assert_eq!(
        field_of(json!([{"label": "car", "confidence": 1, "bbox": [1, "2", 3, 4]}])),
        "detections[0].bbox[1]"
    );
    assert_eq!(
        field_of(json!([{"label": "car", "confidence": 1}])),
        "detections[0].x"
    );
    assert_eq!(field_of(json!(["car"])), "detections[0]");
    assert_eq!(field_of(json!({"label": "car"})), "detections");
}

#[test]
fn wrong_types_and_repeats_of_known_fields_name_the_field() {
    let png = STANDARD.encode(png_of(&scene(8, 8, 1, 0)));
    let field_of = |message: String| match transform(message.as_bytes()) {
        FrameError::InvalidField { field, .. } => field,
        other => panic!("{other}"),
    };
    assert_eq!(
        field_of(format!(
            r#"{{"frame_id": {{}}, "camera_id": "c", "image_base64": "{png}"}}"#
        )),
        "frame_id"
    );
    assert_eq!(
        field_of(format!(
            r#"{{"frame_id": "", "camera_id": "c", "image_base64": "{png}"}}"#
        )),
        "frame_id"
    );
    assert_eq!(
        field_of(format!(
            r#"{{"frame_id": "a", "frame_id": "b", "camera_id": "c", "image_base64": "{png}"}}"#
        )),
        "frame_id"
    );
    assert_eq!(
        field_of(format!(
            r#"{{"frame_id": "a", "camera_id": "c", "image_base64": "{png}", "image_array": [[0]]}}"#
        )),
        "image_array"
    );
}

#[test]
fn corrupted_images_give_errors_not_panics() {
    let image = scene(64, 48, 12, 8);
    let mut rng = Rng(42);
    for target in [
        ImageTarget::Png,
        ImageTarget::Jpeg { quality: 80 },
        ImageTarget::Webp { quality: 80 },
    ] {
        let good = encode_image(&image, &target).unwrap();
        for _ in 0..300 {
            let mut bytes = good.clone();
            match rng.below(3) {
                0 => bytes.truncate(rng.below(bytes.len() as u64) as usize),
                1 => {
                    for _ in 0..=rng.below(8) {
                        let i = rng.below(bytes.len() as u64) as usize;
                        bytes[i] = rng.below(256) as u8;
                    }
                }
                _ => {
                    let i = rng.below(bytes.len() as u64) as usize;
                    let n = rng.below(64) as usize;
                    bytes.splice(i..i, (0..n).map(|_| rng.below(256) as u8));
                }
            }
            // Either outcome is fine; a panic or an abort is not.
            if let Ok((decoded, _)) = decode_image(&bytes) {
                assert!(decoded.width() <= MAX_SIDE && decoded.height() <= MAX_SIDE);
            }
            let _ = probe_image(&bytes);
        }
    }
}

#[test]
fn pixel_buffers_must_match_their_size() {
    assert!(matches!(
        RgbImage::new(4, 4, vec![0; 47]),
        Err(FrameError::PixelBuffer { expected: 48, .. })
    ));
    assert!(matches!(
        RgbImage::new(MAX_SIDE + 1, 1, vec![]),
        Err(FrameError::DimensionTooLarge { .. })
    ));
    let a = scene(16, 16, 1, 0);
    let b = scene(16, 8, 1, 0);
    assert!(psnr(&a, &b).is_nan());
    assert_eq!(psnr(&a, &a), f64::INFINITY);
}
