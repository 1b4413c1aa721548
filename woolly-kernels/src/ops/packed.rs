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
use crate::huge_pages::HugePageBlocks;
use crate::isa::Isa;
use crate::ops::matvec::{
    MatmulScratch, MatvecError, Q4kOrder, check_len, check_orders, check_weights,
    for_tasks_with_stage, quantize_rows_prepared, rows_per_task, stage_count, weight_blocks,
};
use crate::quant::interleaved::{BlockQ4_1x8, BlockQ8_0x8, Interleave, ROWS, packed_blocks};
use crate::quant::interleaved_k::{BlockQ4Kx8, BlockQ6Kx8};
use crate::quant::{
    Block, BlockQ4_1, BlockQ4K, BlockQ6K, BlockQ8_0, BlockQ8_0Unsigned, BlockQ8_1, BlockQ8K,
};

/// The interleaved blocks of one matrix.
#[derive(Debug)]
enum Packed {
    Q4_1(HugePageBlocks<BlockQ4_1x8>),
    Q8_0(HugePageBlocks<BlockQ8_0x8>),
    Q4K(HugePageBlocks<BlockQ4Kx8>),
    Q6K(HugePageBlocks<BlockQ6Kx8>),
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

/// The blocks of `count` consecutive row groups from group `first` of a matrix of
/// `groups` groups, and the activation rows of tokens `t.0..t.1`.
fn parts<'a, W, X>(
    w: &'a [W],
    groups: usize,
    (first, count): (usize, usize),
    x: &'a [X],
    t: (usize, usize),
) -> (&'a [W], &'a [X]) {
    let nb = w.len() / groups;
    (&w[first * nb..][..count * nb], &x[t.0 * nb..t.1 * nb])
}

/// The output buffers of the matrices of one pass, `ys[i]: (batch, rows_i)`, written
/// by the tasks that compute them: each task moves its row groups' outputs from the tiles'
/// layout into place while they are still in L1, where a gather after the pass ran on
/// one thread (at SmolLM2's batch of 8, some 5000 copies of eight floats a layer).
struct Outputs {
    ptrs: [*mut f32; 8],
    lens: [usize; 8],
}

// SAFETY: `Outputs` is a set of pointers to buffers that outlive the pass; every write
// goes through `Outputs::write`, whose callers write disjoint ranges (see there).
unsafe impl Sync for Outputs {}
// SAFETY: as above.
unsafe impl Send for Outputs {}

impl Outputs {
    fn new(ys: &mut [&mut [f32]]) -> Outputs {
        let mut out = Outputs {
            ptrs: [std::ptr::null_mut(); 8],
            lens: [0; 8],
        };
        for (i, y) in ys.iter_mut().enumerate() {
            out.ptrs[i] = y.as_mut_ptr();
            out.lens[i] = y.len();
        }
        out
    }

    /// Copies `vals` into `ys[i][at..at + vals.len()]`.
    ///
    /// # Safety
    /// No other thread may read or write that range while this runs: the pass gives each
    /// (matrix, row group) to one task, which writes only that group's eight columns of
    /// every token's row, and nothing reads `ys` until the pass has returned.
    ///
    /// # Panics
    /// When the range is outside `ys[i]`.
    unsafe fn write(&self, i: usize, at: usize, vals: &[f32]) {
        assert!(
            at + vals.len() <= self.lens[i],
            "output range out of bounds"
        );
        // SAFETY: in bounds (checked above) of a live buffer, written by no one else
        // meanwhile (the caller's promise); `vals` is another buffer (the tiles' scratch).
        unsafe {
            std::ptr::copy_nonoverlapping(vals.as_ptr(), self.ptrs[i].add(at), vals.len());
        }
    }
}

/// `w`'s blocks packed; `consumed(n)` hears, after each group of [`ROWS`] rows, that the
/// first `n` bytes of `w` will not be read again.
fn pack_blocks<B: Block + Interleave>(
    w: &[u8],
    rows: usize,
    consumed: &mut dyn FnMut(usize),
) -> HugePageBlocks<B::X8> {
    let blocks = weight_blocks::<B>(w);
    let per_group = blocks.len() / rows.max(1);
    let group_bytes = per_group * ROWS * size_of::<B>();
    let packed = packed_blocks(&blocks, rows)
        .enumerate()
        .inspect(|&(i, _)| {
            if (i + 1) % per_group == 0 {
                consumed((i + 1) / per_group * group_bytes);
            }
        })
        .map(|(_, x)| x);
    HugePageBlocks::collect(blocks.len() / ROWS, packed)
}

/// Row `row` of a packed matrix of `groups` row groups, dequantized into `out`.
fn unpack_row<B: Block + Interleave>(w: &[B::X8], groups: usize, row: usize, out: &mut [f32]) {
    let nb = w.len() / groups;
    let group = &w[row / ROWS * nb..][..nb];
    for (x8, o) in group.iter().zip(out.chunks_exact_mut(B::BLOCK_LEN)) {
        B::unpack(x8)[row % ROWS].dequantize(o);
    }
}

impl PackedMatrix {
    /// Whether matrices of type `ty` with `rows` rows can be packed.
    pub fn supports(ty: GgmlType, rows: usize) -> bool {
        matches!(
            ty,
            GgmlType::Q4_1 | GgmlType::Q8_0 | GgmlType::Q4K | GgmlType::Q6K
        ) && rows.is_multiple_of(ROWS)
            && rows > 0
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
        Self::pack_with(ty, w, rows, cols, &mut |_| {})
    }

    /// [`PackedMatrix::pack`], calling `consumed(n)` as packing goes once the first `n`
    /// bytes of `w` will not be read again (in whole groups of eight rows): a caller
    /// packing from a memory map can drop those pages then, so the source and its
    /// packed copy are not both resident.
    ///
    /// # Errors
    /// As [`PackedMatrix::pack`].
    pub fn pack_with(
        ty: GgmlType,
        w: &[u8],
        rows: usize,
        cols: usize,
        consumed: &mut dyn FnMut(usize),
    ) -> Result<Option<PackedMatrix>, MatvecError> {
        check_weights(ty, w, rows, cols)?;
        if !Self::supports(ty, rows) {
            return Ok(None);
        }
        let blocks = match ty {
            GgmlType::Q4_1 => Packed::Q4_1(pack_blocks::<BlockQ4_1>(w, rows, consumed)),
            GgmlType::Q8_0 => Packed::Q8_0(pack_blocks::<BlockQ8_0>(w, rows, consumed)),
            GgmlType::Q4K => Packed::Q4K(pack_blocks::<BlockQ4K>(w, rows, consumed)),
            GgmlType::Q6K => Packed::Q6K(pack_blocks::<BlockQ6K>(w, rows, consumed)),
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

    /// Dequantizes row `row` into `out` (`cols` values): the same values as
    /// [`crate::quant::dequantize_row`] on the row as stored in GGUF, read from the packed
    /// copy (so a tied embedding table needs no pages of the file).
    ///
    /// # Panics
    /// When `row` is out of range or `out.len() != cols`.
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        assert!(row < self.rows, "row {row} of {}", self.rows);
        assert_eq!(out.len(), self.cols, "a row has {} values", self.cols);
        match &self.blocks {
            Packed::Q4_1(b) => unpack_row::<BlockQ4_1>(b, self.groups(), row, out),
            Packed::Q8_0(b) => unpack_row::<BlockQ8_0>(b, self.groups(), row, out),
            Packed::Q4K(b) => unpack_row::<BlockQ4K>(b, self.groups(), row, out),
            Packed::Q6K(b) => unpack_row::<BlockQ6K>(b, self.groups(), row, out),
        }
    }

    /// Bytes held by the packed blocks.
    pub fn bytes(&self) -> usize {
        match &self.blocks {
            Packed::Q4_1(b) => size_of_val(&**b),
            Packed::Q8_0(b) => size_of_val(&**b),
            Packed::Q4K(b) => size_of_val(&**b),
            Packed::Q6K(b) => size_of_val(&**b),
        }
    }
}

/// A batch of activation rows quantized to the format a packed type pairs with.
/// shapes: (batch, cols / 32) blocks
#[derive(Clone, Copy)]
enum Quantized<'a> {
    /// The blocks, and their `d` and `s` as f32 where a pair tile reads them (else empty).
    Q8_1(&'a [BlockQ8_1], &'a [[f32; 2]]),
    /// The blocks, and the blocks made unsigned where a pair tile reads them (else empty).
    Q8_0(&'a [BlockQ8_0], &'a [BlockQ8_0Unsigned]),
    /// The blocks, and their sums of 32 quants where a pair tile reads them (else empty).
    Q8K(&'a [BlockQ8K], &'a [[i16; 8]]),
}

impl PackedMatrix {
    /// The activation format these weights pair with (ggml's `vec_dot_type`); products
    /// of matrices that share it can share one quantized batch
    /// ([`Kernels::matmul_packed_many_with`]).
    pub fn activation_type(&self) -> GgmlType {
        match self.blocks {
            Packed::Q4_1(_) => GgmlType::Q8_1,
            Packed::Q8_0(_) => GgmlType::Q8_0,
            Packed::Q4K(_) | Packed::Q6K(_) => GgmlType::Q8K,
        }
    }

    /// Row groups of eight.
    fn groups(&self) -> usize {
        self.rows / ROWS
    }

    /// Row groups `g` and `g + 1` against tokens `t0..t1` of `x`, into `out_a` and
    /// `out_b` (each `(t1 - t0, 8)`), when this ISA has a two-group kernel for the
    /// format ([`crate::dispatch::Tiles::q4k_pair`]); returns whether it ran. It runs
    /// from one token on: below eight tokens it was slower than two eight-row tiles while
    /// the tiles prefetched into L1 (tinyllama's decode, 46 against 79 t/s at one token),
    /// and with the L2 prefetch it is faster there too (TinyLlama-shape decode 32.4-33.9
    /// against 29.9-32.0 t/s, 6 interleaved rounds of `woolly-run bench -p 0 -n 64 -t 2`).
    /// Q6_K pairs run from two tokens on: one token streaming from DRAM takes 820 us through
    /// two eight-row tiles against 930 us through the pair (`WOOLLY_BENCH_SHAPE=5632x2048
    /// WOOLLY_BENCH_MATRICES=160 cargo bench -p woolly-benches --bench qtile --
    /// q6k_5632x2048_T1`, one thread), and the TinyLlama-shape decode gains about 1% (33.5
    /// against 33.8 t/s, means of 6 interleaved rounds).
    fn tile_pair(
        &self,
        k: &Kernels,
        g: usize,
        x: Quantized<'_>,
        t: (usize, usize),
        out_a: &mut [f32],
        out_b: &mut [f32],
    ) -> bool {
        let groups = self.groups();
        let tiles = &k.tiles;
        match (&self.blocks, x) {
            (Packed::Q4K(w), Quantized::Q8K(x, xs)) if let Some(pair) = tiles.q4k_pair => {
                let (_, xs) = parts(w, groups, (g, 2), xs, t);
                let (w, x) = parts(w, groups, (g, 2), x, t);
                pair.call(w, x, xs, out_a, out_b);
            }
            (Packed::Q6K(w), Quantized::Q8K(x, _))
                if t.1 - t.0 > 1
                    && let Some(pair) = tiles.q6k_pair =>
            {
                let (w, x) = parts(w, groups, (g, 2), x, t);
                pair.call(w, x, out_a, out_b);
            }
            (Packed::Q4_1(w), Quantized::Q8_1(x, xf)) if let Some(pair) = tiles.q4_1_pair => {
                let (_, xf) = parts(w, groups, (g, 2), xf, t);
                let (w, x) = parts(w, groups, (g, 2), x, t);
                pair.call(w, x, xf, out_a, out_b);
            }
            (Packed::Q8_0(w), Quantized::Q8_0(x, xu)) if let Some(pair) = tiles.q8_0_pair => {
                let (_, xu) = parts(w, groups, (g, 2), xu, t);
                let (w, x) = parts(w, groups, (g, 2), x, t);
                pair.call(w, x, xu, out_a, out_b);
            }
            _ => return false,
        }
        true
    }

    /// Row groups `g..g + n` against `x`, a single token, into `out (n, 8)`, Q4_K
    /// in `order`, in one call ([`crate::dispatch::Tiles::q4k_gemv_rows`] and its
    /// siblings), where the format has such a kernel (all but Q4_K in the gemm order,
    /// which AVX-512 runs two groups at a time); returns whether it ran.
    fn tile_rows(
        &self,
        k: &Kernels,
        (g, n): (usize, usize),
        x: Quantized<'_>,
        out: &mut [f32],
        order: Q4kOrder,
    ) -> bool {
        let (groups, tiles) = (self.groups(), &k.tiles);
        match (&self.blocks, x) {
            (Packed::Q4_1(w), Quantized::Q8_1(x, _)) => {
                let (w, x) = parts(w, groups, (g, n), x, (0, 1));
                tiles.q4_1_rows.call(w, x, out);
            }
            (Packed::Q8_0(w), Quantized::Q8_0(x, _)) => {
                let (w, x) = parts(w, groups, (g, n), x, (0, 1));
                tiles.q8_0_rows.call(w, x, out);
            }
            (Packed::Q4K(w), Quantized::Q8K(x, _)) if order == Q4kOrder::Gemv => {
                let (w, x) = parts(w, groups, (g, n), x, (0, 1));
                tiles.q4k_gemv_rows.call(w, x, out);
            }
            (Packed::Q6K(w), Quantized::Q8K(x, _)) => {
                let (w, x) = parts(w, groups, (g, n), x, (0, 1));
                tiles.q6k_rows.call(w, x, out);
            }
            _ => return false,
        }
        true
    }

    /// Row group `g` against tokens `t0..t1` of `x`, into `out (t1 - t0, 8)`, Q4_K in
    /// `order`.
    fn tile(
        &self,
        k: &Kernels,
        g: usize,
        x: Quantized<'_>,
        t: (usize, usize),
        out: &mut [f32],
        order: Q4kOrder,
    ) {
        let (groups, tiles) = (self.groups(), &k.tiles);
        match (&self.blocks, x) {
            (Packed::Q4_1(w), Quantized::Q8_1(x, _)) => {
                let (w, x) = parts(w, groups, (g, 1), x, t);
                tiles.q4_1.call(w, x, out);
            }
            (Packed::Q8_0(w), Quantized::Q8_0(x, _)) => {
                let (w, x) = parts(w, groups, (g, 1), x, t);
                tiles.q8_0.call(w, x, out);
            }
            (Packed::Q4K(w), Quantized::Q8K(x, _)) => {
                let (w, x) = parts(w, groups, (g, 1), x, t);
                match order {
                    Q4kOrder::Gemm => tiles.q4k.call(w, x, out),
                    Q4kOrder::Gemv => tiles.q4k_gemv.call(w, x, out),
                }
            }
            (Packed::Q6K(w), Quantized::Q8K(x, _)) => {
                let (w, x) = parts(w, groups, (g, 1), x, t);
                tiles.q6k.call(w, x, out);
            }
            _ => unreachable!("activations are quantized for the weights' type"),
        }
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
        self.matmul_packed_many_with(scratch, &[w], x, batch, &mut [y])
    }

    /// `ys[i] = x W_i^T` for matrices that read the same activations (a layer's query,
    /// key and value projections; its gate and up projections), in one parallel pass:
    /// the batch is quantized once and the threads share out the row groups of all the
    /// matrices, so the pass pays one fork and join instead of one per matrix. Each
    /// output is bit-identical to [`Kernels::matmul_packed_with`] of its matrix alone.
    ///
    /// Every row group runs its tile over up to `TOKENS_PER_PASS` (64) tokens before the
    /// next group, so a group's weights are read from memory once per pass of tokens
    /// and the tokens' activations stay in L2.
    /// shapes: ws\[i\]: (rows_i, cols); x: (batch, cols); ys\[i\]: (batch, rows_i)
    ///
    /// # Errors
    /// No matrices, matrices of other widths or activation formats than the first
    /// (`UnsupportedType` names the odd type), or buffers whose lengths do not match.
    pub fn matmul_packed_many_with(
        &self,
        scratch: &mut MatmulScratch,
        ws: &[&PackedMatrix],
        x: &[f32],
        batch: usize,
        ys: &mut [&mut [f32]],
    ) -> Result<(), MatvecError> {
        self.matmul_packed_many_ordered_with(scratch, ws, x, batch, ys, &[])
    }

    /// [`Kernels::matmul_packed_many_with`] with each token's [`Q4kOrder`] (`orders`
    /// empty: all [`Q4kOrder::Gemm`]), bit-identical to
    /// [`Kernels::matmul_ordered_with`]. Only Q4_K matrices read it: each pass of tokens
    /// runs as consecutive runs of one order.
    /// shapes: ws\[i\]: (rows_i, cols); x: (batch, cols); ys\[i\]: (batch, rows_i);
    /// orders: (batch,) or empty
    ///
    /// # Errors
    /// As [`Kernels::matmul_packed_many_with`], and `orders` of another length.
    pub fn matmul_packed_many_ordered_with(
        &self,
        scratch: &mut MatmulScratch,
        ws: &[&PackedMatrix],
        x: &[f32],
        batch: usize,
        ys: &mut [&mut [f32]],
        orders: &[Q4kOrder],
    ) -> Result<(), MatvecError> {
        check_orders(orders, batch)?;
        let Some(first) = ws.first() else {
            return Err(MatvecError::Shape {
                buffer: "ws",
                len: 0,
                expected: 1,
            });
        };
        check_len("ys", ys.len(), ws.len())?;
        check_len("x", x.len(), batch * first.cols)?;
        for (w, y) in ws.iter().zip(ys.iter()) {
            check_len("w", w.cols, first.cols)?;
            if w.activation_type() != first.activation_type() {
                return Err(MatvecError::UnsupportedType(w.ty));
            }
            check_len("y", y.len(), batch * w.rows)?;
        }
        if batch == 0 {
            return Ok(());
        }
        let MatmulScratch {
            q8_0,
            q8_0_unsigned,
            q8_1,
            q8_1_f32,
            q8k,
            q8k_sums32,
            yt,
            ..
        } = scratch;
        let xq = match first.activation_type() {
            // Each with what its pair tile reads prepared once per product, where this
            // ISA has the tile and a matrix of the pass uses it.
            GgmlType::Q8_1 => {
                let (x, xf) = quantize_rows_prepared(
                    (q8_1, q8_1_f32),
                    [0.0; 2],
                    x,
                    batch,
                    |x, q| self.quantize_q8_1.call(x, q),
                    self.tiles
                        .q4_1_pair
                        .is_some()
                        .then_some(crate::quant::q8_1_scales_f32),
                );
                Quantized::Q8_1(x, xf)
            }
            GgmlType::Q8_0 => {
                let (x, xu) = quantize_rows_prepared(
                    (q8_0, q8_0_unsigned),
                    BlockQ8_0Unsigned::ZERO,
                    x,
                    batch,
                    |x, q| self.quantize_q8_0.call(x, q),
                    self.tiles
                        .q8_0_pair
                        .is_some()
                        .then_some(crate::quant::q8_0_unsigned),
                );
                Quantized::Q8_0(x, xu)
            }
            GgmlType::Q8K => {
                let q4k_pairs =
                    self.tiles.q4k_pair.is_some() && ws.iter().any(|w| w.ty == GgmlType::Q4K);
                let (x, xs) = quantize_rows_prepared(
                    (q8k, q8k_sums32),
                    [0; 8],
                    x,
                    batch,
                    |x, q| self.quantize_q8k.call(x, q),
                    q4k_pairs.then_some(crate::quant::q8k_sums32),
                );
                Quantized::Q8K(x, xs)
            }
            other => unreachable!("no packed type pairs with {other}"),
        };
        // Row group `g` of the pass is group `g - start[i]` of matrix `i`.
        let mut start = [0usize; 8];
        assert!(ws.len() <= start.len(), "at most 8 matrices share a pass");
        for i in 1..ws.len() {
            start[i] = start[i - 1] + ws[i - 1].groups();
        }
        let groups: usize = ws.iter().map(|w| w.groups()).sum();
        let bytes: usize = ws.iter().map(|w| w.bytes()).sum();
        // Even, so that two-group kernels find their pairs inside a task.
        let per_task = rows_per_task(groups, bytes / groups * batch).next_multiple_of(2);
        // A task's stage (n_groups, batch, 8): each of its groups' outputs for every
        // token, token-major, one stage per thread (not one for the whole product: for
        // a 64-token batch through SmolLM2's gate and up that would be 0.8 MB). The
        // tiles write every element, so the buffer is never cleared, only grown.
        let weights = groups * ROWS * first.cols * batch;
        let split = TaskSplit::new(groups, per_task, batch, crate::team::workers());
        // Whole cache lines and one apart, so that no two threads' stages share a line.
        let stage_len = (split.largest() * batch * ROWS).next_multiple_of(16) + 16;
        let n_stages = stage_len * stage_count(weights);
        if yt.len() < n_stages {
            yt.resize(n_stages, 0.0);
        }
        let gemv_any = orders.contains(&Q4kOrder::Gemv);
        let outputs = Outputs::new(ys);
        let matrix_of = |g: usize| start[..ws.len()].partition_point(|&s| s <= g) - 1;
        for_tasks_with_stage(
            split.n_tasks(),
            &mut yt[..n_stages],
            stage_len,
            weights,
            |task, stage| {
                let (g0, g1) = (split.start(task), split.start(task + 1));
                let n_groups = g1 - g0;
                let chunk = &mut stage[..n_groups * batch * ROWS];
                for t0 in (0..batch).step_by(TOKENS_PER_PASS) {
                    let t1 = (t0 + TOKENS_PER_PASS).min(batch);
                    let mut j = 0;
                    while j < n_groups {
                        let g = g0 + j;
                        let i = matrix_of(g);
                        if batch == 1 {
                            // One token: the task's groups of this matrix in one call.
                            let n = (n_groups - j).min(start[i] + ws[i].groups() - g);
                            let order = orders.first().copied().unwrap_or(Q4kOrder::Gemm);
                            let out = &mut chunk[j * ROWS..(j + n) * ROWS];
                            if ws[i].tile_rows(self, (g - start[i], n), xq, out, order) {
                                j += n;
                                continue;
                            }
                        }
                        let (gi, stride) = (g - start[i], batch * ROWS);
                        let (out, rest) = chunk[j * stride..].split_at_mut(stride);
                        let out = &mut out[t0 * ROWS..t1 * ROWS];
                        if gemv_any && ws[i].ty == GgmlType::Q4K {
                            // Runs of tokens of one order (no pair tile has the gemv one).
                            let mut a = t0;
                            while a < t1 {
                                let order = orders[a];
                                let b = (a + 1..t1).find(|&t| orders[t] != order).unwrap_or(t1);
                                let run = &mut out[(a - t0) * ROWS..(b - t0) * ROWS];
                                ws[i].tile(self, gi, xq, (a, b), run, order);
                                a = b;
                            }
                            j += 1;
                            continue;
                        }
                        if j + 1 < n_groups && gi + 1 < ws[i].groups() {
                            let next = &mut rest[t0 * ROWS..t1 * ROWS];
                            if ws[i].tile_pair(self, gi, xq, (t0, t1), out, next) {
                                j += 2;
                                continue;
                            }
                        }
                        ws[i].tile(self, gi, xq, (t0, t1), out, Q4kOrder::Gemm);
                        j += 1;
                    }
                }
                // This task's groups, (n_groups, batch, 8), into each token's row.
                for (j, group) in chunk.chunks_exact(batch * ROWS).enumerate() {
                    let g = g0 + j;
                    let i = matrix_of(g);
                    let (col, rows) = ((g - start[i]) * ROWS, ws[i].rows);
                    for (t, vals) in group.chunks_exact(ROWS).enumerate() {
                        // SAFETY: group `g` belongs to this task alone, and it writes only
                        // the group's eight columns of each row (see `Outputs::write`).
                        unsafe { outputs.write(i, t * rows + col, vals) };
                    }
                }
            },
        );
        Ok(())
    }
}

/// How a pass's row groups are cut into tasks, each starting on an even group so that
/// two-group kernels find their pairs inside it. Which task computes a group never
/// changes a result, so a split is free to assume a schedule the team may not follow (a
/// busy team runs every task inline).
///
/// - **Even** (batches, small matrices): `groups.div_ceil(per_task)` tasks as even as
///   whole pairs allow, none over `per_task` groups and none empty. Even rather than
///   `per_task` each and a short last task: with a handful of tasks per thread, a short
///   task left one thread idle at the end of each pass (SmolLM2, 8 sequences decoding
///   together at 2 threads: the calling thread ran 58% of the Q4_1 tiles).
/// - **Halving** (one token, at least two even tasks per worker): [`crate::team::run`]
///   gives worker `w` tasks `w * n..(w + 1) * n` of `n * workers`, so the groups are
///   shared out evenly into one range per worker, and each range is cut into
///   `n` tasks whose sizes halve (16, 8, 4, 2 and 1 parts of 31). A worker
///   that finishes its range takes the other's remaining tasks one at a time, so the
///   step ends within about the last, smallest task instead of half an even one. On
///   TinyLlama's decode at 2 threads (session 24, a Zen 2 host) the calling thread
///   waited 11 us at the end of each 210 us step with four even tasks a worker, 3 us
///   with five halving ones, and tg128 rose 1.6% (SmolLM2 0.9%); with batches, prompt
///   processing measured 0.2-1.3% slower (its stage grows with the largest task), so
///   they keep the even split.
#[derive(Clone, Copy, Debug)]
struct TaskSplit {
    groups: usize,
    /// Contiguous ranges of groups (one per worker, or one per task when even).
    ranges: usize,
    /// Tasks in each range.
    per_range: usize,
}

impl TaskSplit {
    /// Halving tasks per worker: enough that the last one is small, few enough that task
    /// boundaries (each a cold start for the prefetcher) stay rare. Twelve even tasks a
    /// worker cut the wait less (8 us) and made the steps slower; six halving ones
    /// measured the same as five.
    const PER_RANGE: usize = 5;

    /// The split of `groups` row groups of a pass over `batch` tokens for `workers`
    /// workers, where the even split has tasks of at most `per_task` groups
    /// ([`rows_per_task`]): halving for one token where the even split gives each worker
    /// at least two tasks, else even.
    fn new(groups: usize, per_task: usize, batch: usize, workers: usize) -> TaskSplit {
        let even = groups.div_ceil(per_task);
        if batch == 1 && workers > 1 && even >= 2 * workers {
            TaskSplit {
                groups,
                ranges: workers,
                per_range: Self::PER_RANGE,
            }
        } else {
            // `even` ranges of one task each: the even split.
            TaskSplit {
                groups,
                ranges: even.max(1),
                per_range: 1,
            }
        }
    }

    fn n_tasks(&self) -> usize {
        self.ranges * self.per_range
    }

    /// The first row group of task `task` (task `n_tasks` starts at `groups`).
    fn start(&self, task: usize) -> usize {
        let (r, k) = (task / self.per_range, task % self.per_range);
        let pairs = self.groups.div_ceil(2);
        let (lo, hi) = (r * pairs / self.ranges, (r + 1) * pairs / self.ranges);
        // Tasks 0..k of the range hold 2^(n-1) + .. + 2^(n-k) of its 2^n - 1 parts.
        let n = self.per_range;
        let parts = (1usize << n) - 1;
        let before = parts - ((1usize << (n - k)) - 1);
        (2 * (lo + (hi - lo) * before / parts)).min(self.groups)
    }

    /// The most groups a task holds.
    fn largest(&self) -> usize {
        (0..self.n_tasks())
            .map(|t| self.start(t + 1) - self.start(t))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant;
    use crate::testing::{TestRng, for_each_isa};

    /// The tasks of a pass cover every row group once, in order, each starting on an
    /// even group, none longer than `largest()`. The even split: every task non-empty,
    /// at most `per_task` groups, within 3 of each other. The halving split: each
    /// worker's range holds its share of pairs, and its tasks shrink.
    #[test]
    fn tasks_cover_the_groups_in_pairs_evenly_or_halving() {
        for groups in 1usize..200 {
            for per_task in (2..40).step_by(2) {
                for (batch, workers) in [(1, 1), (4, 2), (1, 2), (1, 3), (1, 16)] {
                    let split = TaskSplit::new(groups, per_task, batch, workers);
                    let n = split.n_tasks();
                    let starts: Vec<usize> = (0..=n).map(|t| split.start(t)).collect();
                    let at = format!("{groups} groups, {per_task} per task, {split:?}: {starts:?}");
                    assert_eq!((starts[0], starts[n]), (0, groups), "{at}");
                    let lens: Vec<usize> = starts.windows(2).map(|w| w[1] - w[0]).collect();
                    for (t, len) in lens.iter().enumerate() {
                        assert!(
                            starts[t].is_multiple_of(2) && *len <= split.largest(),
                            "{at}"
                        );
                    }
                    let even = groups.div_ceil(per_task);
                    if batch > 1 || workers == 1 || even < 2 * workers {
                        assert_eq!(n, even, "{at}");
                        let (min, max) = (*lens.iter().min().unwrap(), *lens.iter().max().unwrap());
                        assert!(min > 0 && max <= per_task && max - min <= 3, "{at}");
                        continue;
                    }
                    assert_eq!(n, workers * TaskSplit::PER_RANGE, "{at}");
                    let pairs = groups.div_ceil(2);
                    for (w, range) in lens.chunks(TaskSplit::PER_RANGE).enumerate() {
                        let share = (w + 1) * pairs / workers - w * pairs / workers;
                        let held: usize = range.iter().sum();
                        assert!(held.div_ceil(2) == share, "{at}");
                        assert!(range.windows(2).all(|p| p[0] + 2 >= p[1]), "{at}");
                        assert!(range[0] >= range[TaskSplit::PER_RANGE - 1], "{at}");
                    }
                }
            }
        }
    }

    /// `pack_with` reports the source consumed in whole groups of eight rows, in order,
    /// ending with all of it.
    #[test]
    fn pack_with_reports_whole_groups_consumed() {
        let mut rng = TestRng::new(5);
        for ty in [GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q4K, GgmlType::Q6K] {
            let (rows, cols) = (40, 512);
            let mut w = vec![0u8; rows * cols / ty.block_len() * ty.block_bytes()];
            quant::quantize_row(ty, &rng.f32s(rows * cols), &mut w).unwrap();
            let mut seen = Vec::new();
            PackedMatrix::pack_with(ty, &w, rows, cols, &mut |n| seen.push(n))
                .unwrap()
                .unwrap();
            let group = w.len() / (rows / ROWS);
            let want: Vec<usize> = (1..=rows / ROWS).map(|g| g * group).collect();
            assert_eq!(seen, want, "{ty}");
        }
    }

    /// Every row dequantized from the packed copy equals the row dequantized from the
    /// GGUF bytes, bit for bit, for random weights of every packed type.
    #[test]
    fn packed_rows_dequantize_as_the_file_rows() {
        let mut rng = TestRng::new(8);
        for ty in [GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q4K, GgmlType::Q6K] {
            let rows = 8 * rng.range(1, 6);
            let cols = 256 * rng.range(1, 4);
            let mut w = vec![0u8; rows * cols / ty.block_len() * ty.block_bytes()];
            quant::quantize_row(ty, &rng.f32s(rows * cols), &mut w).unwrap();
            let packed = PackedMatrix::pack(ty, &w, rows, cols).unwrap().unwrap();
            let row_bytes = w.len() / rows;
            let (mut want, mut got) = (vec![0.0; cols], vec![f32::NAN; cols]);
            for r in 0..rows {
                quant::dequantize_row(ty, &w[r * row_bytes..][..row_bytes], &mut want).unwrap();
                packed.dequantize_row(r, &mut got);
                let same = want
                    .iter()
                    .zip(&got)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{ty} {rows}x{cols}, row {r}");
            }
        }
    }

    /// A packed product equals the per-row product bit for bit, on every ISA, for batch
    /// sizes around the tile shape (4) and the token pass (64), with thread splits.
    #[test]
    fn packed_matmul_equals_matmul() {
        let mut rng = TestRng::new(21);
        for ty in [GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q4K, GgmlType::Q6K] {
            let (rows, cols) = (136, 512);
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

    /// With per-token orders, each token's row is the product in its own order: packed
    /// and per-row products agree bit for bit on every ISA, Q4_K's two orders differ
    /// (somewhere), and the other formats ignore the orders.
    #[test]
    fn ordered_products_take_each_tokens_order() {
        let mut rng = TestRng::new(31);
        for ty in [GgmlType::Q4K, GgmlType::Q6K, GgmlType::Q8_0] {
            let (rows, cols) = (72, 768);
            let mut w = vec![0u8; rows * cols / ty.block_len() * ty.block_bytes()];
            quant::quantize_row(ty, &rng.f32s(rows * cols), &mut w).unwrap();
            let packed = PackedMatrix::pack(ty, &w, rows, cols).unwrap().unwrap();
            for_each_isa(&format!("ordered matmul {ty}"), |isa| {
                let k = Kernels::select(isa);
                let mut differ = false;
                for batch in [1, 3, 6, 9, 67] {
                    let x = rng.f32s(batch * cols);
                    let orders: Vec<Q4kOrder> = (0..batch)
                        .map(|_| match rng.range(0, 2) {
                            0 => Q4kOrder::Gemm,
                            _ => Q4kOrder::Gemv,
                        })
                        .collect();
                    let mut by_order = Vec::new();
                    for o in [Q4kOrder::Gemm, Q4kOrder::Gemv] {
                        let mut y = vec![0.0; batch * rows];
                        let all = vec![o; batch];
                        let mut s = MatmulScratch::new();
                        k.matmul_ordered_with(&mut s, ty, &w, rows, cols, &x, batch, &mut y, &all)
                            .unwrap();
                        by_order.push(y);
                    }
                    differ |= by_order[0] != by_order[1];
                    // The orders differ by f32 rounding only.
                    for (a, b) in by_order[0].iter().zip(&by_order[1]) {
                        assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()), "{ty}: {a} vs {b}");
                    }
                    let want: Vec<f32> = (0..batch * rows)
                        .map(|i| by_order[usize::from(orders[i / rows] == Q4kOrder::Gemv)][i])
                        .collect();
                    let mut got = rng.f32s(batch * rows);
                    let mut s = MatmulScratch::new();
                    k.matmul_ordered_with(&mut s, ty, &w, rows, cols, &x, batch, &mut got, &orders)
                        .unwrap();
                    assert_eq!(got, want, "{ty} batch {batch} on {isa}, per-row");
                    let mut got = rng.f32s(batch * rows);
                    k.matmul_packed_many_ordered_with(
                        &mut s,
                        &[&packed],
                        &x,
                        batch,
                        &mut [&mut got],
                        &orders,
                    )
                    .unwrap();
                    assert_eq!(got, want, "{ty} batch {batch} on {isa}, packed");
                }
                assert_eq!(differ, ty == GgmlType::Q4K, "{ty} on {isa}: orders differ");
            });
        }
    }

    /// A reused scratch (holding a larger product's outputs) and outputs written in place
    /// by parallel tasks still give the per-row product's bits.
    #[test]
    fn reused_scratch_and_parallel_outputs_give_the_same_bits() {
        let mut rng = TestRng::new(23);
        let ty = GgmlType::Q8_0;
        let cols = 64;
        let k = Kernels::select(crate::Isa::best());
        let mut scratch = MatmulScratch::new();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        // The second product is smaller than the first and reads a stale buffer.
        for (rows, batch) in [(2048, 40), (1024, 70), (512, 3), (1024, 1)] {
            let mut w = vec![0u8; rows * cols / ty.block_len() * ty.block_bytes()];
            quant::quantize_row(ty, &rng.f32s(rows * cols), &mut w).unwrap();
            let packed = PackedMatrix::pack(ty, &w, rows, cols).unwrap().unwrap();
            let x = rng.f32s(batch * cols);
            let mut want = vec![0.0; batch * rows];
            k.matmul(ty, &w, rows, cols, &x, batch, &mut want).unwrap();
            let mut got = rng.f32s(batch * rows);
            pool.install(|| k.matmul_packed_with(&mut scratch, &packed, &x, batch, &mut got))
                .unwrap();
            assert_eq!(got, want, "{rows} x {cols}, batch {batch}");
        }
    }

    /// Several matrices in one pass equal each matrix alone, bit for bit; mixing
    /// activation formats or widths is refused.
    #[test]
    fn one_pass_over_many_matrices_equals_each_alone() {
        let mut rng = TestRng::new(22);
        let cols = 256;
        // One format, and Q4_K beside Q6_K (both against Q8_K, as in Q4_K_M models whose
        // value projections are upgraded to Q6_K).
        let q4_1 = [GgmlType::Q4_1; 3];
        let k_mix = [GgmlType::Q4K, GgmlType::Q4K, GgmlType::Q6K];
        for types in [q4_1, k_mix] {
            let mats: Vec<PackedMatrix> = [64, 24, 24]
                .iter()
                .zip(types)
                .map(|(&rows, ty)| {
                    let wf = rng.f32s(rows * cols);
                    let mut w = vec![0u8; rows * cols / ty.block_len() * ty.block_bytes()];
                    quant::quantize_row(ty, &wf, &mut w).unwrap();
                    PackedMatrix::pack(ty, &w, rows, cols).unwrap().unwrap()
                })
                .collect();
            for_each_isa("packed matmul many", |isa| {
                let k = Kernels::select(isa);
                for batch in [1, 6, 70] {
                    let x = rng.f32s(batch * cols);
                    let mut want: Vec<Vec<f32>> = Vec::new();
                    for m in &mats {
                        let mut y = vec![0.0; batch * m.rows()];
                        k.matmul_packed_with(&mut MatmulScratch::new(), m, &x, batch, &mut y)
                            .unwrap();
                        want.push(y);
                    }
                    let mut got: Vec<Vec<f32>> =
                        mats.iter().map(|m| rng.f32s(batch * m.rows())).collect();
                    let mut ys: Vec<&mut [f32]> =
                        got.iter_mut().map(|y| y.as_mut_slice()).collect();
                    let ws: Vec<&PackedMatrix> = mats.iter().collect();
                    k.matmul_packed_many_with(&mut MatmulScratch::new(), &ws, &x, batch, &mut ys)
                        .unwrap();
                    assert_eq!(got, want, "{types:?} batch {batch} on {isa}");
                }
            });
        }
        let mats: Vec<PackedMatrix> = [GgmlType::Q4_1]
            .iter()
            .map(|&ty| {
                let mut w = vec![0u8; 64 * cols / 32 * 20];
                quant::quantize_row(ty, &rng.f32s(64 * cols), &mut w).unwrap();
                PackedMatrix::pack(ty, &w, 64, cols).unwrap().unwrap()
            })
            .collect();
        let mut w8 = vec![0u8; 8 * cols / 32 * 34];
        quant::quantize_row(GgmlType::Q8_0, &rng.f32s(8 * cols), &mut w8).unwrap();
        let q8 = PackedMatrix::pack(GgmlType::Q8_0, &w8, 8, cols)
            .unwrap()
            .unwrap();
        let k = Kernels::select(Isa::Scalar);
        let (mut a, mut b) = (vec![0.0; 64], vec![0.0; 8]);
        let err = k
            .matmul_packed_many_with(
                &mut MatmulScratch::new(),
                &[&mats[0], &q8],
                &rng.f32s(cols),
                1,
                &mut [&mut a, &mut b],
            )
            .unwrap_err();
        assert_eq!(err, MatvecError::UnsupportedType(GgmlType::Q8_0));
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
