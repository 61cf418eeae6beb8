//! What the transform makes of good frames: the message, image quality, inputs, lenient fields.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;

use super::*;

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
