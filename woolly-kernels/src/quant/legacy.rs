//! The 32-weight "legacy" formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1.
//!
//! Reference dequantizers and quantizers, ported from ggml's `dequantize_row_*` and
//! `quantize_row_*_ref` (`ggml/src/ggml-quants.c`, llama.cpp commit
//! 01243c587feceaa5d6a6c2305535ef2f549c48b8) with the same f32 operations in the same
//! order, so the outputs match ggml's bit for bit.
//!
//! In every format, byte `j` of `qs` packs weight `j` in its low nibble and weight
//! `j + 16` in its high nibble.

use half::f16;

use super::GgmlType;
use super::blocks::{
    Block, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, QK, dequantize_blocks,
    input_chunks,
};

/// The value of largest magnitude (the first one on ties), or 0.0.
fn signed_absmax(x: &[f32]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// Minimum and maximum, starting from `(f32::MAX, -f32::MAX)` like ggml.
fn min_max(x: &[f32]) -> (f32, f32) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// `1 / d`, or 0 when `d` is 0 (ggml: `d ? 1.0f/d : 0.0f`).
fn inverse(d: f32) -> f32 {
    if d != 0.0 { 1.0 / d } else { 0.0 }
}

/// Packs 5-bit quants: low nibbles into `qs` (weight `j` low, `j + 16` high), fifth bits
/// into the little-endian `qh` word (bit `j` for weight `j`).
fn pack_q5(q: &[u8; QK]) -> ([u8; 4], [u8; QK / 2]) {
    let mut qs = [0u8; QK / 2];
    let mut qh = 0u32;
    for j in 0..QK / 2 {
        let (q0, q1) = (q[j], q[j + QK / 2]);
        qs[j] = (q0 & 0x0F) | ((q1 & 0x0F) << 4);
        qh |= u32::from((q0 & 0x10) >> 4) << j;
        qh |= u32::from((q1 & 0x10) >> 4) << (j + QK / 2);
    }
    (qh.to_le_bytes(), qs)
}

/// The 5-bit quants of weights `j` and `j + 16` from a Q5 block's `qh`/`qs`.
#[inline]
fn unpack_q5(qh: u32, qs: u8, j: usize) -> (u8, u8) {
    let hi0 = (((qh >> j) & 1) << 4) as u8;
    let hi1 = (((qh >> (j + QK / 2)) & 1) << 4) as u8;
    ((qs & 0x0F) | hi0, (qs >> 4) | hi1)
}

impl Block for BlockQ4_0 {
    const TYPE: GgmlType = GgmlType::Q4_0;
    const BLOCK_LEN: usize = QK;
    const ZERO: Self = Self {
        d: f16::ZERO,
        qs: [0; QK / 2],
    };

    fn dequantize(&self, dst: &mut [f32]) {
        let dst: &mut [f32; QK] = dst.try_into().expect("Q4_0 block has 32 weights");
        let d = self.d.to_f32();
        for (j, &q) in self.qs.iter().enumerate() {
            let x0 = i32::from(q & 0x0F) - 8;
            let x1 = i32::from(q >> 4) - 8;
            dst[j] = x0 as f32 * d;
            dst[j + QK / 2] = x1 as f32 * d;
        }
    }
}

impl Block for BlockQ4_1 {
    const TYPE: GgmlType = GgmlType::Q4_1;
    const BLOCK_LEN: usize = QK;
    const ZERO: Self = Self {
        d: f16::ZERO,
        m: f16::ZERO,
        qs: [0; QK / 2],
    };

    fn dequantize(&self, dst: &mut [f32]) {
        let dst: &mut [f32; QK] = dst.try_into().expect("Q4_1 block has 32 weights");
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        for (j, &q) in self.qs.iter().enumerate() {
            dst[j] = f32::from(q & 0x0F) * d + m;
            dst[j + QK / 2] = f32::from(q >> 4) * d + m;
        }
    }
}

impl Block for BlockQ5_0 {
    const TYPE: GgmlType = GgmlType::Q5_0;
    const BLOCK_LEN: usize = QK;
    const ZERO: Self = Self {
        d: f16::ZERO,
        qh: [0; 4],
        qs: [0; QK / 2],
    };

    fn dequantize(&self, dst: &mut [f32]) {
        let dst: &mut [f32; QK] = dst.try_into().expect("Q5_0 block has 32 weights");
        let d = self.d.to_f32();
        let qh = u32::from_le_bytes(self.qh);
        for (j, &q) in self.qs.iter().enumerate() {
            let (q0, q1) = unpack_q5(qh, q, j);
            dst[j] = (i32::from(q0) - 16) as f32 * d;
            dst[j + QK / 2] = (i32::from(q1) - 16) as f32 * d;
        }
    }
}

impl Block for BlockQ5_1 {
    const TYPE: GgmlType = GgmlType::Q5_1;
    const BLOCK_LEN: usize = QK;
    const ZERO: Self = Self {
        d: f16::ZERO,
        m: f16::ZERO,
        qh: [0; 4],
        qs: [0; QK / 2],
    };

    fn dequantize(&self, dst: &mut [f32]) {
        let dst: &mut [f32; QK] = dst.try_into().expect("Q5_1 block has 32 weights");
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        let qh = u32::from_le_bytes(self.qh);
        for (j, &q) in self.qs.iter().enumerate() {
            let (q0, q1) = unpack_q5(qh, q, j);
            dst[j] = f32::from(q0) * d + m;
            dst[j + QK / 2] = f32::from(q1) * d + m;
        }
    }
}

impl Block for BlockQ8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;
    const BLOCK_LEN: usize = QK;
    const ZERO: Self = Self {
        d: f16::ZERO,
        qs: [0; QK],
    };

    fn dequantize(&self, dst: &mut [f32]) {
        let dst: &mut [f32; QK] = dst.try_into().expect("Q8_0 block has 32 weights");
        let d = self.d.to_f32();
        for (y, &q) in dst.iter_mut().zip(&self.qs) {
            *y = f32::from(q) * d;
        }
    }
}

/// ggml has no Q8_1 dequantizer (Q8_1 is only an activation format); this one ignores
/// `s` and computes `q * d` like Q8_0.
impl Block for BlockQ8_1 {
    const TYPE: GgmlType = GgmlType::Q8_1;
    const BLOCK_LEN: usize = QK;
    const ZERO: Self = Self {
        d: f16::ZERO,
        s: f16::ZERO,
        qs: [0; QK],
    };

    fn dequantize(&self, dst: &mut [f32]) {
        let dst: &mut [f32; QK] = dst.try_into().expect("Q8_1 block has 32 weights");
        let d = self.d.to_f32();
        for (y, &q) in dst.iter_mut().zip(&self.qs) {
            *y = f32::from(q) * d;
        }
    }
}

/// Dequantizes Q4_0 blocks (`dst.len() == 32 * src.len()`, else panics).
pub fn dequantize_row_q4_0(src: &[BlockQ4_0], dst: &mut [f32]) {
    dequantize_blocks(src, dst);
}

/// Dequantizes Q4_1 blocks (`dst.len() == 32 * src.len()`, else panics).
pub fn dequantize_row_q4_1(src: &[BlockQ4_1], dst: &mut [f32]) {
    dequantize_blocks(src, dst);
}

/// Dequantizes Q5_0 blocks (`dst.len() == 32 * src.len()`, else panics).
pub fn dequantize_row_q5_0(src: &[BlockQ5_0], dst: &mut [f32]) {
    dequantize_blocks(src, dst);
}

/// Dequantizes Q5_1 blocks (`dst.len() == 32 * src.len()`, else panics).
pub fn dequantize_row_q5_1(src: &[BlockQ5_1], dst: &mut [f32]) {
    dequantize_blocks(src, dst);
}

/// Dequantizes Q8_0 blocks (`dst.len() == 32 * src.len()`, else panics).
pub fn dequantize_row_q8_0(src: &[BlockQ8_0], dst: &mut [f32]) {
    dequantize_blocks(src, dst);
}

/// Dequantizes Q8_1 blocks as `q * d` (`dst.len() == 32 * src.len()`, else panics).
pub fn dequantize_row_q8_1(src: &[BlockQ8_1], dst: &mut [f32]) {
    dequantize_blocks(src, dst);
}

/// Quantizes to Q4_0: `d = max / -8` where `max` is the value of largest magnitude,
/// `q = min(15, trunc(x / d + 8.5))` (ggml's `quantize_row_q4_0_ref`).
///
/// # Panics
/// If `src.len() != 32 * dst.len()`.
pub fn quantize_row_q4_0(src: &[f32], dst: &mut [BlockQ4_0]) {
    for (x, y) in input_chunks(GgmlType::Q4_0, src, dst.len()).zip(dst) {
        let d = signed_absmax(x) / -8.0;
        let id = inverse(d);
        y.d = f16::from_f32(d);
        for j in 0..QK / 2 {
            let x0 = x[j] * id;
            let x1 = x[j + QK / 2] * id;
            // ggml converts to int8_t (truncation) before the MIN; `as` also saturates.
            let q0 = ((x0 + 8.5) as i8).min(15) as u8;
            let q1 = ((x1 + 8.5) as i8).min(15) as u8;
            y.qs[j] = q0 | (q1 << 4);
        }
    }
}

/// Quantizes to Q4_1: `d = (max - min) / 15`, `m = min`,
/// `q = min(15, trunc((x - min) / d + 0.5))` (ggml's `quantize_row_q4_1_ref`).
///
/// # Panics
/// If `src.len() != 32 * dst.len()`.
pub fn quantize_row_q4_1(src: &[f32], dst: &mut [BlockQ4_1]) {
    for (x, y) in input_chunks(GgmlType::Q4_1, src, dst.len()).zip(dst) {
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = inverse(d);
        y.d = f16::from_f32(d);
        y.m = f16::from_f32(min);
        for j in 0..QK / 2 {
            let x0 = (x[j] - min) * id;
            let x1 = (x[j + QK / 2] - min) * id;
            let q0 = ((x0 + 0.5) as i8).min(15) as u8;
            let q1 = ((x1 + 0.5) as i8).min(15) as u8;
            y.qs[j] = q0 | (q1 << 4);
        }
    }
}

/// Quantizes to Q5_0: `d = max / -16`, `q = min(31, trunc(x / d + 16.5))` (ggml's
/// `quantize_row_q5_0_ref`).
///
/// # Panics
/// If `src.len() != 32 * dst.len()`.
pub fn quantize_row_q5_0(src: &[f32], dst: &mut [BlockQ5_0]) {
    for (x, y) in input_chunks(GgmlType::Q5_0, src, dst.len()).zip(dst) {
        let d = signed_absmax(x) / -16.0;
        let id = inverse(d);
        y.d = f16::from_f32(d);
        let q: [u8; QK] = std::array::from_fn(|j| ((x[j] * id + 16.5) as i8).min(31) as u8);
        (y.qh, y.qs) = pack_q5(&q);
    }
}

/// Quantizes to Q5_1: `d = (max - min) / 31`, `m = min`,
/// `q = trunc((x - min) / d + 0.5)` (ggml's `quantize_row_q5_1_ref`, which has no clamp).
///
/// # Panics
/// If `src.len() != 32 * dst.len()`.
pub fn quantize_row_q5_1(src: &[f32], dst: &mut [BlockQ5_1]) {
    for (x, y) in input_chunks(GgmlType::Q5_1, src, dst.len()).zip(dst) {
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = inverse(d);
        y.d = f16::from_f32(d);
        y.m = f16::from_f32(min);
        let q: [u8; QK] = std::array::from_fn(|j| ((x[j] - min) * id + 0.5) as u8);
        (y.qh, y.qs) = pack_q5(&q);
    }
}

/// The Q8 scale and quants of one 32-weight block: `d = amax / 127`, `q = round(x / d)`.
fn quantize_q8(x: &[f32]) -> (f32, [i8; QK]) {
    // ggml's MAX(amax, fabsf(v)), which (unlike f32::max) propagates a NaN.
    let amax = x
        .iter()
        .fold(0.0f32, |a, v| if a > v.abs() { a } else { v.abs() });
    let d = amax / 127.0;
    let id = inverse(d);
    // `f32::round` rounds half away from zero, like C's roundf.
    (d, std::array::from_fn(|j| (x[j] * id).round() as i8))
}

/// Quantizes to Q8_0: `d = amax / 127`, `q = round(x / d)` (ggml's
/// `quantize_row_q8_0_ref`).
///
/// # Panics
/// If `src.len() != 32 * dst.len()`.
pub fn quantize_row_q8_0(src: &[f32], dst: &mut [BlockQ8_0]) {
    q8_0_blocks(src, dst, quantize_q8);
}

/// Q8_0 blocks of `src`, each block's scale and quants from `quantize`.
fn q8_0_blocks(src: &[f32], dst: &mut [BlockQ8_0], quantize: fn(&[f32]) -> (f32, [i8; QK])) {
    for (x, y) in input_chunks(GgmlType::Q8_0, src, dst.len()).zip(dst) {
        let (d, qs) = quantize(x);
        y.d = f16::from_f32(d);
        y.qs = qs;
    }
}

/// Quantizes to Q8_1: as Q8_0, plus `s = d * sum(q)` (ggml's `quantize_row_q8_1_ref`).
///
/// # Panics
/// If `src.len() != 32 * dst.len()`.
pub fn quantize_row_q8_1(src: &[f32], dst: &mut [BlockQ8_1]) {
    q8_1_blocks(src, dst, quantize_q8);
}

/// Q8_1 blocks of `src`, each block's scale and quants from `quantize`, and
/// `s = d * sum(q)`.
fn q8_1_blocks(src: &[f32], dst: &mut [BlockQ8_1], quantize: fn(&[f32]) -> (f32, [i8; QK])) {
    for (x, y) in input_chunks(GgmlType::Q8_1, src, dst.len()).zip(dst) {
        let (d, qs) = quantize(x);
        let sum: i32 = qs.iter().map(|&q| i32::from(q)).sum();
        y.d = f16::from_f32(d);
        y.s = f16::from_f32(sum as f32 * d);
        y.qs = qs;
    }
}

/// The quants of one block of activations as ggml's x86 `quantize_row_q8_0` and
/// `quantize_row_q8_1` compute them (the quantizers llama.cpp's x86 builds run on
/// activations, unlike the `_ref` ones above): `d = amax / 127`, each `x * (127 / amax)`
/// rounded half to even.
fn quantize_q8_activations(x: &[f32]) -> (f32, [i8; QK]) {
    let amax = x
        .iter()
        .fold(0.0f32, |a, v| if a > v.abs() { a } else { v.abs() });
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    (
        d,
        std::array::from_fn(|j| (x[j] * id).round_ties_even() as i8),
    )
}

/// Quantizes activations to Q8_0 as ggml's x86 `quantize_row_q8_0` does (see
/// `quantize_q8_activations`), the activation side of every dot product with Q8_0,
/// Q4_0 or Q5_0 weights. Weights are quantized by [`quantize_row_q8_0`].
///
/// # Panics
/// If `src.len() != 32 * dst.len()`.
pub fn quantize_activations_q8_0(src: &[f32], dst: &mut [BlockQ8_0]) {
    q8_0_blocks(src, dst, quantize_q8_activations);
}

/// Quantizes activations to Q8_1 as ggml's x86 `quantize_row_q8_1` does: as
/// [`quantize_activations_q8_0`], plus `s = d * sum(q)`.
///
/// # Panics
/// If `src.len() != 32 * dst.len()`.
pub fn quantize_activations_q8_1(src: &[f32], dst: &mut [BlockQ8_1]) {
    q8_1_blocks(src, dst, quantize_q8_activations);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One Q4_0 block worked out by hand from the format: `w = d * (q - 8)`.
    #[test]
    fn q4_0_hand_checked_block() {
        // d = 0.5 is exact in f16 (0x3800). Byte j = 0x?? : low nibble -> weight j,
        // high nibble -> weight j + 16.
        let mut qs = [0x88u8; 16]; // q = 8 everywhere -> 0.0
        qs[0] = 0xF0; // w0: q=0 -> 0.5 * -8 = -4.0;  w16: q=15 -> 0.5 * 7 = 3.5
        qs[1] = 0x19; // w1: q=9 -> 0.5;              w17: q=1 -> -3.5
        qs[15] = 0x7A; // w15: q=10 -> 1.0;           w31: q=7 -> -0.5
        let block = BlockQ4_0 {
            d: f16::from_bits(0x3800),
            qs,
        };
        let mut out = [f32::NAN; 32];
        dequantize_row_q4_0(&[block], &mut out);
        let mut want = [0.0f32; 32];
        want[0] = -4.0;
        want[16] = 3.5;
        want[1] = 0.5;
        want[17] = -3.5;
        want[15] = 1.0;
        want[31] = -0.5;
        assert_eq!(out, want);
    }

    #[test]
    fn q4_0_quantizes_the_hand_checked_block_back() {
        // The largest magnitude is -4.0, so d = -4 / -8 = 0.5 and each weight maps back
        // to the nibble it came from.
        let mut x = [0.0f32; 32];
        x[0] = -4.0;
        x[16] = 3.5;
        x[1] = 0.5;
        x[17] = -3.5;
        x[15] = 1.0;
        x[31] = -0.5;
        let mut y = [BlockQ4_0::ZERO];
        quantize_row_q4_0(&x, &mut y);
        assert_eq!(y[0].d.to_f32(), 0.5);
        assert_eq!(y[0].qs[0], 0xF0);
        assert_eq!(y[0].qs[1], 0x19);
        assert_eq!(y[0].qs[15], 0x7A);
        assert_eq!(y[0].qs[5], 0x88);
    }

    /// Q5_0 and Q4_1 worked out by hand: the fifth bit of weight `j` is bit `j` of `qh`.
    #[test]
    fn q5_0_and_q4_1_hand_checked() {
        let mut qs = [0u8; 16];
        qs[0] = 0x21; // w0: low 1, w16: low 2
        let qh = (1u32 << 0) | (1u32 << 16) | (1u32 << 3); // w0, w16, w3 get +16
        let block = BlockQ5_0 {
            d: f16::from_f32(2.0),
            qh: qh.to_le_bytes(),
            qs,
        };
        let mut out = [0.0f32; 32];
        dequantize_row_q5_0(&[block], &mut out);
        assert_eq!(out[0], 2.0 * (17.0 - 16.0));
        assert_eq!(out[16], 2.0 * (18.0 - 16.0));
        assert_eq!(out[3], 2.0 * (16.0 - 16.0));
        assert_eq!(out[1], 2.0 * -16.0);

        let block = BlockQ4_1 {
            d: f16::from_f32(0.25),
            m: f16::from_f32(-1.0),
            qs,
        };
        dequantize_row_q4_1(&[block], &mut out);
        assert_eq!(out[0], 0.25 * 1.0 - 1.0);
        assert_eq!(out[16], 0.25 * 2.0 - 1.0);
        assert_eq!(out[5], -1.0);
    }

    #[test]
    fn q8_1_sum_matches_quants() {
        let x: Vec<f32> = (0..64).map(|i| ((i * 7) % 13) as f32 - 6.3).collect();
        let mut y = [BlockQ8_1::ZERO; 2];
        quantize_row_q8_1(&x, &mut y);
        for (b, xb) in y.iter().zip(x.chunks(32)) {
            // s is rounded from the f32 scale, before d is rounded to f16.
            let d = xb.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
            let sum: i32 = b.qs.iter().map(|&q| i32::from(q)).sum();
            assert_eq!(b.s, f16::from_f32(sum as f32 * d));
        }
    }
}
