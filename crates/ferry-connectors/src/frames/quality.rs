//! Image quality: peak signal-to-noise ratio.

use super::RgbImage;

/// Peak signal-to-noise ratio of `b` against `a` over all RGB samples, in dB: infinite when
/// the pixels are equal, NaN when the sizes differ. Around 30 dB and above a lossy copy of a
/// photograph looks like the original.
pub fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    if (a.width(), a.height()) != (b.width(), b.height()) {
        return f64::NAN;
    }
    let squared_error: u64 = a
        .pixels()
        .iter()
        .zip(b.pixels())
        .map(|(&x, &y)| {
            let d = u64::from(x.abs_diff(y));
            d * d
        })
        .sum();
    if squared_error == 0 {
        return f64::INFINITY;
    }
    let mse = squared_error as f64 / a.pixels().len() as f64;
    10.0 * (255.0 * 255.0 / mse).log10()
}
