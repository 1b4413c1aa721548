//! Scale search and scale packing shared by the k-quant quantizers and dequantizers.
//!
//! Ported from ggml's reference quantizers (`ggml/src/ggml-quants.c`, llama.cpp commit
//! 01243c587feceaa5d6a6c2305535ef2f549c48b8): `nearest_int`, `make_qx_quants`,
//! `make_q3_quants`, `make_qkx2_quants` and `get_scale_min_k4`. The f32 operations are
//! done in ggml's order so that our quantizers choose the same quants as ggml's.
//!
//! The packings of the 6-bit k-quant scales are defined here once: [`get_scale_min_k4`]
//! and [`pack_scale_min_k4`] for Q4_K/Q5_K, [`unpack_q3k_scales`] and
//! [`pack_q3k_scales`] for Q3_K. Every dequantizer, quantizer and (later) ISA kernel
//! goes through them or is tested against them.

/// Values below this (in absolute value) count as an all-zero group (ggml's
/// `GROUP_MAX_EPS`).
pub const GROUP_MAX_EPS: f32 = 1e-15;

/// Rounds to the nearest integer, ties to even, the way ggml does it: adding
/// 1.5 * 2^23 makes the FPU round, and the integer is read back from the mantissa.
///
/// Exact for `|x| <= 4194303`; beyond that (and for NaN) the result is meaningless but
/// the function never panics, like ggml's in a release build.
#[inline]
pub fn nearest_int(x: f32) -> i32 {
    let biased = x + 12_582_912.0;
    (biased.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// The weight ggml's `make_qx_quants` gives element `x` for `rmse_type` when no
/// importance weights are passed.
fn qx_weight(rmse_type: i32, x: f32) -> f32 {
    match rmse_type {
        1 => x * x,
        2 => 1.0,
        3 => x.abs(),
        _ => x.abs().sqrt(),
    }
}

/// Symmetric quantization of `x` to `L[i] = l + nmax` with `l` in `-nmax..nmax`,
/// returning the scale `d` so that `x[i] ~ d * l` (ggml's `make_qx_quants`).
///
/// `rmse_type` 0 takes the plain `nmax / max` scale; a positive type refines it by
/// weighted least squares over 18 candidate scales (`1`: weights `x^2`, `2`: 1,
/// `3`: `|x|`, else `sqrt|x|`; `qw` overrides the weights); a negative type does one
/// least-squares step and averages. All-tiny input gives zeros and scale 0.
///
/// # Panics
/// If `l.len() < x.len()`, or `qw` is shorter than `x`.
pub fn make_qx_quants(
    nmax: i32,
    x: &[f32],
    l: &mut [i8],
    rmse_type: i32,
    qw: Option<&[f32]>,
) -> f32 {
    let n = x.len();
    let l = &mut l[..n];
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let clamp = |q: i32| q.clamp(-nmax, nmax - 1);
    let mut iscale = -(nmax as f32) / max;
    if rmse_type == 0 {
        for (li, &v) in l.iter_mut().zip(x) {
            *li = (nmax + clamp(nearest_int(iscale * v))) as i8;
        }
        return 1.0 / iscale;
    }
    let return_early = rmse_type < 0;
    let rmse_type = rmse_type.abs();
    let weight = |i: usize| qw.map_or_else(|| qx_weight(rmse_type, x[i]), |w| w[i]);
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for i in 0..n {
        let q = clamp(nearest_int(iscale * x[i]));
        l[i] = (q + nmax) as i8;
        let w = weight(i);
        let qf = q as f32;
        sumlx += w * x[i] * qf;
        suml2 += w * qf * qf;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    if return_early {
        return if suml2 > 0.0 {
            0.5 * (scale + 1.0 / iscale)
        } else {
            1.0 / iscale
        };
    }
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for (i, &xi) in x.iter().enumerate() {
            let qf = clamp(nearest_int(iscale * xi)) as f32;
            let w = weight(i);
            sumlx += w * xi * qf;
            suml2 += w * qf * qf;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (li, &v) in l.iter_mut().zip(x) {
                *li = (nmax + clamp(nearest_int(iscale * v))) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Symmetric 3-bit style quantization with iterative refinement (ggml's
/// `make_q3_quants`): `L[i] = l + nmax` with `l` in `-nmax..nmax`, returns the scale.
///
/// # Panics
/// If `l.len() < x.len()`.
pub fn make_q3_quants(nmax: i32, x: &[f32], l: &mut [i8], do_rmse: bool) -> f32 {
    let n = x.len();
    let l = &mut l[..n];
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let clamp = |q: i32| q.clamp(-nmax, nmax - 1);
    let iscale = -(nmax as f32) / max;
    if !do_rmse {
        for (li, &v) in l.iter_mut().zip(x) {
            *li = (clamp(nearest_int(iscale * v)) + nmax) as i8;
        }
        return 1.0 / iscale;
    }
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for i in 0..n {
        let q = clamp(nearest_int(iscale * x[i]));
        l[i] = q as i8;
        let w = x[i] * x[i];
        let qf = q as f32;
        sumlx += w * x[i] * qf;
        suml2 += w * qf * qf;
    }
    for _ in 0..5 {
        let mut n_changed = 0;
        for i in 0..n {
            let w = x[i] * x[i];
            let li = l[i] as f32;
            let mut slx = sumlx - w * x[i] * li;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * li * li;
                let new_l = clamp(nearest_int(x[i] * sl2 / slx));
                if new_l != i32::from(l[i]) {
                    let nf = new_l as f32;
                    slx += w * x[i] * nf;
                    sl2 += w * nf * nf;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l[i] = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    for li in l.iter_mut() {
        *li += nmax as i8;
    }
    if suml2 > 0.0 { sumlx / suml2 } else { 0.0 }
}

/// The result of [`make_qkx2_quants`]: `x[i] ~ scale * L[i] - min`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScaleMin {
    /// The scale (non-negative for sane input).
    pub scale: f32,
    /// The subtracted minimum (non-negative: ggml stores `-min` of the group, clamped so
    /// that the group minimum is never above zero).
    pub min: f32,
}

/// Affine quantization of `x` to `L[i]` in `0..=nmax` with a scale and a min, searched
/// over `nstep + 1` candidate scales `(rmin + rdelta * is + nmax) / (max - min)` for the
/// lowest weighted error (ggml's `make_qkx2_quants`; `use_mad` selects absolute rather
/// than squared error).
///
/// # Panics
/// If `x` is empty, or `weights`, `l` or `laux` is shorter than `x`.
#[expect(
    clippy::too_many_arguments,
    reason = "mirrors ggml's make_qkx2_quants parameters one for one"
)]
pub fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l: &mut [u8],
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> ScaleMin {
    let n = x.len();
    let (weights, l, laux) = (&weights[..n], &mut l[..n], &mut laux[..n]);
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        min = if x[i] < min { x[i] } else { min };
        max = if x[i] > max { x[i] } else { max };
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return ScaleMin {
            scale: 0.0,
            min: -min,
        };
    }
    let err = |diff: f32| if use_mad { diff.abs() } else { diff * diff };
    let quant =
        |iscale: f32, v: f32, min: f32| nearest_int(iscale * (v - min)).clamp(0, nmax) as u8;
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        l[i] = quant(iscale, x[i], min);
        let diff = scale * f32::from(l[i]) + min - x[i];
        best_error += weights[i] * err(diff);
    }
    if nstep < 1 {
        return ScaleMin { scale, min: -min };
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            laux[i] = quant(iscale, x[i], min);
            let q = f32::from(laux[i]);
            let w = weights[i];
            sum_l += w * q;
            sum_l2 += w * q * q;
            sum_xl += w * q * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * f32::from(laux[i]) + this_min - x[i];
                cur_error += weights[i] * err(diff);
            }
            if cur_error < best_error {
                l.copy_from_slice(laux);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    ScaleMin { scale, min: -min }
}

/// The 6-bit scale and 6-bit min of group `j` (0..8) of a Q4_K/Q5_K block from its
/// 12 packed bytes (ggml's `get_scale_min_k4`).
///
/// Bytes 0..4 hold the scales of groups 0..4 in their low 6 bits, bytes 4..8 the mins
/// of groups 0..4; groups 4..8 keep their low 4 bits in the nibbles of bytes 8..12
/// (scale low, min high) and their high 2 bits in the top bits of bytes 0..4 (scale)
/// and 4..8 (min).
///
/// # Panics
/// If `j >= 8`.
#[inline]
pub fn get_scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    assert!(j < 8, "Q4_K/Q5_K have 8 groups, asked for {j}");
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        let sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        let m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        (sc, m)
    }
}

/// Packs eight 6-bit scales and mins (values above 63 are truncated to 6 bits) into
/// the 12-byte layout [`get_scale_min_k4`] reads.
pub fn pack_scale_min_k4(scales: &[u8; 8], mins: &[u8; 8]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for j in 0..8 {
        let (ls, lm) = (scales[j] & 63, mins[j] & 63);
        if j < 4 {
            q[j] |= ls;
            q[j + 4] |= lm;
        } else {
            q[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            q[j - 4] |= (ls >> 4) << 6;
            q[j] |= (lm >> 4) << 6;
        }
    }
    q
}

/// The sixteen signed scales (`-32..32`) of a Q3_K block from its 12 packed bytes.
///
/// Scale `j` has its low 4 bits in the low nibble of byte `j` (j < 8) or the high
/// nibble of byte `j - 8` (j >= 8), and its high 2 bits at shift `2 * (j / 4)` of byte
/// `8 + j % 4`; the stored 6-bit value is offset by 32.
pub fn unpack_q3k_scales(q: &[u8; 12]) -> [i8; 16] {
    std::array::from_fn(|j| {
        let low = if j < 8 { q[j] & 0xF } else { q[j - 8] >> 4 };
        let high = (q[8 + j % 4] >> (2 * (j / 4))) & 3;
        (low | (high << 4)) as i8 - 32
    })
}

/// Packs sixteen 6-bit Q3_K scales (stored values `0..64`, i.e. scale + 32; higher bits
/// are dropped) into the layout [`unpack_q3k_scales`] reads.
pub fn pack_q3k_scales(stored: &[u8; 16]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for (j, &s) in stored.iter().enumerate() {
        let s = s & 63;
        if j < 8 {
            q[j] |= s & 0xF;
        } else {
            q[j - 8] |= (s & 0xF) << 4;
        }
        q[8 + j % 4] |= (s >> 4) << (2 * (j / 4));
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        let cases = [
            (0.5, 0),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (3.49, 3),
            (-7.6, -8),
            (100.0, 100),
        ];
        for (x, want) in cases {
            assert_eq!(nearest_int(x), want, "x = {x}");
        }
        // Out of range and NaN give garbage, not a panic.
        let _ = nearest_int(f32::NAN);
        let _ = nearest_int(f32::INFINITY);
        let _ = nearest_int(1e30);
    }

    #[test]
    fn scale_min_k4_packing_round_trips() {
        let scales = [0, 1, 63, 17, 42, 5, 63, 33];
        let mins = [63, 0, 9, 62, 1, 48, 31, 32];
        let q = pack_scale_min_k4(&scales, &mins);
        for j in 0..8 {
            assert_eq!(get_scale_min_k4(j, &q), (scales[j], mins[j]), "group {j}");
        }
    }

    #[test]
    fn q3k_scale_packing_round_trips() {
        let stored: [u8; 16] = std::array::from_fn(|j| ((j * 37 + 11) % 64) as u8);
        let q = pack_q3k_scales(&stored);
        let got = unpack_q3k_scales(&q);
        for j in 0..16 {
            assert_eq!(i32::from(got[j]), i32::from(stored[j]) - 32, "scale {j}");
        }
    }

    #[test]
    fn q3k_unpack_matches_ggml_kmask_formulation() {
        // ggml's dequantizer unpacks with 32-bit masks; check ours against that form.
        let q: [u8; 12] = [
            0x12, 0xF3, 0x4C, 0xA5, 0x01, 0xFF, 0x7E, 0x80, 0x9B, 0x36, 0xC4, 0x5D,
        ];
        let word =
            |i: usize| u32::from_le_bytes([q[4 * i], q[4 * i + 1], q[4 * i + 2], q[4 * i + 3]]);
        let (k1, k2) = (0x0303_0303u32, 0x0f0f_0f0fu32);
        let (a0, a1, tmp) = (word(0), word(1), word(2));
        let aux = [
            (a0 & k2) | ((tmp & k1) << 4),
            (a1 & k2) | (((tmp >> 2) & k1) << 4),
            ((a0 >> 4) & k2) | (((tmp >> 4) & k1) << 4),
            ((a1 >> 4) & k2) | (((tmp >> 6) & k1) << 4),
        ];
        let bytes: Vec<u8> = aux.iter().flat_map(|w| w.to_le_bytes()).collect();
        let got = unpack_q3k_scales(&q);
        for j in 0..16 {
            assert_eq!(
                i32::from(got[j]),
                i32::from(bytes[j] as i8) - 32,
                "scale {j}"
            );
        }
    }
}
