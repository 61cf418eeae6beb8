//! Hostile input: every bad frame is a precise error, never a panic or a huge allocation.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use super::*;

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
