//! Row-interleaved repacks of ggml blocks: one `...x8` block holds the same block column
//! of eight consecutive weight rows, laid out so that one 256-bit vector carries four
//! consecutive quants of each of the eight rows (a 32-bit lane per row).
//!
//! A matrix kernel then multiplies a vector of eight rows by four broadcast activation
//! quants (`vpdpbusd`, or `maddubs` + `madd`), and every i32/f32 lane is one row's own
//! sum: no horizontal reductions, and each lane combines its blocks in the same order,
//! with the same f32 operations, as the reference dot product of its row (so results
//! stay bit-identical to [`crate::reference::quant_dot`]). The idea is llama.cpp's
//! "repack" (`ggml-cpu/repack.cpp`, `block_q4_0x8`) and ik_llama.cpp's `_r8` types; the
//! layouts here are Woolly's own, chosen for the lane-per-row scheme above.
//!
//! Packing is lossless: [`Interleave::unpack`] gives back the eight original blocks
//! (tested for every format).

use half::f16;

use super::{BlockQ4_1, BlockQ8_0};

/// Rows per interleaved block.
pub const ROWS: usize = 8;

/// A block format with an eight-row interleaved form.
pub trait Interleave: Copy + Send + Sync + 'static {
    /// The interleaved block of eight rows.
    type X8: Copy + Send + Sync + std::fmt::Debug + PartialEq + 'static;
    /// Packs block `b` of eight rows.
    fn pack(rows: &[Self; ROWS]) -> Self::X8;
    /// The eight original blocks.
    fn unpack(x8: &Self::X8) -> [Self; ROWS];
}

/// Eight rows' 4-byte groups: byte `32 * k + 4 * r + i` is byte `4 * k + i` of row `r`.
pub(super) fn interleave_bytes<const N: usize, const M: usize>(rows: [&[u8; N]; ROWS]) -> [u8; M] {
    assert_eq!(M, N * ROWS);
    let mut out = [0u8; M];
    for (r, row) in rows.iter().enumerate() {
        for (k, group) in row.chunks_exact(4).enumerate() {
            out[32 * k + 4 * r..][..4].copy_from_slice(group);
        }
    }
    out
}

/// The inverse of [`interleave_bytes`]: row `r`'s `N` bytes.
pub(super) fn deinterleave_bytes<const N: usize, const M: usize>(
    bytes: &[u8; M],
    r: usize,
) -> [u8; N] {
    assert_eq!(M, N * ROWS);
    let mut out = [0u8; N];
    for (k, group) in out.chunks_exact_mut(4).enumerate() {
        group.copy_from_slice(&bytes[32 * k + 4 * r..][..4]);
    }
    out
}

/// Eight Q4_1 rows, one block each (160 bytes).
///
/// `qs` chunk `k` (bytes `32k..32k + 32`, k < 4) holds bytes `4k..4k + 4` of each row's
/// `qs`: its low nibbles are weights `4k..4k + 4`, its high nibbles `16 + 4k..20 + 4k`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4_1x8 {
    /// Row scales.
    pub d: [f16; ROWS],
    /// Row offsets.
    pub m: [f16; ROWS],
    /// Interleaved nibbles.
    pub qs: [u8; 128],
}
const _: () = assert!(size_of::<BlockQ4_1x8>() == 160);

impl Interleave for BlockQ4_1 {
    type X8 = BlockQ4_1x8;
    fn pack(rows: &[Self; ROWS]) -> BlockQ4_1x8 {
        BlockQ4_1x8 {
            d: rows.map(|b| b.d),
            m: rows.map(|b| b.m),
            qs: interleave_bytes(rows.each_ref().map(|b| &b.qs)),
        }
    }
    fn unpack(x8: &BlockQ4_1x8) -> [Self; ROWS] {
        std::array::from_fn(|r| BlockQ4_1 {
            d: x8.d[r],
            m: x8.m[r],
            qs: deinterleave_bytes(&x8.qs, r),
        })
    }
}

/// Eight Q8_0 rows, one block each (272 bytes).
///
/// `qs` chunk `k` (k < 8) holds weights `4k..4k + 4` of each row, as stored (i8 bits).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8_0x8 {
    /// Row scales.
    pub d: [f16; ROWS],
    /// Interleaved quants (the bytes of the rows' i8 quants).
    pub qs: [u8; 256],
}
const _: () = assert!(size_of::<BlockQ8_0x8>() == 272);

fn i8_bytes(q: &[i8; 32]) -> [u8; 32] {
    q.map(|v| v as u8)
}

impl Interleave for BlockQ8_0 {
    type X8 = BlockQ8_0x8;
    fn pack(rows: &[Self; ROWS]) -> BlockQ8_0x8 {
        let qs = rows.each_ref().map(|b| i8_bytes(&b.qs));
        BlockQ8_0x8 {
            d: rows.map(|b| b.d),
            qs: interleave_bytes(qs.each_ref()),
        }
    }
    fn unpack(x8: &BlockQ8_0x8) -> [Self; ROWS] {
        std::array::from_fn(|r| BlockQ8_0 {
            d: x8.d[r],
            qs: deinterleave_bytes::<32, 256>(&x8.qs, r).map(|v| v as i8),
        })
    }
}

/// Packs a matrix of `rows` (a multiple of [`ROWS`]) rows of `nb` blocks each into
/// `(rows / 8, nb)` interleaved blocks, row group by row group.
///
/// # Panics
/// When `w.len() != rows * nb` or `rows` is not a multiple of [`ROWS`].
pub fn pack_rows<B: Interleave>(w: &[B], rows: usize) -> Vec<B::X8> {
    packed_blocks(w, rows).collect()
}

/// The interleaved blocks of [`pack_rows`], in order, as an iterator of exactly
/// `w.len() / 8` items (for storage other than a `Vec`).
///
/// # Panics
/// As [`pack_rows`].
pub fn packed_blocks<B: Interleave>(w: &[B], rows: usize) -> impl Iterator<Item = B::X8> + '_ {
    assert!(rows.is_multiple_of(ROWS) && w.len().is_multiple_of(rows.max(1)));
    let nb = w.len() / rows.max(1);
    w.chunks_exact((ROWS * nb).max(1)).flat_map(move |group| {
        (0..nb).map(move |b| {
            let blocks: [B; ROWS] = std::array::from_fn(|r| group[r * nb + b]);
            B::pack(&blocks)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestRng;

    fn round_trips<B: Interleave + PartialEq + std::fmt::Debug>(blocks: Vec<B>) {
        let rows: [B; ROWS] = std::array::from_fn(|r| blocks[r]);
        assert_eq!(B::unpack(&B::pack(&rows)), rows);
    }

    #[test]
    fn packing_is_lossless() {
        let mut rng = TestRng::new(3);
        for _ in 0..20 {
            round_trips(rng.q4_1(ROWS));
            round_trips(rng.q8_0(ROWS));
        }
    }

    #[test]
    fn pack_rows_orders_groups_then_blocks() {
        let mut rng = TestRng::new(4);
        let (rows, nb) = (16, 3);
        let w = rng.q4_1(rows * nb);
        let p = pack_rows(&w, rows);
        assert_eq!(p.len(), 2 * nb);
        for g in 0..2 {
            for b in 0..nb {
                let un = BlockQ4_1::unpack(&p[g * nb + b]);
                for (r, blk) in un.iter().enumerate() {
                    assert_eq!(*blk, w[(8 * g + r) * nb + b]);
                }
            }
        }
    }
}
