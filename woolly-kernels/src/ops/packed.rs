//! Weight matrices repacked at load into eight-row interleaved blocks
//! ([`crate::quant::interleaved`]) and their product with a batch of activations
//! through the tile kernels ([`crate::ops::qtile`]).
//!
//! A packed product gives **bit-identical** results to [`Kernels::matmul_with`] on the
//! original weights (each output is the same reference-ordered dot product; tested
//! below), so packing is purely a speed decision: one pass over a weight block serves
//! eight rows (no horizontal sums) and, in prompt processing, four tokens.

use crate::GgmlType;
use crate::dispatch::Kernels;
use crate::isa::Isa;
use crate::ops::matvec::{MatmulScratch, MatvecError, check_len, for_row_chunks, quantize_rows};
use crate::quant::interleaved::{BlockQ4_1x8, BlockQ8_0x8, Interleave, ROWS, pack_rows};
use crate::quant::{self, Block, BlockQ4_1, BlockQ8_0};

/// The interleaved blocks of one matrix.
#[derive(Debug)]
enum Packed {
    Q4_1(Vec<BlockQ4_1x8>),
    Q8_0(Vec<BlockQ8_0x8>),
}

/// A weight matrix of `rows` x `cols` in interleaved blocks, rows in groups of eight.
#[derive(Debug)]
pub struct PackedMatrix {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    blocks: Packed,
}

/// Weight rows per tile (the interleave factor).
pub const TILE_ROWS: usize = ROWS;

/// Tokens processed together against one row group in a parallel task before moving
/// on: their activations (at most 64 x 48 Q8 blocks, 110 KiB for 1536 columns) stay in
/// L2 while the task's row groups stream past.
const TOKENS_PER_PASS: usize = 64;

fn pack_blocks<B: Block + Interleave>(w: &[u8], rows: usize) -> Vec<B::X8> {
    match quant::blocks::<B>(w) {
        Some(b) => pack_rows(b, rows),
        None => {
            let owned: Vec<B> = w
                .chunks_exact(B::BYTES)
                .map(|c| quant::read_block(c).expect("whole blocks"))
                .collect();
            pack_rows(&owned, rows)
        }
    }
}

impl PackedMatrix {
    /// Whether matrices of type `ty` with `rows` rows can be packed.
    pub fn supports(ty: GgmlType, rows: usize) -> bool {
        matches!(ty, GgmlType::Q4_1 | GgmlType::Q8_0) && rows.is_multiple_of(ROWS) && rows > 0
    }

    /// Packs `w` (`rows` x `cols` in `ty`'s blocks, as stored in GGUF), or `None` when
    /// the type or the row count has no packed form ([`PackedMatrix::supports`]).
    ///
    /// # Errors
    /// When `cols` is not a whole number of blocks or `w` has the wrong length.
    pub fn pack(
        ty: GgmlType,
        w: &[u8],
        rows: usize,
        cols: usize,
    ) -> Result<Option<PackedMatrix>, MatvecError> {
        if !cols.is_multiple_of(ty.block_len()) {
            return Err(MatvecError::PartialBlock { ty, cols });
        }
        check_len(
            "w",
            w.len(),
            rows * cols / ty.block_len() * ty.block_bytes(),
        )?;
        if !Self::supports(ty, rows) {
            return Ok(None);
        }
        let blocks = match ty {
            GgmlType::Q4_1 => Packed::Q4_1(pack_blocks::<BlockQ4_1>(w, rows)),
            GgmlType::Q8_0 => Packed::Q8_0(pack_blocks::<BlockQ8_0>(w, rows)),
            _ => unreachable!("supports() lists the packed types"),
        };
        Ok(Some(PackedMatrix {
            ty,
            rows,
            cols,
            blocks,
        }))
    }

    /// The weight type.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Output rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held by the packed blocks.
    pub fn bytes(&self) -> usize {
        match &self.blocks {
            Packed::Q4_1(b) => size_of_val(b.as_slice()),
            Packed::Q8_0(b) => size_of_val(b.as_slice()),
        }
    }
}

/// `y = W x` over packed rows: quantize each activation row, then for each group of
/// eight rows run `tile(w_group, x_tokens, out)` over the batch (four tokens per call
/// where the kernel is specialized for that), split across threads by row groups.
/// shapes: w: (groups, nb); x: (batch, nb) quantized; y: (batch, rows)
fn packed_product<W: Sync, X: Sync>(
    w: &[W],
    rows: usize,
    xq: &[X],
    batch: usize,
    y: &mut [f32],
    yt: &mut Vec<f32>,
    tile: impl Fn(&[W], &[X], &mut [f32]) + Sync + Send,
) {
    let groups = rows / ROWS;
    let nb = w.len() / groups;
    let per_task = crate::ops::matvec::rows_per_task(groups, size_of_val(&w[..nb]) * batch);
    let weights = rows * nb * 32 * batch;
    // (groups, batch, 8): each group's outputs for every token, token-major.
    let out: &mut [f32] = if batch == 1 {
        y
    } else {
        yt.clear();
        yt.resize(rows * batch, 0.0);
        yt
    };
    for_row_chunks(out, batch * ROWS, weights, per_task, |g0, chunk| {
        let n_groups = chunk.len() / (batch * ROWS);
        for t0 in (0..batch).step_by(TOKENS_PER_PASS) {
            let t1 = (t0 + TOKENS_PER_PASS).min(batch);
            for g in 0..n_groups {
                let wg = &w[(g0 + g) * nb..][..nb];
                let o = &mut chunk[g * batch * ROWS..][t0 * ROWS..t1 * ROWS];
                tile(wg, &xq[t0 * nb..t1 * nb], o);
            }
        }
    });
    if batch > 1 {
        for (g, go) in yt.chunks_exact(batch * ROWS).enumerate() {
            for (t, o) in go.chunks_exact(ROWS).enumerate() {
                y[t * rows + g * ROWS..][..ROWS].copy_from_slice(o);
            }
        }
    }
}

/// Runs `four` on each run of four tokens of `x (n, nb)` / `o (n, 8)` and `one` on the
/// remaining tokens: the tile kernels' specialized shapes.
fn by_fours<X>(
    nb: usize,
    x: &[X],
    o: &mut [f32],
    four: impl Fn(&[X], &mut [f32]),
    one: impl Fn(&[X], &mut [f32]),
) {
    let n4 = o.len() / ROWS / 4 * 4;
    let (o4, o1) = o.split_at_mut(n4 * ROWS);
    let (x4, x1) = x.split_at(n4 * nb);
    for (x, o) in x4.chunks_exact(4 * nb).zip(o4.chunks_exact_mut(4 * ROWS)) {
        four(x, o);
    }
    for (x, o) in x1.chunks_exact(nb).zip(o1.chunks_exact_mut(ROWS)) {
        one(x, o);
    }
}

impl Kernels {
    /// Whether this ISA has tile kernels that beat the per-row dots, so that a model
    /// should pack its weights (AVX2 and AVX-512; the scalar and NEON tiles run the
    /// reference and serve as its test oracle).
    pub fn packs_weights(&self) -> bool {
        matches!(self.isa, Isa::Avx2 | Isa::Avx512)
    }

    /// [`Kernels::matmul_with`] on a packed matrix: bit-identical results.
    /// shapes: x: (batch, cols); y: (batch, rows)
    ///
    /// # Errors
    /// Buffers whose lengths do not match the shapes.
    pub fn matmul_packed_with(
        &self,
        scratch: &mut MatmulScratch,
        w: &PackedMatrix,
        x: &[f32],
        batch: usize,
        y: &mut [f32],
    ) -> Result<(), MatvecError> {
        check_len("x", x.len(), batch * w.cols)?;
        check_len("y", y.len(), batch * w.rows)?;
        if batch == 0 {
            return Ok(());
        }
        let (x1, x4) = (self.tile_x1, self.tile_x4);
        match &w.blocks {
            Packed::Q4_1(blocks) => {
                let xq = quantize_rows(&mut scratch.q8_1, x, batch, |x, q| {
                    self.quantize_q8_1.call(x, q)
                });
                let (f1, f4) = (x1.q4_1, x4.q4_1);
                packed_product(blocks, w.rows, xq, batch, y, &mut scratch.yt, |w, x, o| {
                    by_fours(
                        w.len(),
                        x,
                        o,
                        |x, o| f4.call(w, x, o),
                        |x, o| f1.call(w, x, o),
                    )
                });
            }
            Packed::Q8_0(blocks) => {
                let xq = quantize_rows(&mut scratch.q8_0, x, batch, |x, q| {
                    self.quantize_q8_0.call(x, q)
                });
                let (f1, f4) = (x1.q8_0, x4.q8_0);
                packed_product(blocks, w.rows, xq, batch, y, &mut scratch.yt, |w, x, o| {
                    by_fours(
                        w.len(),
                        x,
                        o,
                        |x, o| f4.call(w, x, o),
                        |x, o| f1.call(w, x, o),
                    )
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestRng, for_each_isa};

    /// A packed product equals the per-row product bit for bit, on every ISA, for batch
    /// sizes around the tile shape (4) and the token pass (64), with thread splits.
    #[test]
    fn packed_matmul_equals_matmul() {
        let mut rng = TestRng::new(21);
        for ty in [GgmlType::Q4_1, GgmlType::Q8_0] {
            let (rows, cols) = (136, 320);
            let wf = rng.f32s(rows * cols);
            let mut w = vec![0u8; rows * cols / ty.block_len() * ty.block_bytes()];
            quant::quantize_row(ty, &wf, &mut w).unwrap();
            let packed = PackedMatrix::pack(ty, &w, rows, cols).unwrap().unwrap();
            // An unaligned copy of the bytes packs to the same blocks.
            let mut shifted = vec![0u8; w.len() + 1];
            shifted[1..].copy_from_slice(&w);
            let packed_unaligned = PackedMatrix::pack(ty, &shifted[1..], rows, cols)
                .unwrap()
                .unwrap();
            for_each_isa(&format!("packed matmul {ty}"), |isa| {
                let k = Kernels::select(isa);
                for batch in [1, 2, 4, 5, 8, 67] {
                    let x = rng.f32s(batch * cols);
                    let mut want = vec![0.0; batch * rows];
                    k.matmul(ty, &w, rows, cols, &x, batch, &mut want).unwrap();
                    for p in [&packed, &packed_unaligned] {
                        let mut got = rng.f32s(batch * rows);
                        k.matmul_packed_with(&mut MatmulScratch::new(), p, &x, batch, &mut got)
                            .unwrap();
                        assert_eq!(got, want, "{ty} batch {batch} on {isa}");
                    }
                }
            });
        }
    }

    #[test]
    fn shapes_without_a_packed_form_are_declined() {
        let w = vec![0u8; 12 * 2 * 20];
        assert!(
            PackedMatrix::pack(GgmlType::Q4_1, &w, 12, 64)
                .unwrap()
                .is_none()
        );
        assert!(
            PackedMatrix::pack(GgmlType::Q4_0, &w[..8 * 18], 8, 32)
                .unwrap()
                .is_none()
        );
        assert!(PackedMatrix::pack(GgmlType::Q4_1, &w, 8, 33).is_err());
        assert!(PackedMatrix::pack(GgmlType::Q4_1, &w[1..], 12, 64).is_err());
        let p = PackedMatrix::pack(GgmlType::Q4_1, &w[..8 * 2 * 20], 8, 64)
            .unwrap()
            .unwrap();
        let err = Kernels::select(Isa::Scalar)
            .matmul_packed_with(&mut MatmulScratch::new(), &p, &[0.0; 63], 1, &mut [0.0; 8])
            .unwrap_err();
        assert!(err.to_string().contains("`x`"), "{err}");
    }
}
