//! The unquantized element types: F32, F16 and BF16.
//!
//! F16 and BF16 widen to f32 exactly. Narrowing rounds to nearest, ties to even: F16
//! through `half` (IEEE conversion, as ggml's `GGML_FP32_TO_FP16`), BF16 with ggml's own
//! rounding (`ggml_compute_fp32_to_bf16` in `ggml/src/ggml-impl.h`), which also turns a
//! NaN into a quiet NaN instead of rounding it.

use half::{bf16, f16};

/// Rounds an f32 to bf16 exactly as ggml does: round to nearest even on the top 16
/// bits, and a NaN kept as a quiet NaN.
pub fn fp32_to_bf16(x: f32) -> bf16 {
    let bits = x.to_bits();
    if bits & 0x7fff_ffff > 0x7f80_0000 {
        return bf16::from_bits((bits >> 16) as u16 | 64);
    }
    let rounding = 0x7fff + ((bits >> 16) & 1);
    bf16::from_bits((bits.wrapping_add(rounding) >> 16) as u16)
}

/// Widens a bf16 to f32 (exact: the bf16 bits are the top half of the f32).
pub fn bf16_to_fp32(x: bf16) -> f32 {
    f32::from_bits(u32::from(x.to_bits()) << 16)
}

/// Checks that a float conversion has as many outputs as inputs.
fn check_len(what: &str, src: usize, dst: usize) {
    assert_eq!(src, dst, "{what}: {src} inputs but {dst} outputs");
}

/// Widens F16 values to f32.
///
/// # Panics
/// If `src.len() != dst.len()`.
pub fn dequantize_row_f16(src: &[f16], dst: &mut [f32]) {
    check_len("f16", src.len(), dst.len());
    for (y, x) in dst.iter_mut().zip(src) {
        *y = x.to_f32();
    }
}

/// Widens BF16 values to f32.
///
/// # Panics
/// If `src.len() != dst.len()`.
pub fn dequantize_row_bf16(src: &[bf16], dst: &mut [f32]) {
    check_len("bf16", src.len(), dst.len());
    for (y, &x) in dst.iter_mut().zip(src) {
        *y = bf16_to_fp32(x);
    }
}

/// Rounds f32 values to F16 (nearest, ties to even).
///
/// # Panics
/// If `src.len() != dst.len()`.
pub fn quantize_row_f16(src: &[f32], dst: &mut [f16]) {
    check_len("f16", src.len(), dst.len());
    for (y, &x) in dst.iter_mut().zip(src) {
        *y = f16::from_f32(x);
    }
}

/// Rounds f32 values to BF16 with ggml's rounding ([`fp32_to_bf16`]).
///
/// # Panics
/// If `src.len() != dst.len()`.
pub fn quantize_row_bf16(src: &[f32], dst: &mut [bf16]) {
    check_len("bf16", src.len(), dst.len());
    for (y, &x) in dst.iter_mut().zip(src) {
        *y = fp32_to_bf16(x);
    }
}

/// Decodes little-endian F32/F16/BF16 bytes (any alignment) into `dst`; the caller has
/// checked that `src.len() == dst.len() * width`.
pub(crate) fn decode_le<const W: usize>(
    src: &[u8],
    dst: &mut [f32],
    decode: impl Fn([u8; W]) -> f32,
) {
    for (y, x) in dst.iter_mut().zip(src.chunks_exact(W)) {
        let bytes: [u8; W] = x.try_into().expect("chunks_exact yields W bytes");
        *y = decode(bytes);
    }
}

/// Encodes f32 values as little-endian F32/F16/BF16 bytes; the caller has checked that
/// `dst.len() == src.len() * width`.
pub(crate) fn encode_le<const W: usize>(
    src: &[f32],
    dst: &mut [u8],
    encode: impl Fn(f32) -> [u8; W],
) {
    for (y, &x) in dst.chunks_exact_mut(W).zip(src) {
        y.copy_from_slice(&encode(x));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_like_ggml() {
        // 1.0 + 2^-8 is exactly half-way between two bf16 values: ties to even (1.0).
        assert_eq!(fp32_to_bf16(1.0 + 1.0 / 256.0).to_bits(), 0x3f80);
        // Just above half-way rounds up.
        assert_eq!(fp32_to_bf16(f32::from_bits(0x3f80_8001)).to_bits(), 0x3f81);
        // 1.0 + 3 * 2^-8 is half-way with an odd lower neighbour: rounds up to even.
        assert_eq!(fp32_to_bf16(f32::from_bits(0x3f81_8000)).to_bits(), 0x3f82);
        // NaN stays a quiet NaN; infinities are kept.
        assert!(bf16_to_fp32(fp32_to_bf16(f32::NAN)).is_nan());
        assert_eq!(fp32_to_bf16(f32::from_bits(0x7f80_0001)).to_bits(), 0x7fc0);
        assert_eq!(
            bf16_to_fp32(fp32_to_bf16(f32::NEG_INFINITY)),
            f32::NEG_INFINITY
        );
        assert_eq!(
            bf16_to_fp32(bf16::from_bits(0x4049)),
            f32::from_bits(0x4049_0000)
        );
    }

    #[test]
    fn f16_and_bf16_round_trip_exact_values() {
        let x = [
            0.0f32,
            -0.0,
            1.0,
            -2.5,
            65504.0,
            0.000_061_035_156,
            3.140_625,
        ];
        let mut h = [f16::ZERO; 7];
        let mut b = [bf16::ZERO; 7];
        let mut back = [0.0f32; 7];
        quantize_row_f16(&x, &mut h);
        dequantize_row_f16(&h, &mut back);
        assert_eq!(back, x);
        quantize_row_bf16(&x[..4], &mut b[..4]);
        dequantize_row_bf16(&b[..4], &mut back[..4]);
        assert_eq!(back[..4], x[..4]);
    }
}
