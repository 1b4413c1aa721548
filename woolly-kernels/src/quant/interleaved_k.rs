//! Row-interleaved repacks of the k-quants Q4_K and Q6_K (see [`super::interleaved`] for
//! the scheme: one 256-bit vector holds four consecutive quants of each of eight rows,
//! one 32-bit lane per row).
//!
//! The quant bits keep their original density (token generation is bandwidth-bound):
//! the nibbles of Q4_K and the `ql` / `qh` bit planes of Q6_K are only regrouped, four
//! bytes of a row at a time, exactly as [`super::interleaved::BlockQ4_1x8`] regroups
//! Q4_1's nibbles. What changes is the scales:
//!
//! - Q4_K's twelve packed bytes of 6-bit scales and mins are unpacked
//!   ([`get_scale_min_k4`]) into one byte each, which costs 32 bytes per eight rows
//!   (1184 bytes instead of 8 x 144 = 1152, +2.8%). The unpacking is a bijection (all 96
//!   bits are used), so [`pack_scale_min_k4`] restores the original bytes.
//! - Q6_K's scales are already bytes; they are only reordered (1680 bytes, exactly
//!   8 x 210).
//!
//! Scales are stored **pair-interleaved**: byte `16 * j + 2 * r + p` is the scale of
//! group `2 * j + p` of row `r`. One 16-byte load then gives, sign- or zero-extended to
//! i16, the pairs `(s[2j], s[2j + 1])` of each row in its 32-bit lane (the operand of
//! `madd_epi16` against the activations' pairs of group sums), and a byte shuffle of
//! the same 16 bytes gives one group's scale per row.

use half::f16;

use super::interleaved::{Interleave, ROWS, deinterleave_bytes, interleave_bytes};
use super::search::pack_scale_min_k4;
use super::{BlockQ4K, BlockQ6K, get_scale_min_k4};

/// Byte `16 * j + 2 * r + p` of a pair-interleaved scale array: group `2j + p` of row
/// `r` (`groups` = 8 for Q4_K, 16 for Q6_K).
#[inline]
pub const fn scale_index(group: usize, row: usize) -> usize {
    16 * (group / 2) + 2 * row + group % 2
}

/// Eight Q4_K rows, one super-block each (1184 bytes).
///
/// `qs` chunk `k` (bytes `32k..32k + 32`, k < 32) holds bytes `4k..4k + 4` of each
/// row's `qs`: with `c = k / 8` and `l = 4 * (k % 8)`, its low nibbles are weights
/// `64c + l..64c + l + 4` (group `2c`), its high nibbles `64c + 32 + l..` (group `2c+1`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4Kx8 {
    /// Row scales of the scales.
    pub d: [f16; ROWS],
    /// Row scales of the mins.
    pub dmin: [f16; ROWS],
    /// 6-bit group scales, pair-interleaved ([`scale_index`]).
    pub scales: [u8; 64],
    /// 6-bit group mins, pair-interleaved ([`scale_index`]).
    pub mins: [u8; 64],
    /// Interleaved nibbles.
    pub qs: [u8; 1024],
}
const _: () = assert!(size_of::<BlockQ4Kx8>() == 1184);

impl Interleave for BlockQ4K {
    type X8 = BlockQ4Kx8;
    fn pack(rows: &[Self; ROWS]) -> BlockQ4Kx8 {
        let (mut scales, mut mins) = ([0u8; 64], [0u8; 64]);
        for (r, b) in rows.iter().enumerate() {
            for g in 0..8 {
                let (sc, m) = get_scale_min_k4(g, &b.scales);
                scales[scale_index(g, r)] = sc;
                mins[scale_index(g, r)] = m;
            }
        }
        BlockQ4Kx8 {
            d: rows.map(|b| b.d),
            dmin: rows.map(|b| b.dmin),
            scales,
            mins,
            qs: interleave_bytes(rows.each_ref().map(|b| &b.qs)),
        }
    }
    fn unpack(x8: &BlockQ4Kx8) -> [Self; ROWS] {
        std::array::from_fn(|r| {
            let sc: [u8; 8] = std::array::from_fn(|g| x8.scales[scale_index(g, r)]);
            let m: [u8; 8] = std::array::from_fn(|g| x8.mins[scale_index(g, r)]);
            BlockQ4K {
                d: x8.d[r],
                dmin: x8.dmin[r],
                scales: pack_scale_min_k4(&sc, &m),
                qs: deinterleave_bytes(&x8.qs, r),
            }
        })
    }
}

/// Eight Q6_K rows, one super-block each (1680 bytes, the size of the eight originals).
///
/// `ql` chunk `k` (k < 32) holds bytes `4k..4k + 4` of each row's `ql`, `qh` chunk `k`
/// (k < 16) bytes `4k..4k + 4` of each row's `qh`. Weights `128h + 32q + 4i..+4`
/// (half `h`, quarter `q`, `i < 8`) are then the low (`q < 2`) or high nibbles of `ql`
/// chunk `16h + 8 * (q % 2) + i` and bits `2q..2q + 2` of `qh` chunk `8h + i`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ6Kx8 {
    /// Row scales.
    pub d: [f16; ROWS],
    /// The sixteen group scales of each row, pair-interleaved ([`scale_index`]).
    pub scales: [i8; 128],
    /// Interleaved low nibbles.
    pub ql: [u8; 1024],
    /// Interleaved high bit pairs.
    pub qh: [u8; 512],
}
const _: () = assert!(size_of::<BlockQ6Kx8>() == 1680);

impl Interleave for BlockQ6K {
    type X8 = BlockQ6Kx8;
    fn pack(rows: &[Self; ROWS]) -> BlockQ6Kx8 {
        let mut scales = [0i8; 128];
        for (r, b) in rows.iter().enumerate() {
            for (g, &s) in b.scales.iter().enumerate() {
                scales[scale_index(g, r)] = s;
            }
        }
        BlockQ6Kx8 {
            d: rows.map(|b| b.d),
            scales,
            ql: interleave_bytes(rows.each_ref().map(|b| &b.ql)),
            qh: interleave_bytes(rows.each_ref().map(|b| &b.qh)),
        }
    }
    fn unpack(x8: &BlockQ6Kx8) -> [Self; ROWS] {
        std::array::from_fn(|r| BlockQ6K {
            ql: deinterleave_bytes(&x8.ql, r),
            qh: deinterleave_bytes(&x8.qh, r),
            scales: std::array::from_fn(|g| x8.scales[scale_index(g, r)]),
            d: x8.d[r],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::interleaved::pack_rows;
    use crate::reference::quant_dot::q6k_quant;
    use crate::testing::TestRng;

    fn round_trips<B: Interleave + PartialEq + std::fmt::Debug>(blocks: Vec<B>) {
        let rows: [B; ROWS] = std::array::from_fn(|r| blocks[r]);
        assert_eq!(B::unpack(&B::pack(&rows)), rows);
    }

    #[test]
    fn k_packing_is_lossless() {
        let mut rng = TestRng::new(5);
        for _ in 0..20 {
            // Random bytes everywhere, scales included: every 12-byte scale field is
            // some packing of eight 6-bit scales and mins, and comes back unchanged.
            round_trips(rng.q4k(ROWS));
            round_trips(rng.q6k(ROWS));
        }
    }

    #[test]
    fn k_layouts_hold_what_the_docs_say() {
        let mut rng = TestRng::new(6);
        let w4 = rng.q4k(ROWS);
        let p4 = pack_rows(&w4, ROWS)[0];
        let w6 = rng.q6k(ROWS);
        let p6 = pack_rows(&w6, ROWS)[0];
        for r in 0..ROWS {
            for g in 0..8 {
                let (sc, m) = get_scale_min_k4(g, &w4[r].scales);
                assert_eq!(p4.scales[scale_index(g, r)], sc);
                assert_eq!(p4.mins[scale_index(g, r)], m);
            }
            for k in 0..32 {
                let (c, l) = (k / 8, 4 * (k % 8));
                for i in 0..4 {
                    let byte = p4.qs[32 * k + 4 * r + i];
                    assert_eq!(byte, w4[r].qs[32 * c + l + i]);
                }
            }
            for (h, q, i) in
                (0..2).flat_map(|h| (0..4).flat_map(move |q| (0..8).map(move |i| (h, q, i))))
            {
                for e in 0..4 {
                    let ql = p6.ql[32 * (16 * h + 8 * (q % 2) + i) + 4 * r + e];
                    let qh = p6.qh[32 * (8 * h + i) + 4 * r + e];
                    let low = if q < 2 { ql & 0xF } else { ql >> 4 };
                    let quant = low | (((qh >> (2 * q)) & 3) << 4);
                    assert_eq!(quant, q6k_quant(&w6[r], 128 * h + 32 * q + 4 * i + e));
                }
            }
        }
    }
}
