//! Matrix-vector (token generation) and batched matrix-matrix (prompt processing)
//! products over quantized weights, split across threads by rows.
//!
//! Determinism across batching (DECISIONS.md): each output is one row's dot product,
//! computed by the same kernel on the same quantized activation row whatever the batch
//! size, thread count or neighbours; K is never split. So `matmul` of a batch gives
//! bit-identical rows to `matvec` of each token.

use half::f16;

use crate::GgmlType;
use crate::dispatch::Kernels;
use crate::quant::{
    self, Block, BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8_0,
    BlockQ8_1, BlockQ8K,
};

/// Why a matrix product was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MatvecError {
    /// No dot product for this weight type yet.
    UnsupportedType(GgmlType),
    /// A buffer's length does not match `rows` x `cols` (or the batch).
    Shape {
        /// Which buffer (`"w"`, `"x"` or `"y"`).
        buffer: &'static str,
        /// Its length.
        len: usize,
        /// The length the shapes require.
        expected: usize,
    },
    /// `cols` is not a whole number of the weight type's blocks.
    PartialBlock {
        /// The weight type.
        ty: GgmlType,
        /// The row length.
        cols: usize,
    },
}

impl std::fmt::Display for MatvecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MatvecError::UnsupportedType(ty) => write!(f, "no matvec kernel for {ty} weights"),
            MatvecError::Shape {
                buffer,
                len,
                expected,
            } => write!(
                f,
                "matvec: `{buffer}` has {len} elements, the shapes need {expected}"
            ),
            MatvecError::PartialBlock { ty, cols } => write!(
                f,
                "matvec: rows of {cols} are not a whole number of {ty} blocks of {}",
                ty.block_len()
            ),
        }
    }
}

impl std::error::Error for MatvecError {}

/// Tasks per pool thread a parallel matrix product is cut into: enough to balance
/// threads that run at uneven speeds, few enough that scheduling stays small next to
/// SmolLM2's 0.2 MB matrices.
const TASKS_PER_THREAD: usize = 4;

/// The least weight bytes one task streams (about 16 KiB), so small matrices are not cut
/// into slivers.
const MIN_TASK_BYTES: usize = 16 << 10;

/// Matrices smaller than this many weights run on the calling thread.
const PARALLEL_MIN_WEIGHTS: usize = 1 << 16;

/// Whether a product over `weights` weights (times the batch) runs on the thread team:
/// when it is big enough and the team has more than one worker.
fn runs_on_team(weights: usize) -> bool {
    weights >= PARALLEL_MIN_WEIGHTS && crate::team::workers() > 1
}

/// The stages [`for_tasks_with_stage`] needs for a product over `weights` weights: one
/// per worker on the team, one on the calling thread.
pub(crate) fn stage_count(weights: usize) -> usize {
    if runs_on_team(weights) {
        crate::team::workers()
    } else {
        1
    }
}

/// Output rows per task for a matrix of `rows` rows of `row_bytes` bytes each (times the
/// batch, which reuses each row): about [`TASKS_PER_THREAD`] tasks per pool thread, none
/// under [`MIN_TASK_BYTES`]. Every row's result is independent of the split.
pub(crate) fn rows_per_task(rows: usize, row_bytes: usize) -> usize {
    let tasks = crate::team::workers() * TASKS_PER_THREAD;
    let min_rows = MIN_TASK_BYTES.div_ceil(row_bytes.max(1));
    rows.div_ceil(tasks).max(min_rows).max(1)
}

/// Runs `f(first_row, out)` over `out` split into tasks of `rows_per_task * stride`
/// outputs, on the thread team ([`crate::team`]) when the matrix is big enough. The one
/// place matrix products know about threads; it allocates nothing.
pub(crate) fn for_row_chunks(
    out: &mut [f32],
    stride: usize,
    weights: usize,
    rows_per_task: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    let chunk = rows_per_task * stride;
    if runs_on_team(weights) {
        crate::team::for_each_chunk(out, chunk, |i, o| f(i * rows_per_task, o));
    } else {
        for (i, o) in out.chunks_mut(chunk).enumerate() {
            f(i * rows_per_task, o);
        }
    }
}

/// Runs `f(task, stage)` for the tasks `0..n_tasks`, on the thread team when the matrix
/// is big enough, `stage` a chunk of `stage_len` elements of `stages` private to the
/// thread running the task (`stages` holds [`stage_count`]`(weights)` of them). It
/// allocates nothing.
pub(crate) fn for_tasks_with_stage(
    n_tasks: usize,
    stages: &mut [f32],
    stage_len: usize,
    weights: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    if runs_on_team(weights) {
        crate::team::for_each_task_with_scratch(n_tasks, (stages, stage_len), f);
    } else {
        for task in 0..n_tasks {
            f(task, &mut stages[..stage_len]);
        }
    }
}

/// Reusable buffers for [`Kernels::matmul_with`]: the quantized activation rows and the
/// transposed batch result. They grow to the largest shapes seen and are then reused,
/// so a warm scratch makes a matrix product allocate nothing.
#[derive(Debug, Default)]
pub struct MatmulScratch {
    /// Activations quantized to Q8_K.              shape: (batch, cols / 256)
    pub(crate) q8k: Vec<BlockQ8K>,
    /// Each Q8_K block's sums of 32 quants, for the AVX-512 Q4_K pair tile.
    ///                                              shape: (batch, cols / 256)
    pub(crate) q8k_sums32: Vec<[i16; 8]>,
    /// Activations quantized to Q8_0.              shape: (batch, cols / 32)
    pub(crate) q8_0: Vec<BlockQ8_0>,
    /// The Q8_0 blocks made unsigned, for the AVX-512 Q8_0 pair tile.
    ///                                              shape: (batch, cols / 32)
    pub(crate) q8_0_unsigned: Vec<crate::quant::BlockQ8_0Unsigned>,
    /// Activations quantized to Q8_1.              shape: (batch, cols / 32)
    pub(crate) q8_1: Vec<BlockQ8_1>,
    /// Each Q8_1 block's `d` and `s` as f32, for the AVX-512 Q4_1 pair tile.
    ///                                              shape: (batch, cols / 32)
    pub(crate) q8_1_f32: Vec<[f32; 2]>,
    /// A batched product's results before they are put in the tokens' rows: all of
    /// them, row-major over weights, for an unpacked matrix (shape: (rows, batch)); a
    /// stage per thread for a packed one ([`Kernels::matmul_packed_many_with`]).
    pub(crate) yt: Vec<f32>,
}

impl MatmulScratch {
    /// An empty scratch (allocates on first use).
    pub fn new() -> MatmulScratch {
        MatmulScratch::default()
    }
}

/// A weight matrix as blocks: borrowed when aligned, copied otherwise (a `Vec<u8>` in a
/// test may be unaligned; GGUF tensor data is 32-byte aligned and never copied).
pub(crate) fn weight_blocks<W: Block>(w: &[u8]) -> std::borrow::Cow<'_, [W]> {
    match quant::blocks::<W>(w) {
        Some(b) => std::borrow::Cow::Borrowed(b),
        None => std::borrow::Cow::Owned(
            w.chunks_exact(W::BYTES)
                .map(|c| quant::read_block(c).expect("whole blocks"))
                .collect(),
        ),
    }
}

/// Little-endian float weights as a slice: borrowed when aligned, decoded otherwise.
fn float_view<T: FloatBits, const N: usize>(
    w: &[u8],
    decode: fn([u8; N]) -> T,
) -> std::borrow::Cow<'_, [T]> {
    let (pre, mid, post) = {
        // SAFETY: `T` is f32 or f16 (sealed below): plain data of size N, valid for every
        // bit pattern, so any aligned run of initialised bytes is a valid `[T]`;
        // `align_to` only hands out the aligned middle.
        unsafe { w.align_to::<T>() }
    };
    if pre.is_empty() && post.is_empty() {
        std::borrow::Cow::Borrowed(mid)
    } else {
        std::borrow::Cow::Owned(
            w.chunks_exact(N)
                .map(|c| decode(c.try_into().expect("N bytes")))
                .collect(),
        )
    }
}

/// The float types [`float_view`] may reinterpret bytes as (little-endian targets
/// only; `quant` refuses to compile on big-endian ones).
trait FloatBits: Copy {}
impl FloatBits for f32 {}
impl FloatBits for f16 {}

/// `y[b][r] = dot(w[r], xq[b], b)` for every row `r` and batch row `b`; `yt` is the
/// scratch for a batch's transposed results.
/// shapes: w: (rows, cols / W::BLOCK_LEN); xq: (batch, cols / X::BLOCK_LEN);
/// y: (batch, rows)
fn product<W: Block, X: Block>(
    dot: impl Fn(&[W], &[X], usize) -> f32 + Sync + Send,
    w: &[W],
    rows: usize,
    xq: &[X],
    batch: usize,
    y: &mut [f32],
    yt: &mut Vec<f32>,
) {
    let nb = w.len() / rows;
    let per_task = rows_per_task(rows, nb * W::BYTES * batch);
    if batch == 1 {
        for_row_chunks(y, 1, w.len() * W::BLOCK_LEN, per_task, |r0, ys| {
            for (i, y) in ys.iter_mut().enumerate() {
                *y = dot(&w[(r0 + i) * nb..][..nb], xq, 0);
            }
        });
        return;
    }
    // Row-major over weights: each weight row is loaded from memory once and reused
    // (from L1) for every batch row. Results land transposed, then are put in place.
    let nx = xq.len() / batch;
    yt.clear();
    yt.resize(rows * batch, 0.0); // (rows, batch)
    let weights = w.len() * W::BLOCK_LEN * batch;
    for_row_chunks(yt, batch, weights, per_task, |r0, ys| {
        for (i, yr) in ys.chunks_exact_mut(batch).enumerate() {
            let wr = &w[(r0 + i) * nb..][..nb];
            for (b, y) in yr.iter_mut().enumerate() {
                *y = dot(wr, &xq[b * nx..][..nx], b);
            }
        }
    });
    for r in 0..rows {
        for b in 0..batch {
            y[b * rows + r] = yt[r * batch + b];
        }
    }
}

/// Activation elements from which [`quantize_rows`] splits its rows across the thread
/// team: the calling thread quantizes while the others wait, so a serial quantization is
/// time the whole team loses (eight of SmolLM2's 576-wide rows: about 2 us).
pub(crate) const QUANTIZE_MIN_PARALLEL: usize = 4096;

/// Rows per task when a batch of `len` activations (`per_row` blocks a row) is quantized
/// across the thread team, or `None` to quantize it on the calling thread.
fn quantize_rows_per_task(batch: usize, len: usize, per_row: usize) -> Option<usize> {
    let threads = crate::team::workers();
    (batch >= 2 && threads >= 2 && len >= QUANTIZE_MIN_PARALLEL && per_row > 0)
        .then(|| batch.div_ceil(threads))
}

/// Quantizes each of the `batch` rows of `x` with `quantize` into `buf` (reused), the
/// rows shared out across the thread team from [`QUANTIZE_MIN_PARALLEL`] elements on.
/// Each row's blocks are the same whichever thread quantizes it.
/// shapes: x: (batch, cols); returns (batch, cols / X::BLOCK_LEN)
pub(crate) fn quantize_rows<'a, X: Block + Send>(
    buf: &'a mut Vec<X>,
    x: &[f32],
    batch: usize,
    quantize: impl Fn(&[f32], &mut [X]) + Sync,
) -> &'a [X] {
    let cols = x.len() / batch;
    // Every block is written below: only blocks past the old length need a value.
    buf.resize(x.len() / X::BLOCK_LEN, X::ZERO);
    let per_row = cols / X::BLOCK_LEN;
    // The rows of `q` from the rows of `xs` (as many as `q` holds).
    let rows = |xs: &[f32], q: &mut [X]| {
        for (xr, qr) in xs.chunks_exact(cols).zip(q.chunks_exact_mut(per_row)) {
            quantize(xr, qr);
        }
    };
    if let Some(rows_per_task) = quantize_rows_per_task(batch, x.len(), per_row) {
        crate::team::for_each_chunk(buf, rows_per_task * per_row, |i, q| {
            rows(&x[i * rows_per_task * cols..], q);
        });
    } else {
        rows(x, buf);
    }
    buf
}

/// [`quantize_rows`], and with `prepare` also each row's blocks prepared for a tile
/// kernel (`prepare(blocks, prepared)`, one element per block) in the same parallel
/// step, right after the row is quantized: a preparation made serially after the
/// quantization was time the whole team lost. Without `prepare`, `prep` is left empty.
/// shapes: x: (batch, cols); returns (batch, cols / X::BLOCK_LEN) twice (or once and empty)
pub(crate) fn quantize_rows_prepared<'a, X: Block + Send, P: Copy + Send>(
    (buf, prep): (&'a mut Vec<X>, &'a mut Vec<P>),
    fill: P,
    x: &[f32],
    batch: usize,
    quantize: impl Fn(&[f32], &mut [X]) + Sync,
    prepare: Option<impl Fn(&[X], &mut [P]) + Sync>,
) -> (&'a [X], &'a [P]) {
    prep.clear();
    let Some(prepare) = prepare else {
        return (quantize_rows(buf, x, batch, quantize), prep);
    };
    let cols = x.len() / batch;
    buf.resize(x.len() / X::BLOCK_LEN, X::ZERO);
    prep.resize(buf.len(), fill);
    let per_row = cols / X::BLOCK_LEN;
    let rows = |xs: &[f32], q: &mut [X], p: &mut [P]| {
        for (xr, qr) in xs.chunks_exact(cols).zip(q.chunks_exact_mut(per_row)) {
            quantize(xr, qr);
        }
        prepare(q, p);
    };
    if let Some(rows_per_task) = quantize_rows_per_task(batch, x.len(), per_row) {
        let chunk = rows_per_task * per_row;
        crate::team::for_each_chunk_zip((buf, chunk), (prep, chunk), |i, q, p| {
            rows(&x[i * chunk * X::BLOCK_LEN..], q, p);
        });
    } else {
        rows(x, buf, prep);
    }
    (buf, prep)
}

/// Checks that `w` holds `rows` rows of `cols` weights in whole blocks of `ty`.
pub(crate) fn check_weights(
    ty: GgmlType,
    w: &[u8],
    rows: usize,
    cols: usize,
) -> Result<(), MatvecError> {
    if !cols.is_multiple_of(ty.block_len()) {
        return Err(MatvecError::PartialBlock { ty, cols });
    }
    check_len(
        "w",
        w.len(),
        rows * cols / ty.block_len() * ty.block_bytes(),
    )
}

pub(crate) fn check_len(
    buffer: &'static str,
    len: usize,
    expected: usize,
) -> Result<(), MatvecError> {
    if len == expected {
        Ok(())
    } else {
        Err(MatvecError::Shape {
            buffer,
            len,
            expected,
        })
    }
}

/// Which of ggml's two accumulation orders a token's Q4_K products take. ggml chooses by
/// the batch's shape: its repacked Q4_K kernels take whole groups of four tokens through
/// their gemm ([`crate::reference::quant_dot::vec_dot_q4k_q8k`]) and the tokens left over,
/// a single decoded token among them, through their gemv
/// ([`crate::reference::quant_dot::vec_dot_q4k_q8k_gemv`]). The two differ in f32
/// rounding only; choosing as ggml does reproduces llama.cpp's results bit for bit. The
/// other formats have one order (their products ignore this).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Q4kOrder {
    /// ggml's gemm order: tokens in whole groups of four.
    #[default]
    Gemm,
    /// ggml's gemv order: the tokens left over from whole groups of four.
    Gemv,
}

/// `orders` is empty or one per batch row.
pub(crate) fn check_orders(orders: &[Q4kOrder], batch: usize) -> Result<(), MatvecError> {
    if orders.is_empty() {
        Ok(())
    } else {
        check_len("orders", orders.len(), batch)
    }
}

impl Kernels {
    /// `y = W x` for a batch of `batch` activation rows: `y[b][r] = sum_c W[r][c] x[b][c]`.
    /// The activations are quantized to the weight type's partner format first (Q8_K for
    /// k-quants, Q8_0 or Q8_1 for the legacy formats), exactly as ggml does.
    /// Uses a per-thread [`MatmulScratch`], so it allocates only while that grows; see
    /// [`Kernels::matmul_with`] to own the scratch.
    /// shapes: w: (rows, cols) in `ty`'s blocks; x: (batch, cols); y: (batch, rows)
    ///
    /// # Errors
    /// An unsupported weight type, or buffers whose lengths do not match the shapes.
    #[expect(clippy::too_many_arguments, reason = "a matrix product's shapes")]
    pub fn matmul(
        &self,
        ty: GgmlType,
        w: &[u8],
        rows: usize,
        cols: usize,
        x: &[f32],
        batch: usize,
        y: &mut [f32],
    ) -> Result<(), MatvecError> {
        thread_local! {
            static SCRATCH: std::cell::RefCell<MatmulScratch> =
                std::cell::RefCell::new(MatmulScratch::new());
        }
        SCRATCH.with(|s| match s.try_borrow_mut() {
            Ok(mut s) => self.matmul_with(&mut s, ty, w, rows, cols, x, batch, y),
            // Re-entered (a product inside a product's task): a fresh scratch.
            Err(_) => self.matmul_with(&mut MatmulScratch::new(), ty, w, rows, cols, x, batch, y),
        })
    }

    /// [`Kernels::matmul`] with caller-owned buffers: once `scratch` has grown to the
    /// shapes in use, a call allocates nothing (weights are borrowed in place when
    /// aligned, as GGUF tensor data always is; an unaligned test buffer is copied).
    /// shapes: w: (rows, cols) in `ty`'s blocks; x: (batch, cols); y: (batch, rows)
    ///
    /// # Errors
    /// An unsupported weight type, or buffers whose lengths do not match the shapes.
    #[expect(clippy::too_many_arguments, reason = "a matrix product's shapes")]
    pub fn matmul_with(
        &self,
        scratch: &mut MatmulScratch,
        ty: GgmlType,
        w: &[u8],
        rows: usize,
        cols: usize,
        x: &[f32],
        batch: usize,
        y: &mut [f32],
    ) -> Result<(), MatvecError> {
        self.matmul_ordered_with(scratch, ty, w, rows, cols, x, batch, y, &[])
    }

    /// [`Kernels::matmul_with`] with each batch row's [`Q4kOrder`] (`orders` empty: all
    /// [`Q4kOrder::Gemm`]); only Q4_K weights read it.
    /// shapes: w: (rows, cols) in `ty`'s blocks; x: (batch, cols); y: (batch, rows);
    /// orders: (batch,) or empty
    ///
    /// # Errors
    /// As [`Kernels::matmul_with`], and `orders` of another length.
    #[expect(clippy::too_many_arguments, reason = "a matrix product's shapes")]
    pub fn matmul_ordered_with(
        &self,
        scratch: &mut MatmulScratch,
        ty: GgmlType,
        w: &[u8],
        rows: usize,
        cols: usize,
        x: &[f32],
        batch: usize,
        y: &mut [f32],
        orders: &[Q4kOrder],
    ) -> Result<(), MatvecError> {
        if !Kernels::supports(ty) {
            return Err(MatvecError::UnsupportedType(ty));
        }
        check_weights(ty, w, rows, cols)?;
        check_len("x", x.len(), batch * cols)?;
        check_len("y", y.len(), batch * rows)?;
        check_orders(orders, batch)?;
        if rows == 0 || batch == 0 {
            return Ok(());
        }
        let MatmulScratch {
            q8k,
            q8_0,
            q8_1,
            yt,
            ..
        } = scratch;
        match ty {
            GgmlType::Q4K => {
                let xq = quantize_rows(q8k, x, batch, |x, q| self.quantize_q8k.call(x, q));
                let (gemm, gemv) = (self.vec_dot_q4k_q8k, self.vec_dot_q4k_q8k_gemv);
                let w = weight_blocks::<BlockQ4K>(w);
                let dot = |w: &[BlockQ4K], x: &[BlockQ8K], b: usize| match orders.get(b) {
                    Some(Q4kOrder::Gemv) => gemv.call(w, x),
                    _ => gemm.call(w, x),
                };
                product(dot, &w, rows, xq, batch, y, yt);
            }
            GgmlType::Q6K => {
                let xq = quantize_rows(q8k, x, batch, |x, q| self.quantize_q8k.call(x, q));
                let f = self.vec_dot_q6k_q8k;
                let w = weight_blocks::<BlockQ6K>(w);
                product(|w, x, _| f.call(w, x), &w, rows, xq, batch, y, yt);
            }
            GgmlType::Q8_0 => {
                let xq = quantize_rows(q8_0, x, batch, |x, q| self.quantize_q8_0.call(x, q));
                let f = self.vec_dot_q8_0_q8_0;
                let w = weight_blocks::<BlockQ8_0>(w);
                product(|w, x, _| f.call(w, x), &w, rows, xq, batch, y, yt);
            }
            GgmlType::Q4_0 => {
                let xq = quantize_rows(q8_0, x, batch, |x, q| self.quantize_q8_0.call(x, q));
                let f = self.vec_dot_q4_0_q8_0;
                let w = weight_blocks::<BlockQ4_0>(w);
                product(|w, x, _| f.call(w, x), &w, rows, xq, batch, y, yt);
            }
            GgmlType::Q5_0 => {
                let xq = quantize_rows(q8_0, x, batch, |x, q| self.quantize_q8_0.call(x, q));
                let f = self.vec_dot_q5_0_q8_0;
                let w = weight_blocks::<BlockQ5_0>(w);
                product(|w, x, _| f.call(w, x), &w, rows, xq, batch, y, yt);
            }
            GgmlType::Q4_1 => {
                let xq = quantize_rows(q8_1, x, batch, |x, q| self.quantize_q8_1.call(x, q));
                let f = self.vec_dot_q4_1_q8_1;
                let w = weight_blocks::<BlockQ4_1>(w);
                product(|w, x, _| f.call(w, x), &w, rows, xq, batch, y, yt);
            }
            GgmlType::Q5_1 => {
                let xq = quantize_rows(q8_1, x, batch, |x, q| self.quantize_q8_1.call(x, q));
                let f = self.vec_dot_q5_1_q8_1;
                let w = weight_blocks::<BlockQ5_1>(w);
                product(|w, x, _| f.call(w, x), &w, rows, xq, batch, y, yt);
            }
            GgmlType::F32 => {
                let f = self.dot_f32;
                let w = float_view(w, f32::from_le_bytes);
                product_float(&|a: &[f32], b| f.call(a, b), &w, rows, x, y);
            }
            GgmlType::F16 => {
                let f = self.dot_f16_f32;
                let w = float_view(w, f16::from_le_bytes);
                product_float(&|a: &[f16], b| f.call(a, b), &w, rows, x, y);
            }
            other => return Err(MatvecError::UnsupportedType(other)),
        }
        Ok(())
    }

    /// `y = W x` for one activation row: [`Kernels::matmul`] with `batch = 1`.
    /// shapes: w: (rows, cols) in `ty`'s blocks; x: (cols,); y: (rows,)
    ///
    /// # Errors
    /// As [`Kernels::matmul`].
    pub fn matvec(
        &self,
        ty: GgmlType,
        w: &[u8],
        rows: usize,
        cols: usize,
        x: &[f32],
        y: &mut [f32],
    ) -> Result<(), MatvecError> {
        self.matmul(ty, w, rows, cols, x, 1, y)
    }
}

/// [`product`] for float weights against f32 activations (no activation quantization).
fn product_float<W: Copy + Send + Sync>(
    dot: &(dyn Fn(&[W], &[f32]) -> f32 + Sync),
    w: &[W],
    rows: usize,
    x: &[f32],
    y: &mut [f32],
) {
    let cols = w.len() / rows;
    let per_task = rows_per_task(rows, cols * size_of::<W>());
    for (xb, yb) in x.chunks_exact(cols).zip(y.chunks_exact_mut(rows)) {
        for_row_chunks(yb, 1, w.len(), per_task, |r0, ys| {
            for (i, y) in ys.iter_mut().enumerate() {
                *y = dot(&w[(r0 + i) * cols..][..cols], xb);
            }
        });
    }
}

/// `y = W x` with kernels for the best ISA here (or `WOOLLY_ISA`), resolved on first
/// call. For repeated use, build a [`Kernels`] once and call [`Kernels::matvec`].
/// shapes: w: (rows, cols) in `ty`'s blocks; x: (cols,); y: (rows,)
///
/// # Errors
/// As [`Kernels::matmul`].
///
/// # Panics
/// When `WOOLLY_ISA` names an ISA this CPU lacks.
pub fn matvec(
    ty: GgmlType,
    w: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    y: &mut [f32],
) -> Result<(), MatvecError> {
    Kernels::detected().matvec(ty, w, rows, cols, x, y)
}

/// `y = W x` for a batch of activation rows; see [`Kernels::matmul`].
/// shapes: w: (rows, cols) in `ty`'s blocks; x: (batch, cols); y: (batch, rows)
///
/// # Errors
/// As [`Kernels::matmul`].
pub fn matmul(
    ty: GgmlType,
    w: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    batch: usize,
    y: &mut [f32],
) -> Result<(), MatvecError> {
    Kernels::detected().matmul(ty, w, rows, cols, x, batch, y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::Isa;
    use crate::testing::{TestRng, for_each_isa};

    fn quantized(ty: GgmlType, rows: usize, cols: usize, rng: &mut TestRng) -> Vec<u8> {
        let wf = rng.f32s(rows * cols);
        let mut w = vec![0u8; rows * cols / ty.block_len() * ty.block_bytes()];
        quant::quantize_row(ty, &wf, &mut w).expect("quantize");
        w
    }

    /// Rows quantized across the team are the rows quantized one by one, whatever the
    /// thread count and however the rows split.
    #[test]
    fn rows_quantized_in_parallel_equal_rows_quantized_alone() {
        let mut rng = TestRng::new(7);
        for (batch, cols) in [(2, 2048), (3, 1536), (8, 576), (9, 4096), (1, 8192)] {
            let x = rng.f32s(batch * cols);
            let mut want = vec![quant::BlockQ8_1::ZERO; batch * cols / 32];
            for (xr, qr) in x.chunks_exact(cols).zip(want.chunks_exact_mut(cols / 32)) {
                quant::quantize_row_q8_1(xr, qr);
            }
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("pool");
                let mut buf = Vec::new();
                let got = pool.install(|| {
                    quantize_rows(&mut buf, &x, batch, quant::quantize_row_q8_1).to_vec()
                });
                assert_eq!(got, want, "batch {batch}, cols {cols}, {threads} threads");
            }
        }
    }

    /// matvec equals the reference dot per row, bit for bit, on every ISA; matmul of a
    /// batch equals matvec of each row, bit for bit (determinism across batching).
    #[test]
    fn matvec_and_matmul_agree_with_row_references() {
        let mut rng = TestRng::new(11);
        let types = [
            GgmlType::Q4K,
            GgmlType::Q6K,
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::Q5_0,
            GgmlType::Q4_1,
            GgmlType::Q5_1,
        ];
        for ty in types {
            let (rows, cols, batch) = (70, 512, 3);
            let w = quantized(ty, rows, cols, &mut rng);
            let x = rng.f32s(batch * cols);
            let scalar = Kernels::select(Isa::Scalar);
            let mut want = vec![0.0; batch * rows];
            for b in 0..batch {
                scalar
                    .matvec(
                        ty,
                        &w,
                        rows,
                        cols,
                        &x[b * cols..][..cols],
                        &mut want[b * rows..][..rows],
                    )
                    .unwrap();
            }
            for_each_isa(&format!("matvec {ty}"), |isa| {
                let k = Kernels::select(isa);
                let mut y = vec![0.0; batch * rows];
                k.matmul(ty, &w, rows, cols, &x, batch, &mut y).unwrap();
                assert_eq!(y, want, "{ty} matmul on {isa}");
                let mut y1 = vec![0.0; rows];
                k.matvec(ty, &w, rows, cols, &x[cols..][..cols], &mut y1)
                    .unwrap();
                assert_eq!(y1[..], want[rows..2 * rows], "{ty} matvec on {isa}");
            });
        }
    }

    /// Against the f32 product of the unquantized weights and activations, held to
    /// ggml's `test-quantize-fns` bound: |error| / cols <= MAX_DOT_PRODUCT_ERROR (0.02;
    /// ggml's data are `0.1 + 2 cos(i)`, ours uniform in +-[1/16, 1]).
    #[test]
    fn every_type_is_within_ggml_dot_product_error() {
        let mut rng = TestRng::new(14);
        let (rows, cols) = (16, 1024);
        for ty in [
            GgmlType::Q4K,
            GgmlType::Q6K,
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::Q5_0,
            GgmlType::Q4_1,
            GgmlType::Q5_1,
            GgmlType::F16,
        ] {
            let wf = rng.f32s(rows * cols);
            let x = rng.f32s(cols);
            let mut w = vec![0u8; rows * cols / ty.block_len() * ty.block_bytes()];
            quant::quantize_row(ty, &wf, &mut w).unwrap();
            let mut y = vec![0.0; rows];
            matvec(ty, &w, rows, cols, &x, &mut y).unwrap();
            for r in 0..rows {
                let want = crate::reference::dot_f32(&wf[r * cols..][..cols], &x);
                let err = (y[r] - want).abs() / cols as f32;
                assert!(err <= 0.02, "{ty} row {r}: {} vs {want}", y[r]);
            }
        }
    }

    #[test]
    fn matvec_is_close_to_the_f32_product() {
        // Q8_0 weights and activations: each product is within ggml's bounds of f32.
        let mut rng = TestRng::new(12);
        let (rows, cols) = (40, 256);
        let wf = rng.f32s(rows * cols);
        let x = rng.f32s(cols);
        let mut w = vec![0u8; rows * cols / 32 * 34];
        quant::quantize_row(GgmlType::Q8_0, &wf, &mut w).unwrap();
        let mut y = vec![0.0; rows];
        matvec(GgmlType::Q8_0, &w, rows, cols, &x, &mut y).unwrap();
        for r in 0..rows {
            let want: f32 = (0..cols).map(|c| wf[r * cols + c] * x[c]).sum();
            assert!(
                (y[r] - want).abs() < 0.02 * (cols as f32).sqrt(),
                "row {r}: {} vs {want}",
                y[r]
            );
        }
    }

    #[test]
    fn float_weights_and_errors() {
        let mut rng = TestRng::new(13);
        let (rows, cols) = (5, 33);
        let wf = rng.f32s(rows * cols);
        let x = rng.f32s(cols);
        let bytes: Vec<u8> = wf.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut y = vec![0.0; rows];
        matvec(GgmlType::F32, &bytes, rows, cols, &x, &mut y).unwrap();
        for r in 0..rows {
            let want = crate::reference::dot_f32(&wf[r * cols..][..cols], &x);
            assert!((y[r] - want).abs() < 1e-4, "{} vs {want}", y[r]);
        }
        let err = matvec(GgmlType::Q4K, &bytes, rows, cols, &x, &mut y).unwrap_err();
        assert_eq!(
            err,
            MatvecError::PartialBlock {
                ty: GgmlType::Q4K,
                cols
            }
        );
        let err = matvec(GgmlType::F32, &bytes[1..], rows, cols, &x, &mut y).unwrap_err();
        assert!(err.to_string().contains("`w`"), "{err}");
        let err = matvec(GgmlType::Q3K, &[], 0, 256, &[0.0; 256], &mut []).unwrap_err();
        assert_eq!(err, MatvecError::UnsupportedType(GgmlType::Q3K));
    }
}
