//! The 256-weight k-quant formats: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and Q8_K.
//!
//! Reference dequantizers and quantizers, ported from ggml's `dequantize_row_*` and
//! `quantize_row_*_ref` (`ggml/src/ggml-quants.c`, llama.cpp commit
//! 01243c587feceaa5d6a6c2305535ef2f549c48b8) with the same f32 operations in the same
//! order, so the outputs match ggml's bit for bit. The quantizers are the ones ggml uses
//! without an importance matrix.
//!
//! The packed scales are read and written only through [`super::search`]
//! (`get_scale_min_k4`, `pack_scale_min_k4`, `unpack_q3k_scales`, `pack_q3k_scales`).

use half::f16;

use super::blocks::{
    Block, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, dequantize_blocks,
    input_chunks,
};
use super::search::{
    GROUP_MAX_EPS, get_scale_min_k4, make_q3_quants, make_qkx2_quants, make_qx_quants, nearest_int,
    pack_q3k_scales, pack_scale_min_k4, unpack_q3k_scales,
};
use super::{GgmlType, QK_K};

/// Views a block's output slice as one super-block.
fn out_block(dst: &mut [f32]) -> &mut [f32; QK_K] {
    dst.try_into().expect("a k-quant block has 256 weights")
}

/// The 2-bit field of weight `32 * k + l` (k in 0..4) of a 128-weight half packed as
/// Q2_K/Q3_K do: byte `l`, shift `2 * k`.
#[inline]
fn two_bits(qs_half: &[u8], k: usize, l: usize) -> u8 {
    (qs_half[l] >> (2 * k)) & 3
}

/// Packs 256 2-bit values the way Q2_K/Q3_K store them.
fn pack_two_bits(l: &[u8; QK_K]) -> [u8; QK_K / 4] {
    let mut qs = [0u8; QK_K / 4];
    for half in 0..2 {
        let (l, q) = (&l[128 * half..], &mut qs[32 * half..]);
        for i in 0..32 {
            q[i] = l[i] | (l[i + 32] << 2) | (l[i + 64] << 4) | (l[i + 96] << 6);
        }
    }
    qs
}

/// Packs 256 4-bit values the way Q4_K/Q5_K store them: in each 64-weight chunk, weight
/// `l` in the low nibble and weight `l + 32` in the high nibble of byte `l`.
fn pack_nibbles(l: &[u8; QK_K]) -> [u8; QK_K / 2] {
    let mut qs = [0u8; QK_K / 2];
    for chunk in 0..4 {
        let (l, q) = (&l[64 * chunk..], &mut qs[32 * chunk..]);
        for i in 0..32 {
            q[i] = (l[i] & 0xF) | ((l[i + 32] & 0xF) << 4);
        }
    }
    qs
}

impl Block for BlockQ2K {
    const TYPE: GgmlType = GgmlType::Q2K;
    const BLOCK_LEN: usize = QK_K;
    const ZERO: Self = Self {
        scales: [0; QK_K / 16],
        qs: [0; QK_K / 4],
        d: f16::ZERO,
        dmin: f16::ZERO,
    };

    fn dequantize(&self, dst: &mut [f32]) {
        let y = out_block(dst);
        let d = self.d.to_f32();
        let min = self.dmin.to_f32();
        // Weight 128 * half + 32 * k + 16 * part + l is field k of byte 16 * part + l of
        // the half; it belongs to group 8 * half + 2 * k + part.
        for half in 0..2 {
            let qs = &self.qs[32 * half..32 * half + 32];
            for k in 0..4 {
                for part in 0..2 {
                    let sc = self.scales[8 * half + 2 * k + part];
                    let dl = d * f32::from(sc & 0xF);
                    let ml = min * f32::from(sc >> 4);
                    let base = 128 * half + 32 * k + 16 * part;
                    for l in 0..16 {
                        let q = two_bits(qs, k, 16 * part + l);
                        y[base + l] = dl * f32::from(q) - ml;
                    }
                }
            }
        }
    }
}

impl Block for BlockQ3K {
    const TYPE: GgmlType = GgmlType::Q3K;
    const BLOCK_LEN: usize = QK_K;
    const ZERO: Self = Self {
        hmask: [0; QK_K / 8],
        qs: [0; QK_K / 4],
        scales: [0; 12],
        d: f16::ZERO,
    };

    fn dequantize(&self, dst: &mut [f32]) {
        let y = out_block(dst);
        let d_all = self.d.to_f32();
        let scales = unpack_q3k_scales(&self.scales);
        // As Q2_K for the low bits; the high bit of weight 32 * b + i is bit b of
        // hmask[i], and a clear bit subtracts 4.
        for half in 0..2 {
            let qs = &self.qs[32 * half..32 * half + 32];
            for k in 0..4 {
                let mask = 1u8 << (4 * half + k);
                for part in 0..2 {
                    let dl = d_all * f32::from(scales[8 * half + 2 * k + part]);
                    let base = 128 * half + 32 * k + 16 * part;
                    for l in 0..16 {
                        let i = 16 * part + l;
                        let low = two_bits(qs, k, i) as i8;
                        let q = low - if self.hmask[i] & mask != 0 { 0 } else { 4 };
                        y[base + l] = dl * f32::from(q);
                    }
                }
            }
        }
    }
}

impl Block for BlockQ4K {
    const TYPE: GgmlType = GgmlType::Q4K;
    const BLOCK_LEN: usize = QK_K;
    const ZERO: Self = Self {
        d: f16::ZERO,
        dmin: f16::ZERO,
        scales: [0; 12],
        qs: [0; QK_K / 2],
    };

    fn dequantize(&self, dst: &mut [f32]) {
        let y = out_block(dst);
        let d = self.d.to_f32();
        let min = self.dmin.to_f32();
        // Chunk c of 64 weights: group 2c in the low nibbles, group 2c + 1 in the high.
        for c in 0..4 {
            let (sc1, m1) = get_scale_min_k4(2 * c, &self.scales);
            let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
            let (sc2, m2) = get_scale_min_k4(2 * c + 1, &self.scales);
            let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
            let qs = &self.qs[32 * c..32 * c + 32];
            let (lo, hi) = y[64 * c..64 * c + 64].split_at_mut(32);
            for l in 0..32 {
                lo[l] = d1 * f32::from(qs[l] & 0xF) - m1;
                hi[l] = d2 * f32::from(qs[l] >> 4) - m2;
            }
        }
    }
}

impl Block for BlockQ5K {
    const TYPE: GgmlType = GgmlType::Q5K;
    const BLOCK_LEN: usize = QK_K;
    const ZERO: Self = Self {
        d: f16::ZERO,
        dmin: f16::ZERO,
        scales: [0; 12],
        qh: [0; QK_K / 8],
        qs: [0; QK_K / 2],
    };

    fn dequantize(&self, dst: &mut [f32]) {
        let y = out_block(dst);
        let d = self.d.to_f32();
        let min = self.dmin.to_f32();
        // As Q4_K, plus 16 where bit 2c (low half) or 2c + 1 (high half) of qh[l] is set.
        for c in 0..4 {
            let (sc1, m1) = get_scale_min_k4(2 * c, &self.scales);
            let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
            let (sc2, m2) = get_scale_min_k4(2 * c + 1, &self.scales);
            let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
            let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
            let qs = &self.qs[32 * c..32 * c + 32];
            let (lo, hi) = y[64 * c..64 * c + 64].split_at_mut(32);
            for l in 0..32 {
                let q1 = (qs[l] & 0xF) + if self.qh[l] & u1 != 0 { 16 } else { 0 };
                let q2 = (qs[l] >> 4) + if self.qh[l] & u2 != 0 { 16 } else { 0 };
                lo[l] = d1 * f32::from(q1) - m1;
                hi[l] = d2 * f32::from(q2) - m2;
            }
        }
    }
}

impl Block for BlockQ6K {
    const TYPE: GgmlType = GgmlType::Q6K;
    const BLOCK_LEN: usize = QK_K;
    const ZERO: Self = Self {
        ql: [0; QK_K / 2],
        qh: [0; QK_K / 4],
        scales: [0; QK_K / 16],
        d: f16::ZERO,
    };

    fn dequantize(&self, dst: &mut [f32]) {
        let y = out_block(dst);
        let d = self.d.to_f32();
        for half in 0..2 {
            let ql = &self.ql[64 * half..64 * half + 64];
            let qh = &self.qh[32 * half..32 * half + 32];
            let sc = &self.scales[8 * half..8 * half + 8];
            let y = &mut y[128 * half..128 * half + 128];
            for l in 0..32 {
                let is = l / 16;
                let q = |low: u8, shift: usize| ((low | (((qh[l] >> shift) & 3) << 4)) as i8) - 32;
                let q1 = q(ql[l] & 0xF, 0);
                let q2 = q(ql[l + 32] & 0xF, 2);
                let q3 = q(ql[l] >> 4, 4);
                let q4 = q(ql[l + 32] >> 4, 6);
                y[l] = d * f32::from(sc[is]) * f32::from(q1);
                y[l + 32] = d * f32::from(sc[is + 2]) * f32::from(q2);
                y[l + 64] = d * f32::from(sc[is + 4]) * f32::from(q3);
                y[l + 96] = d * f32::from(sc[is + 6]) * f32::from(q4);
            }
        }
    }
}

impl Block for BlockQ8K {
    const TYPE: GgmlType = GgmlType::Q8K;
    const BLOCK_LEN: usize = QK_K;
    const ZERO: Self = Self {
        d: 0.0,
        qs: [0; QK_K],
        bsums: [0; QK_K / 16],
    };

    fn dequantize(&self, dst: &mut [f32]) {
        let y = out_block(dst);
        for (y, &q) in y.iter_mut().zip(&self.qs) {
            *y = self.d * f32::from(q);
        }
    }
}

/// Dequantizes Q2_K blocks (`dst.len() == 256 * src.len()`, else panics).
pub fn dequantize_row_q2k(src: &[BlockQ2K], dst: &mut [f32]) {
    dequantize_blocks(src, dst);
}

/// Dequantizes Q3_K blocks (`dst.len() == 256 * src.len()`, else panics).
pub fn dequantize_row_q3k(src: &[BlockQ3K], dst: &mut [f32]) {
    dequantize_blocks(src, dst);
}

/// Dequantizes Q4_K blocks (`dst.len() == 256 * src.len()`, else panics).
pub fn dequantize_row_q4k(src: &[BlockQ4K], dst: &mut [f32]) {
    dequantize_blocks(src, dst);
}

/// Dequantizes Q5_K blocks (`dst.len() == 256 * src.len()`, else panics).
pub fn dequantize_row_q5k(src: &[BlockQ5K], dst: &mut [f32]) {
    dequantize_blocks(src, dst);
}

/// Dequantizes Q6_K blocks (`dst.len() == 256 * src.len()`, else panics).
pub fn dequantize_row_q6k(src: &[BlockQ6K], dst: &mut [f32]) {
    dequantize_blocks(src, dst);
}

/// Dequantizes Q8_K blocks (`dst.len() == 256 * src.len()`, else panics).
pub fn dequantize_row_q8k(src: &[BlockQ8K], dst: &mut [f32]) {
    dequantize_blocks(src, dst);
}

/// Quantizes to Q2_K (ggml's `quantize_row_q2_K_ref`): per 16-weight group an affine
/// fit by [`make_qkx2_quants`] (absolute error, weights `|x|`), scales and mins
/// quantized to 4 bits against their maxima, then the weights requantized.
///
/// # Panics
/// If `src.len() != 256 * dst.len()`.
pub fn quantize_row_q2k(src: &[f32], dst: &mut [BlockQ2K]) {
    const Q4SCALE: f32 = 15.0;
    for (x, y) in input_chunks(GgmlType::Q2K, src, dst.len()).zip(dst) {
        let mut l = [0u8; QK_K];
        let mut laux = [0u8; 16];
        let mut scales = [0.0f32; QK_K / 16];
        let mut mins = [0.0f32; QK_K / 16];
        let mut max_scale = 0.0f32;
        let mut max_min = 0.0f32;
        for j in 0..QK_K / 16 {
            let xg = &x[16 * j..16 * j + 16];
            let weights: [f32; 16] = std::array::from_fn(|i| xg[i].abs());
            let fit = make_qkx2_quants(
                3,
                xg,
                &weights,
                &mut l[16 * j..],
                &mut laux,
                -0.5,
                0.1,
                15,
                true,
            );
            (scales[j], mins[j]) = (fit.scale, fit.min);
            if fit.scale > max_scale {
                max_scale = fit.scale;
            }
            if fit.min > max_min {
                max_min = fit.min;
            }
        }

        y.scales = [0; QK_K / 16];
        y.d = f16::ZERO;
        if max_scale > 0.0 {
            let iscale = Q4SCALE / max_scale;
            for (q, &scale) in y.scales.iter_mut().zip(&scales) {
                *q = nearest_int(iscale * scale) as u8;
            }
            y.d = f16::from_f32(max_scale / Q4SCALE);
        }
        y.dmin = f16::ZERO;
        if max_min > 0.0 {
            let iscale = Q4SCALE / max_min;
            for (q, &min) in y.scales.iter_mut().zip(&mins) {
                *q |= (nearest_int(iscale * min) << 4) as u8;
            }
            y.dmin = f16::from_f32(max_min / Q4SCALE);
        }

        for j in 0..QK_K / 16 {
            let d = y.d.to_f32() * f32::from(y.scales[j] & 0xF);
            if d == 0.0 {
                continue;
            }
            let dm = y.dmin.to_f32() * f32::from(y.scales[j] >> 4);
            for i in 16 * j..16 * j + 16 {
                l[i] = nearest_int((x[i] + dm) / d).clamp(0, 3) as u8;
            }
        }
        y.qs = pack_two_bits(&l);
    }
}

/// Quantizes to Q3_K (ggml's `quantize_row_q3_K_ref`): per 16-weight group a symmetric
/// fit by [`make_q3_quants`], the sixteen scales quantized to 6 bits against the one of
/// largest magnitude, then the weights requantized to `-4..4`.
///
/// # Panics
/// If `src.len() != 256 * dst.len()`.
pub fn quantize_row_q3k(src: &[f32], dst: &mut [BlockQ3K]) {
    for (x, y) in input_chunks(GgmlType::Q3K, src, dst.len()).zip(dst) {
        let mut l = [0i8; QK_K];
        let mut scales = [0.0f32; QK_K / 16];
        let mut max_scale = 0.0f32;
        let mut amax = 0.0f32;
        for j in 0..QK_K / 16 {
            scales[j] = make_q3_quants(4, &x[16 * j..16 * j + 16], &mut l[16 * j..], true);
            if scales[j].abs() > amax {
                amax = scales[j].abs();
                max_scale = scales[j];
            }
        }

        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            // ggml stores nearest_int into an int8_t before clamping: `as i8` wraps alike.
            let stored: [u8; 16] = std::array::from_fn(|j| {
                ((nearest_int(iscale * scales[j]) as i8).clamp(-32, 31) + 32) as u8
            });
            y.scales = pack_q3k_scales(&stored);
            y.d = f16::from_f32(1.0 / iscale);
        } else {
            y.scales = [0; 12];
            y.d = f16::ZERO;
        }

        let sc = unpack_q3k_scales(&y.scales);
        for (j, &scale) in sc.iter().enumerate() {
            let d = y.d.to_f32() * f32::from(scale);
            if d == 0.0 {
                continue;
            }
            for i in 16 * j..16 * j + 16 {
                l[i] = (nearest_int(x[i] / d).clamp(-4, 3) + 4) as i8;
            }
        }

        // The high bit of weight j goes to bit j / 32 of hmask[j % 32].
        let mut low = [0u8; QK_K];
        y.hmask = [0; QK_K / 8];
        for j in 0..QK_K {
            let mut q = l[j] as u8;
            if q > 3 {
                y.hmask[j % 32] |= 1 << (j / 32);
                q -= 4;
            }
            low[j] = q;
        }
        y.qs = pack_two_bits(&low);
    }
}

/// Shared by Q4_K and Q5_K: the per-group affine fits (weights `rms + |x|`), the 6-bit
/// scales and mins with their f16 super-scales, and the requantized weights in
/// `0..=nmax`. Returns `(d, dmin, packed scales, quants)`.
fn quantize_k4_groups(
    x: &[f32],
    nmax: i32,
    rmin: f32,
    nstep: i32,
) -> (f16, f16, [u8; 12], [u8; QK_K]) {
    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 32];
    let mut scales = [0.0f32; QK_K / 32];
    let mut mins = [0.0f32; QK_K / 32];
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..QK_K / 32 {
        let xg = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xg {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let weights: [f32; 32] = std::array::from_fn(|i| av_x + xg[i].abs());
        let fit = make_qkx2_quants(
            nmax,
            xg,
            &weights,
            &mut l[32 * j..],
            &mut laux,
            rmin,
            0.1,
            nstep,
            false,
        );
        (scales[j], mins[j]) = (fit.scale, fit.min);
        if fit.scale > max_scale {
            max_scale = fit.scale;
        }
        if fit.min > max_min {
            max_min = fit.min;
        }
    }

    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    // ggml stores nearest_int into a uint8_t before MIN(63, ..): `as u8` wraps alike.
    let ls: [u8; 8] = std::array::from_fn(|j| (nearest_int(inv_scale * scales[j]) as u8).min(63));
    let lm: [u8; 8] = std::array::from_fn(|j| (nearest_int(inv_min * mins[j]) as u8).min(63));
    let packed = pack_scale_min_k4(&ls, &lm);
    let d = f16::from_f32(max_scale / 63.0);
    let dmin = f16::from_f32(max_min / 63.0);

    for j in 0..QK_K / 32 {
        let (sc, m) = get_scale_min_k4(j, &packed);
        let dj = d.to_f32() * f32::from(sc);
        if dj == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * f32::from(m);
        for i in 32 * j..32 * j + 32 {
            l[i] = nearest_int((x[i] + dm) / dj).clamp(0, nmax) as u8;
        }
    }
    (d, dmin, packed, l)
}

/// Quantizes to Q4_K (ggml's `quantize_row_q4_K_ref`): per 32-weight group an affine
/// fit by [`make_qkx2_quants`] (squared error, weights `rms + |x|`), the eight scales
/// and mins quantized to 6 bits against their maxima, then the weights requantized.
///
/// # Panics
/// If `src.len() != 256 * dst.len()`.
pub fn quantize_row_q4k(src: &[f32], dst: &mut [BlockQ4K]) {
    for (x, y) in input_chunks(GgmlType::Q4K, src, dst.len()).zip(dst) {
        let (d, dmin, scales, l) = quantize_k4_groups(x, 15, -1.0, 20);
        *y = BlockQ4K {
            d,
            dmin,
            scales,
            qs: pack_nibbles(&l),
        };
    }
}

/// Quantizes to Q5_K (ggml's `quantize_row_q5_K_ref`): as Q4_K with 5-bit quants and
/// the search parameters ggml uses for Q5_K.
///
/// # Panics
/// If `src.len() != 256 * dst.len()`.
pub fn quantize_row_q5k(src: &[f32], dst: &mut [BlockQ5K]) {
    for (x, y) in input_chunks(GgmlType::Q5K, src, dst.len()).zip(dst) {
        let (d, dmin, scales, l) = quantize_k4_groups(x, 31, -0.5, 15);
        // Fifth bit of weight 64c + i (i < 32) at bit 2c of qh[i], of weight
        // 64c + 32 + i at bit 2c + 1.
        let mut qh = [0u8; QK_K / 8];
        for c in 0..4 {
            for i in 0..32 {
                qh[i] |=
                    ((l[64 * c + i] >> 4) << (2 * c)) | ((l[64 * c + 32 + i] >> 4) << (2 * c + 1));
            }
        }
        *y = BlockQ5K {
            d,
            dmin,
            scales,
            qh,
            qs: pack_nibbles(&l),
        };
    }
}

/// Quantizes to Q6_K (ggml's `quantize_row_q6_K_ref`): per 16-weight group a
/// symmetric fit by [`make_qx_quants`] (weights `x^2`), the sixteen scales quantized to
/// signed 8 bits against the one of largest magnitude, then the weights requantized to
/// `-32..32`.
///
/// # Panics
/// If `src.len() != 256 * dst.len()`.
pub fn quantize_row_q6k(src: &[f32], dst: &mut [BlockQ6K]) {
    for (x, y) in input_chunks(GgmlType::Q6K, src, dst.len()).zip(dst) {
        let mut l = [0i8; QK_K];
        let mut scales = [0.0f32; QK_K / 16];
        let mut max_scale = 0.0f32;
        let mut max_abs_scale = 0.0f32;
        for j in 0..QK_K / 16 {
            scales[j] = make_qx_quants(32, &x[16 * j..16 * j + 16], &mut l[16 * j..], 1, None);
            if scales[j].abs() > max_abs_scale {
                max_abs_scale = scales[j].abs();
                max_scale = scales[j];
            }
        }

        if max_abs_scale < GROUP_MAX_EPS {
            *y = BlockQ6K::ZERO;
            continue;
        }

        let iscale = -128.0 / max_scale;
        y.d = f16::from_f32(1.0 / iscale);
        for (q, &scale) in y.scales.iter_mut().zip(&scales) {
            *q = nearest_int(iscale * scale).min(127) as i8;
        }
        for j in 0..QK_K / 16 {
            let d = y.d.to_f32() * f32::from(y.scales[j]);
            if d == 0.0 {
                continue;
            }
            for i in 16 * j..16 * j + 16 {
                l[i] = (nearest_int(x[i] / d).clamp(-32, 31) + 32) as i8;
            }
        }

        for half in 0..2 {
            let l = &l[128 * half..128 * half + 128];
            let ql = &mut y.ql[64 * half..64 * half + 64];
            let qh = &mut y.qh[32 * half..32 * half + 32];
            for i in 0..32 {
                let q = |k: usize| l[i + 32 * k] as u8;
                ql[i] = (q(0) & 0xF) | ((q(2) & 0xF) << 4);
                ql[i + 32] = (q(1) & 0xF) | ((q(3) & 0xF) << 4);
                qh[i] = (q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6);
            }
        }
    }
}

/// Quantizes to Q8_K (ggml's `quantize_row_q8_K_ref`): `d = max / -127` where `max` is
/// the value of largest magnitude, `q = min(127, round(x / d))`, and `bsums[j]` the sum
/// of each 16 quants. An all-zero block gets `d = 0` and zero quants and sums.
///
/// # Panics
/// If `src.len() != 256 * dst.len()`.
pub fn quantize_row_q8k(src: &[f32], dst: &mut [BlockQ8K]) {
    for (x, y) in input_chunks(GgmlType::Q8K, src, dst.len()).zip(dst) {
        let mut max = 0.0f32;
        let mut amax = 0.0f32;
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            *y = BlockQ8K::ZERO;
            continue;
        }
        // ggml uses -127 rather than -128 here so that the quants fit an AVX trick.
        let iscale = -127.0 / max;
        for (q, &v) in y.qs.iter_mut().zip(x) {
            *q = nearest_int(iscale * v).clamp(-128, 127) as i8;
        }
        for (sum, group) in y.bsums.iter_mut().zip(y.qs.chunks_exact(16)) {
            *sum = group.iter().map(|&q| i16::from(q)).sum();
        }
        y.d = 1.0 / iscale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One Q4_K block worked out by hand from the format:
    /// `w = d * sc * q - dmin * m`, with the 6-bit scales/mins packed as in ggml.
    #[test]
    fn q4k_hand_checked_block() {
        // d = 0.5, dmin = 0.25 (exact in f16).
        // Packed scales, built by hand (not with pack_scale_min_k4):
        //   group 0: sc = 2, m = 4   -> byte 0 = 2,  byte 4 = 4
        //   group 1: sc = 1, m = 0   -> byte 1 = 1,  byte 5 = 0
        //   group 4: sc = 17 (0b01_0001), m = 33 (0b10_0001)
        //            -> byte 8 = low nibbles: 0x1 | 0x1 << 4 = 0x11,
        //               high 2 bits of sc (01) in bits 6..8 of byte 0: 2 | 0x40 = 0x42,
        //               high 2 bits of m (10) in bits 6..8 of byte 4: 4 | 0x80 = 0x84.
        //   other groups: 0.
        let mut scales = [0u8; 12];
        scales[0] = 0x42;
        scales[4] = 0x84;
        scales[1] = 1;
        scales[8] = 0x11;
        // Nibbles: chunk 0 (weights 0..64) is bytes 0..32: low nibble -> weight l
        // (group 0), high nibble -> weight 32 + l (group 1). Chunk 2 (weights 128..192)
        // is bytes 64..96, low nibble -> group 4.
        let mut qs = [0u8; 128];
        qs[0] = 0x3F; // w0: q=15 -> 0.5*2*15 - 0.25*4 = 14.0;  w32: q=3 -> 0.5*1*3 - 0 = 1.5
        qs[1] = 0x00; // w1: q=0 -> -1.0;                       w33: 0.0
        qs[64] = 0x02; // w128: q=2 -> 0.5*17*2 - 0.25*33 = 17 - 8.25 = 8.75
        let block = BlockQ4K {
            d: f16::from_f32(0.5),
            dmin: f16::from_f32(0.25),
            scales,
            qs,
        };
        let mut out = [f32::NAN; 256];
        dequantize_row_q4k(&[block], &mut out);
        assert_eq!(out[0], 14.0);
        assert_eq!(out[32], 1.5);
        assert_eq!(out[1], -1.0);
        assert_eq!(out[33], 0.0);
        assert_eq!(out[128], 8.75);
        assert_eq!(out[129], -8.25); // q = 0 in group 4: -dmin * m
        assert_eq!(out[64], 0.0); // group 2: sc = m = 0
        assert_eq!(out[160], 0.0); // group 5: sc = m = 0
        // The shared unpacker reads the same values.
        assert_eq!(get_scale_min_k4(4, &scales), (17, 33));
        assert_eq!(get_scale_min_k4(0, &scales), (2, 4));
    }

    /// One Q6_K group worked out by hand: `w = d * sc * (q - 32)`.
    #[test]
    fn q6k_hand_checked_weights() {
        let mut b = BlockQ6K::ZERO;
        b.d = f16::from_f32(0.125);
        b.scales[0] = 8; // group 0: weights 0..16
        b.scales[4] = -2; // group 4: weights 64..80
        // Weight 0: low nibble of ql[0], high bits = qh[0] bits 0..2. q = 0x2A = 42.
        b.ql[0] = 0x0A | (0x1 << 4); // weight 64 gets low nibble 1 (high nibble of ql[0])
        b.qh[0] = 0b10 | (0b11 << 4); // weight 0 high bits 2; weight 64 high bits 3
        let mut out = [0.0f32; 256];
        dequantize_row_q6k(&[b], &mut out);
        assert_eq!(out[0], 0.125 * 8.0 * (42.0 - 32.0)); // 10.0
        assert_eq!(out[64], 0.125 * -2.0 * (0x31 as f32 - 32.0)); // -4.25
        assert_eq!(out[1], 0.125 * 8.0 * -32.0);
    }

    #[test]
    fn q8k_all_zero_block() {
        let mut y = [BlockQ8K {
            d: 1.0,
            qs: [1; 256],
            bsums: [1; 16],
        }];
        quantize_row_q8k(&[0.0; 256], &mut y);
        assert_eq!(y[0], BlockQ8K::ZERO);
    }
}
