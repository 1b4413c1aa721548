//! The Llama forward pass over a batch of tokens, read top to bottom like the paper.
//!
//! A batch is a list of [`BatchToken`]s: each names its sequence slot and position, so
//! one call serves prompt processing (many positions of one sequence), generation (one
//! token) and continuous batching (one token of each of many sequences) alike.

use std::sync::atomic::{AtomicUsize, Ordering};

use woolly_kernels::quant::dequantize_row;
use woolly_kernels::{Kernels, Q4kOrder, team};

use crate::config::{LlamaConfig, RopeScaling};
use crate::kv_cache::{KvCache, KvView};
use crate::linear::{LinearScratch, matmul, matmul_many};
use crate::model::Model;
use crate::weights::Weight;

/// One token to evaluate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchToken {
    /// Token id.
    pub token: u32,
    /// Its position in its sequence.
    pub pos: usize,
    /// The sequence's KV-cache slot.
    pub seq: usize,
    /// Whether to compute logits for this token.
    pub logits: bool,
}

/// Why a batch was refused. Nothing is changed when a batch is refused.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// A token id outside the vocabulary.
    #[error("token id {token} is outside the vocabulary of {n_vocab}")]
    BadToken { token: u32, n_vocab: usize },
    /// A slot or position the cache cannot take.
    #[error(transparent)]
    Cache(#[from] crate::kv_cache::KvCacheError),
    /// A position that leaves a gap or rewrites the middle of a sequence.
    #[error(
        "sequence {seq}: position {pos} does not follow position {expected_prev} (positions must be contiguous)"
    )]
    NotContiguous {
        seq: usize,
        pos: usize,
        expected_prev: isize,
    },
    /// An empty batch, or one larger than the scratch space.
    #[error("batch of {n} tokens: expected 1..={max}")]
    BatchSize { n: usize, max: usize },
    /// Corrupt weights produced NaN or infinite logits.
    #[error("logits of the token at batch index {index} are not finite (corrupt weights?)")]
    NonFinite { index: usize },
}

/// Buffers for one batch, allocated once for up to `max_batch` tokens and reused.
pub struct Scratch {
    max_batch: usize,
    /// (n, n_embd) the residual stream.
    x: Vec<f32>,
    /// (n, n_embd) normalized input of a sub-layer; then attention output.
    xb: Vec<f32>,
    /// (n, n_embd) projection outputs.
    xb2: Vec<f32>,
    /// (n, n_embd) queries.
    q: Vec<f32>,
    /// (n, kv_dim) keys and values of the batch.
    k: Vec<f32>,
    v: Vec<f32>,
    /// (n, n_ff) gate and up projections.
    gate: Vec<f32>,
    up: Vec<f32>,
    /// Attention scores: one `(n_head / n_head_kv, n_ctx)` buffer per attention worker
    /// (see [`attention`]); grown on first use if the pool has more threads.
    scores: Vec<f32>,
    /// `n_head / n_head_kv * n_ctx`: the length of one buffer of `scores`.
    scores_len: usize,
    /// (n, rope_dim / 2) cos and sin of each token's position, shared by the layers.
    rope_cos: Vec<f32>,
    rope_sin: Vec<f32>,
    /// (sequence, next position) per sequence of the batch being validated.
    seq_next: Vec<(usize, usize)>,
    /// ggml's Q4_K order of each token of the batch, and of each token that wants
    /// logits (the rows of the last layer's feed-forward and of the output); see
    /// [`q4k_orders`].
    orders: Vec<Q4kOrder>,
    logit_orders: Vec<Q4kOrder>,
    /// Whether each token of the batch is its sequence's only one: it attends in ggml's
    /// one-token order (`attention_f16_single`).
    alone: Vec<bool>,
    /// (sequence, its tokens in the rows, those assigned so far): [`q4k_orders`]'s count.
    seq_rows: Vec<(usize, usize, usize)>,
    /// Buffers of the projections.
    lin: LinearScratch,
    /// (n_logits, n_embd) final hidden states of the tokens that want logits.
    hidden: Vec<f32>,
    /// (n_logits, n_vocab) logits of the tokens that asked for them, in batch order.
    logits: Vec<f32>,
    n_vocab: usize,
}

impl Scratch {
    /// Buffers for batches of up to `max_batch` tokens and contexts of `n_ctx`. The
    /// per-token buffers grow to the largest batch seen (`Scratch::fit`), so a short
    /// prompt does not hold memory for `max_batch` rows.
    pub fn new(cfg: &LlamaConfig, max_batch: usize, n_ctx: usize) -> Scratch {
        let n = max_batch.max(1);
        let scores_len = cfg.n_head / cfg.n_head_kv * n_ctx;
        Scratch {
            max_batch: n,
            x: Vec::new(),
            xb: Vec::new(),
            xb2: Vec::new(),
            q: Vec::new(),
            k: Vec::new(),
            v: Vec::new(),
            gate: Vec::new(),
            up: Vec::new(),
            scores: vec![0.0; attention_workers(team::workers()) * scores_len],
            scores_len,
            rope_cos: Vec::new(),
            rope_sin: Vec::new(),
            seq_next: Vec::with_capacity(n),
            orders: Vec::with_capacity(n),
            logit_orders: Vec::with_capacity(n),
            alone: Vec::with_capacity(n),
            seq_rows: Vec::with_capacity(n),
            lin: LinearScratch::default(),
            hidden: Vec::new(),
            logits: Vec::new(),
            n_vocab: cfg.n_vocab,
        }
    }

    /// Grows the per-token buffers to hold a batch of `n` tokens (never shrinks them).
    fn fit(&mut self, cfg: &LlamaConfig, n: usize) {
        fn grow(buf: &mut Vec<f32>, len: usize) {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
        }
        let (d, kv_dim, half) = (cfg.n_embd, cfg.kv_dim(), cfg.rope_dim / 2);
        for buf in [&mut self.x, &mut self.xb, &mut self.xb2, &mut self.q] {
            grow(buf, n * d);
        }
        grow(&mut self.k, n * kv_dim);
        grow(&mut self.v, n * kv_dim);
        grow(&mut self.rope_cos, n * half);
        grow(&mut self.rope_sin, n * half);
        grow(&mut self.gate, n * cfg.n_ff);
        grow(&mut self.up, n * cfg.n_ff);
    }

    /// Logits of the last batch: one row of `n_vocab` per token that asked for them.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// Row `i` of [`Scratch::logits`].
    pub fn logits_row(&self, i: usize) -> &[f32] {
        &self.logits[i * self.n_vocab..(i + 1) * self.n_vocab]
    }
}

/// Rows of a batch whose sums of squares [`rmsnorm`] runs interleaved.
const NORM_ROWS: usize = 8;

/// `out = x / rms(x) * w`, row by row, as ggml's `rms_norm` then `mul`: each row's
/// f32 squares summed in order in f64, the mean rounded to f32, `x * (1 / sqrt(mean +
/// eps))` then times `w`. (llama.cpp's logits move with single ulps here: summing in f32
/// lanes instead moved SmolLM2's argmax agreement from 100% to 98.6%.) The rows of a
/// batch are summed side by side, up to [`NORM_ROWS`] at once, so their chains of
/// additions overlap.
fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let d = w.len();
    for (o, xr) in out.chunks_mut(NORM_ROWS * d).zip(x.chunks(NORM_ROWS * d)) {
        let rows = xr.len() / d;
        let mut ss = [0.0; NORM_ROWS];
        let mut r = 0;
        while r < rows {
            let xr = &xr[r * d..];
            let ss = &mut ss[r..];
            r += match rows - r {
                8.. => mean_squares::<8>(xr, d, ss),
                4..=7 => mean_squares::<4>(xr, d, ss),
                2..=3 => mean_squares::<2>(xr, d, ss),
                _ => mean_squares::<1>(xr, d, ss),
            };
        }
        for ((o, xr), &ss) in o.chunks_exact_mut(d).zip(xr.chunks_exact(d)).zip(&ss) {
            let scale = 1.0 / (ss + eps).sqrt();
            for ((o, &xv), &wv) in o.iter_mut().zip(xr).zip(w) {
                *o = xv * scale * wv;
            }
        }
    }
}

/// `x += add` (when given), then `out = rmsnorm(x)`, as one step on the thread team when
/// the batch has two rows or more (each task a run of whole rows, at most [`NORM_ROWS`]):
/// the caller would otherwise run both passes alone while the team waits. Every row
/// gets the values the serial passes give it.
fn add_rmsnorm(out: &mut [f32], x: &mut [f32], add: Option<&[f32]>, w: &[f32], eps: f32) {
    let d = w.len();
    let rows = x.len() / d;
    let add_rows = |x: &mut [f32], from: usize| {
        if let Some(a) = add {
            add_residual(x, &a[from..]);
        }
    };
    if rows < 2 || team::workers() < 2 {
        add_rows(x, 0);
        rmsnorm(out, x, w, eps);
        return;
    }
    let per_task = rows.div_ceil(team::workers()).min(NORM_ROWS) * d;
    team::for_each_chunk_zip((x, per_task), (out, per_task), |i, x, out| {
        add_rows(x, i * per_task);
        rmsnorm(out, x, w, eps);
    });
}

/// `x[i] += o[i]` over `x` (the residual connection).
fn add_residual(x: &mut [f32], o: &[f32]) {
    for (x, o) in x.iter_mut().zip(o) {
        *x += o;
    }
}

/// The mean squares of the first `R` rows (of `d`) of `x` into `ss[..R]`, as ggml's
/// `rms_norm` computes them: each f32 square added in order to an f64 sum from +0, the
/// sum divided in f64, the mean rounded to f32; returns `R`.
#[inline(always)]
fn mean_squares<const R: usize>(x: &[f32], d: usize, ss: &mut [f32]) -> usize {
    let rows: [&[f32]; R] = std::array::from_fn(|r| &x[r * d..(r + 1) * d]);
    let mut acc = [0.0f64; R];
    for i in 0..d {
        for (a, row) in acc.iter_mut().zip(&rows) {
            *a += f64::from(row[i] * row[i]);
        }
    }
    for (s, a) in ss[..R].iter_mut().zip(acc) {
        *s = (a / d as f64) as f32;
    }
    R
}

/// The cos/sin table of one position, computed as ggml does (the angle multiplied by
/// `base^(-2/rope_dim)` step by step in f32, `ggml-cpu/ops.cpp` `rope_cache_init`), so
/// the rounding matches llama.cpp's.
fn rope_table(
    cfg: &LlamaConfig,
    pos: usize,
    freq_factors: Option<&[f32]>,
    cos: &mut [f32],
    sin: &mut [f32],
) {
    let theta_scale = cfg.rope_base.powf(-2.0 / cfg.rope_dim as f32);
    let freq_scale = match cfg.rope_scaling {
        RopeScaling::None => 1.0,
        RopeScaling::Linear { factor } => 1.0 / factor,
    };
    let mut theta = pos as f32;
    for i in 0..cfg.rope_dim / 2 {
        let ff = freq_factors.map_or(1.0, |f| f[i]);
        let angle = freq_scale * (theta / ff);
        cos[i] = angle.cos();
        sin[i] = angle.sin();
        theta *= theta_scale;
    }
}

/// Rotates adjacent pairs of the first `rope_dim` dims of each head of `x (n_heads, head_dim)`.
fn rope(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    // `f32::mul_add` is a libm call in code built without FMA; the same bits either way.
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has FMA (checked just above).
        unsafe { rope_fma(x, head_dim, cos, sin) };
        return;
    }
    rope_pairs(x, head_dim, cos, sin);
}

/// [`rope_pairs`] compiled with FMA instructions.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
fn rope_fma(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    rope_pairs(x, head_dim, cos, sin);
}

/// The body of [`rope`].
#[inline(always)]
fn rope_pairs(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    for head in x.chunks_exact_mut(head_dim) {
        for (i, (&c, &s)) in cos.iter().zip(sin).enumerate() {
            let (a, b) = (head[2 * i], head[2 * i + 1]);
            // ggml's rope as GCC compiles it for llama.cpp's x86 builds: contracted to
            // FMAs (the rounding llama.cpp's logits carry).
            head[2 * i] = a.mul_add(c, -(b * s));
            head[2 * i + 1] = a.mul_add(s, b * c);
        }
    }
}

/// Attention scores buffers for a team of `threads`: one per worker, which runs one
/// task at a time.
fn attention_workers(threads: usize) -> usize {
    threads.max(1)
}

/// Query and key values below which a batch's rotations run on the calling thread:
/// about 8 microseconds of work, a few steps of the spinning team.
const ROPE_MIN_PARALLEL: usize = 16 * 1024;

/// [`rope`] on each token's query row (of `q (n, d)`) and key row (of `k (n, kv_dim)`)
/// with the token's rotations (rows of `half` values of `cos` and `sin`), the tokens
/// shared out across the thread team when the batch is large enough: on one thread, a
/// TinyLlama-shape prompt's rotations were about 4% of a 16-thread pass (estimated from
/// their share of a 2-thread profile). A row's rotation is the same whatever the split.
fn rope_batch(
    (q, d): (&mut [f32], usize),
    (k, kv_dim): (&mut [f32], usize),
    head_dim: usize,
    (cos, sin): (&[f32], &[f32]),
    half: usize,
) {
    let rows = |first: usize, q: &mut [f32], k: &mut [f32]| {
        let tokens = q.chunks_exact_mut(d).zip(k.chunks_exact_mut(kv_dim));
        for (i, (qr, kr)) in tokens.enumerate() {
            let at = (first + i) * half;
            let (c, s) = (&cos[at..at + half], &sin[at..at + half]);
            rope(qr, head_dim, c, s);
            rope(kr, head_dim, c, s);
        }
    };
    let n = q.len() / d;
    if n < 2 || team::workers() < 2 || q.len() + k.len() < ROPE_MIN_PARALLEL {
        rows(0, q, k);
        return;
    }
    let per_task = n.div_ceil(team::workers());
    team::for_each_chunk_zip((q, per_task * d), (k, per_task * kv_dim), |i, q, k| {
        rows(i * per_task, q, k)
    });
}

/// Head-positions (query heads times cached positions) below which the attention of a
/// batch runs on one thread: about 6 microseconds of work (5-6 ns a head-position with
/// AVX-512), several times what a step of the spinning team costs (about one).
const ATTENTION_MIN_PARALLEL: usize = 1024;

/// How much longer a KV head's query heads take as separate tasks than in one task
/// (which reads the head's keys and values once for all of them), as a fraction.
/// Measured on SmolLM2 (9 query heads on 3 KV heads), 2 threads, 1536 positions deep
/// (`woolly-run bench -p 0 -n 128 -d 1536 -t 2`, Zen 2): 9 one-head tasks took the
/// attention from 6.26 to 5.8 ms a token where the slowest thread's share went from 6
/// to 5 heads, about 11% more a head. Set above that because the cost grows with the
/// context: past L2's size each query head re-reads its KV head from L3 (at 4000
/// positions the split gained 2% of the token's time where 11% would give about 5%).
const SPLIT_HEAD_COST: f64 = 0.15;

/// Query heads per attention task: a KV head's whole group, or one query head where the
/// group's tasks would leave threads idle (SmolLM2's three KV heads on two threads: one
/// thread runs two of the three tasks; TinyLlama's four on sixteen) and one head per
/// task finishes sooner despite reading the keys and values once per query head.
/// Compared by the slowest thread's share, in query heads.
fn heads_per_task(n_tok: usize, n_kv_head: usize, group: usize, workers: usize) -> usize {
    let rounds = |tasks: usize| tasks.div_ceil(workers.max(1)) as f64;
    let whole = rounds(n_tok * n_kv_head) * group as f64;
    let split = rounds(n_tok * n_kv_head * group) * (1.0 + SPLIT_HEAD_COST);
    if group > 1 && split < whole { 1 } else { group }
}

/// What one attention task reads: a token's query heads that share a KV head (all of
/// them, or `heads` of them).
struct AttentionTask<'a> {
    kernels: &'a Kernels,
    batch: &'a [BatchToken],
    /// Per token of `batch`: alone in its sequence (ggml's one-token order).
    alone: &'a [bool],
    kv: &'a KvCache,
    layer: usize,
    n_kv_head: usize,
    head_dim: usize,
    /// Query heads per KV head.
    group: usize,
    /// Query heads per task: `group` or a divisor of it.
    heads: usize,
}

impl AttentionTask<'_> {
    /// Tasks per token.
    fn per_token(&self) -> usize {
        self.n_kv_head * self.group / self.heads
    }

    /// Cached positions task `t` attends to.
    fn n_pos(&self, t: usize) -> usize {
        self.batch[t / self.per_token()].pos + 1
    }

    /// Head-positions of tasks `ts`, plus a little for each task's fixed costs.
    fn work(&self, ts: std::ops::Range<usize>) -> usize {
        ts.map(|t| self.heads * (self.n_pos(t) + 8)).sum()
    }

    /// Task `t`: the query heads `q (heads, head_dim)` of token `t / per_token` that
    /// follow the first `heads * (t % per_token)`, all sharing one KV head, into
    /// `out (heads, head_dim)`. A query head's result is the same in any task: the
    /// kernels compute each query head on its own.
    fn run(&self, t: usize, q: &mut [f32], out: &mut [f32], scores: &mut [f32]) {
        let i = t / self.per_token();
        let tok = &self.batch[i];
        let kv_head = (t % self.per_token()) * self.heads / self.group;
        let n_pos = tok.pos + 1;
        let scores = &mut scores[..self.heads * n_pos];
        let (nkv, hd) = (self.n_kv_head, self.head_dim);
        match self.kv.view(self.layer, tok.seq, n_pos) {
            KvView::F16 { k, v } if crate::ggml_exact::on() => crate::ggml_exact::attend_f16(
                q,
                k,
                v,
                nkv,
                kv_head,
                hd,
                scores,
                out,
                self.batch.len() == 1,
            ),
            KvView::F16 { k, v } if self.alone[i] => self
                .kernels
                .attention_f16_single
                .call(q, k, v, nkv, kv_head, hd, scores, out),
            KvView::F16 { k, v } => self
                .kernels
                .attention_f16
                .call(q, k, v, nkv, kv_head, hd, scores, out),
            KvView::F32 { k, v } => self
                .kernels
                .attention_f32
                .call(q, k, v, nkv, kv_head, hd, scores, out),
        }
    }

    /// Whether the tasks are worth the thread team: more than one, and enough work.
    fn on_team(&self) -> bool {
        let n_tasks = self.batch.len() * self.per_token();
        n_tasks >= 2 && self.work(0..n_tasks) >= ATTENTION_MIN_PARALLEL
    }

    /// Runs every task (one per `heads * head_dim` chunk of `q` and `out`), on the
    /// thread team when [`Self::on_team`], each worker with its own scores buffer (of
    /// `len`) from `scores`.
    fn run_all(&self, q: &mut [f32], out: &mut [f32], scores: &mut [f32], len: usize) {
        let chunk = self.heads * self.head_dim;
        if !self.on_team() {
            let buf = &mut scores[..len];
            let tasks = q.chunks_exact_mut(chunk).zip(out.chunks_exact_mut(chunk));
            for (t, (q, out)) in tasks.enumerate() {
                self.run(t, q, out, buf);
            }
            return;
        }
        team::for_each_chunk_pair((q, chunk), (out, chunk), (scores, len), |t, q, out, buf| {
            self.run(t, q, out, buf)
        });
    }
}

/// Attention of every token of `batch` in layer `layer`: `q (n, n_head * head_dim)`
/// against the cache (whose keys and values for the batch are written), into
/// `out (n, n_head * head_dim)`.
///
/// The (token, KV head) pairs are independent, so they are spread over the pool; each is
/// computed by the same kernel call whatever the batch, the thread count or the split, so
/// a token's result never depends on them (`../shared/design/DECISIONS.md`).
#[expect(
    clippy::too_many_arguments,
    reason = "the pass's state, borrowed apart"
)]
fn attention(
    kernels: &Kernels,
    cfg: &LlamaConfig,
    (batch, alone): (&[BatchToken], &[bool]),
    kv: &KvCache,
    layer: usize,
    q: &mut [f32],
    out: &mut [f32],
    scores: &mut Vec<f32>,
    scores_len: usize,
) {
    let want = attention_workers(team::workers()) * scores_len;
    if scores.len() < want {
        // Only when the pool has more threads than when the scratch was made.
        scores.resize(want, 0.0);
    }
    let group = cfg.n_head / cfg.n_head_kv;
    let whole = AttentionTask {
        kernels,
        batch,
        alone,
        kv,
        layer,
        n_kv_head: cfg.n_head_kv,
        head_dim: cfg.head_dim,
        group,
        heads: group,
    };
    // Split only tasks that go to the team: on one thread it would only cost. (Split,
    // the work grows by the extra tasks' fixed costs, so the team still takes it.)
    let task = if whole.on_team() {
        AttentionTask {
            heads: heads_per_task(batch.len(), cfg.n_head_kv, group, team::workers()),
            ..whole
        }
    } else {
        whole
    };
    task.run_all(q, out, &mut scores[..want], scores_len);
}

/// Moves the hidden-state rows (of `d`) of the tokens that want logits to the front of
/// `x`, in batch order; returns how many there are.
fn compact_logit_rows(batch: &[BatchToken], x: &mut [f32], d: usize) -> usize {
    let mut k = 0;
    for (i, t) in batch.iter().enumerate() {
        if t.logits {
            x.copy_within(i * d..(i + 1) * d, k * d);
            k += 1;
        }
    }
    k
}

/// Elements of a SwiGLU product below which it runs on the calling thread (about five
/// microseconds with the vector kernel; a team step costs about one).
const SWIGLU_MIN_PARALLEL: usize = 8 * 1024;

/// The first row of `logits (m, n_vocab)` that holds a NaN or an infinity, if any; the
/// rows are checked across the thread team when there are several (eight streams'
/// rows of SmolLM2's 49152 logits took about 1% of a decode step on one thread while
/// the other waited).
fn first_non_finite_row(logits: &[f32], n_vocab: usize) -> Option<usize> {
    // A fold over the row, which vectorizes, where `any` would stop early one by one.
    let finite = |r: usize| {
        logits[r * n_vocab..][..n_vocab]
            .iter()
            .fold(true, |ok, v| ok & v.is_finite())
    };
    let m = logits.len() / n_vocab;
    if m < 2 || team::workers() < 2 {
        return (0..m).find(|&r| !finite(r));
    }
    let first = AtomicUsize::new(usize::MAX);
    team::run(m, |_, r| {
        if !finite(r) {
            first.fetch_min(r, Ordering::Relaxed);
        }
    });
    Some(first.into_inner()).filter(|&r| r < m)
}

/// `gate = silu(gate) * up` for the rows (of `ff`) of a batch: the dispatched kernel per
/// row, rows split over the thread team when large (a row's result is the same whatever
/// the split).
fn swiglu(kernels: &Kernels, gate: &mut [f32], up: &[f32], ff: usize) {
    let row = |i: usize, g: &mut [f32]| kernels.swiglu.call(g, &up[i * ff..][..ff]);
    if gate.len() < SWIGLU_MIN_PARALLEL {
        for (i, g) in gate.chunks_exact_mut(ff).enumerate() {
            row(i, g);
        }
    } else {
        team::for_each_chunk(gate, ff, row);
    }
}

/// Checks the batch against the cache before anything changes.
/// `next` is scratch space: (sequence, next position) of each sequence seen so far.
fn validate(
    model: &Model,
    batch: &[BatchToken],
    kv: &KvCache,
    max: usize,
    next: &mut Vec<(usize, usize)>,
) -> Result<bool, ForwardError> {
    if batch.is_empty() || batch.len() > max {
        return Err(ForwardError::BatchSize {
            n: batch.len(),
            max,
        });
    }
    let n_vocab = model.config().n_vocab;
    next.clear();
    let mut runs_on = true;
    for t in batch {
        if t.token as usize >= n_vocab {
            return Err(ForwardError::BadToken {
                token: t.token,
                n_vocab,
            });
        }
        kv.check(t.seq, t.pos, 1)?;
        let expected = match next.iter_mut().find(|(s, _)| *s == t.seq) {
            Some((_, n)) => n,
            None => {
                next.push((t.seq, kv.len(t.seq)));
                &mut next.last_mut().expect("just pushed").1
            }
        };
        // A sequence continues where it stopped, or restarts earlier (its cache is
        // then truncated); it never leaves a gap.
        if t.pos > *expected {
            return Err(ForwardError::NotContiguous {
                seq: t.seq,
                pos: t.pos,
                expected_prev: *expected as isize - 1,
            });
        }
        runs_on &= t.pos == *expected;
        *expected = t.pos + 1;
    }
    Ok(runs_on)
}

/// The fewest and most tokens evaluated together within a batch (see [`sub_batch_rows`]).
const SUB_BATCH_MIN: usize = 16;
const SUB_BATCH_MAX: usize = 64;

/// Tokens evaluated together within a batch: the per-token buffers of a pass hold this
/// many rows, however long the batch. A packed product reads each weight block once per
/// 64 tokens (`woolly_kernels::ops::packed`), so longer sub-batches would gain nothing;
/// shorter ones keep the buffers within 1% of the model's file (peak resident memory is
/// the file, the KV cache and little else): the largest power of two from
/// `SUB_BATCH_MIN` (16) to `SUB_BATCH_MAX` (64) whose buffers take at most `model_bytes / 100`.
/// For SmolLM2-135M (101 MiB, 31 KiB per token) that is 32, for a TinyLlama shape 64.
pub fn sub_batch_rows(cfg: &LlamaConfig, model_bytes: u64) -> usize {
    let per_token = 4 * (4 * cfg.n_embd + 2 * cfg.kv_dim() + cfg.rope_dim + 2 * cfg.n_ff) as u64;
    let mut rows = SUB_BATCH_MAX;
    while rows > SUB_BATCH_MIN && rows as u64 * per_token > model_bytes / 100 {
        rows /= 2;
    }
    rows
}

/// Evaluates `batch`, writing its keys and values into `kv` and the requested logits
/// into `scratch`.
///
/// A batch longer than [`Model::sub_batch`] runs as consecutive sub-batches (each row's result
/// is independent of the rows beside it, so this changes no bit) when every sequence's
/// positions run on by one, as a prompt's do; a batch that restarts a sequence midway,
/// and any batch in the ggml-exact mode (whose arithmetic depends on the batch shape),
/// runs whole.
pub fn forward(
    model: &Model,
    batch: &[BatchToken],
    kv: &mut KvCache,
    s: &mut Scratch,
) -> Result<(), ForwardError> {
    let runs_on = validate(model, batch, kv, s.max_batch, &mut s.seq_next)?;
    // The orders of the whole batch, whatever sub-batches it runs in.
    q4k_orders(batch.iter().map(|t| t.seq), &mut s.seq_rows, &mut s.orders);
    // `seq_rows` now counts each sequence's tokens in the batch.
    s.alone.clear();
    s.alone.extend(batch.iter().map(|t| {
        let c = s.seq_rows.iter().find(|c| c.0 == t.seq);
        c.is_some_and(|c| c.1 == 1)
    }));
    let logit_seqs = batch.iter().filter(|t| t.logits).map(|t| t.seq);
    q4k_orders(logit_seqs, &mut s.seq_rows, &mut s.logit_orders);
    let sub_batch = model.sub_batch();
    if !runs_on || crate::ggml_exact::on() || batch.len() <= sub_batch {
        return forward_sub_batch(model, batch, kv, s, (0, 0));
    }
    let mut rows = 0;
    for (k, sub) in batch.chunks(sub_batch).enumerate() {
        forward_sub_batch(model, sub, kv, s, (k * sub_batch, rows)).map_err(|e| match e {
            ForwardError::NonFinite { index } => ForwardError::NonFinite {
                index: index + k * sub_batch,
            },
            e => e,
        })?;
        rows += sub.iter().filter(|t| t.logits).count();
    }
    Ok(())
}

/// ggml's choice of Q4_K order ([`Q4kOrder`]) for the rows of a matrix product, given
/// each row's sequence in order: of a sequence's `c` rows, the first `c - c % 4` (whole
/// groups of four) take the gemm order and the rest the gemv order, as llama.cpp does
/// for a batch of one sequence (a decoded token alone is gemv). Counted per sequence, a
/// token's order does not depend on the other sequences in the batch; callers that
/// split a prompt into batches split it at multiples of four (as `n_batch` = 512 does),
/// so that its tokens take the orders of one whole batch.
fn q4k_orders(
    seqs: impl Iterator<Item = usize> + Clone,
    counts: &mut Vec<(usize, usize, usize)>,
    orders: &mut Vec<Q4kOrder>,
) {
    counts.clear();
    for seq in seqs.clone() {
        match counts.iter_mut().find(|c| c.0 == seq) {
            Some(c) => c.1 += 1,
            None => counts.push((seq, 1, 0)),
        }
    }
    orders.clear();
    for seq in seqs {
        let c = counts
            .iter_mut()
            .find(|c| c.0 == seq)
            .expect("counted above");
        orders.push(if c.2 < c.1 - c.1 % 4 {
            Q4kOrder::Gemm
        } else {
            Q4kOrder::Gemv
        });
        c.2 += 1;
    }
}

/// [`forward`] on a validated batch, whose first token is token `first.0` of the whole
/// batch (for [`Scratch::orders`]), its logits written from row `first.1` of
/// [`Scratch::logits`] on (the rows before it are kept).
fn forward_sub_batch(
    model: &Model,
    batch: &[BatchToken],
    kv: &mut KvCache,
    s: &mut Scratch,
    first: (usize, usize),
) -> Result<(), ForwardError> {
    let cfg = model.config();
    s.fit(cfg, batch.len());
    let w = model.weights();
    let n = batch.len();
    let first_row = first.1;
    let orders = &s.orders[first.0..first.0 + n];
    let n_logits = batch.iter().filter(|t| t.logits).count();
    let logit_orders = &s.logit_orders[first_row..first_row + n_logits];
    let (d, kv_dim, ff) = (cfg.n_embd, cfg.kv_dim(), cfg.n_ff);
    let data = |wt: &Weight| model.weight_data(wt);
    let norms = model.norms();
    for t in batch {
        if kv.len(t.seq) > t.pos {
            kv.truncate(t.seq, t.pos);
        }
    }

    // x (n, d): the token embeddings.
    let emb = &w.token_embd;
    for (t, xr) in batch.iter().zip(s.x.chunks_exact_mut(d)) {
        match &emb.packed {
            Some(p) => p.dequantize_row(t.token as usize, xr),
            None => {
                let row = &data(emb)[t.token as usize * emb.row_bytes()..][..emb.row_bytes()];
                dequantize_row(emb.ty, row, xr).expect("embedding rows were checked at load");
            }
        }
    }

    // The rotations of each token's position, the same in every layer.
    let half = cfg.rope_dim / 2;
    for (i, t) in batch.iter().enumerate() {
        rope_table(
            cfg,
            t.pos,
            norms.rope_freqs.as_deref(),
            &mut s.rope_cos[i * half..(i + 1) * half],
            &mut s.rope_sin[i * half..(i + 1) * half],
        );
    }

    for (l, lw) in w.layers.iter().enumerate() {
        // Attention block. The previous layer's feed-forward output (`xb2`, every row:
        // only the last layer compacts) is added to `x` with the norm, in one step.
        add_rmsnorm(
            &mut s.xb[..n * d],
            &mut s.x[..n * d],
            (l > 0).then_some(&s.xb2[..n * d]),
            &norms.attn[l],
            cfg.rms_eps,
        );
        // q (n, d), k and v (n, kv_dim): one pass over the three matrices.
        matmul_many(
            model.kernels(),
            [
                (&lw.wq, data(&lw.wq)),
                (&lw.wk, data(&lw.wk)),
                (&lw.wv, data(&lw.wv)),
            ],
            &s.xb[..n * d],
            n,
            &mut [
                &mut s.q[..n * d],
                &mut s.k[..n * kv_dim],
                &mut s.v[..n * kv_dim],
            ],
            orders,
            &mut s.lin,
        );
        rope_batch(
            (&mut s.q[..n * d], d),
            (&mut s.k[..n * kv_dim], kv_dim),
            cfg.head_dim,
            (&s.rope_cos, &s.rope_sin),
            half,
        );
        for (i, t) in batch.iter().enumerate() {
            let (k, v) = (
                &s.k[i * kv_dim..(i + 1) * kv_dim],
                &s.v[i * kv_dim..(i + 1) * kv_dim],
            );
            kv.write(l, t.seq, t.pos, k, v);
        }
        attention(
            model.kernels(),
            cfg,
            (batch, &s.alone[first.0..first.0 + n]),
            kv,
            l,
            &mut s.q[..n * d],
            &mut s.xb[..n * d],
            &mut s.scores,
            s.scores_len,
        );
        matmul(
            model.kernels(),
            &lw.wo,
            data(&lw.wo),
            &s.xb[..n * d],
            n,
            &mut s.xb2[..n * d],
            orders,
            &mut s.lin,
        );
        // The last layer's feed-forward runs on the rows that want logits only, moved to
        // the front (as llama.cpp does): nothing else reads the other rows, and a row's
        // result does not depend on the others.
        let compact = l + 1 == w.layers.len();
        let (nf, f_orders) = if compact {
            add_residual(&mut s.x[..n * d], &s.xb2[..n * d]);
            let m = compact_logit_rows(batch, &mut s.x, d);
            // No logits: one row nobody reads, in either order.
            (m.max(1), logit_orders)
        } else {
            (n, orders)
        };
        // Feed-forward block: SwiGLU.
        add_rmsnorm(
            &mut s.xb[..nf * d],
            &mut s.x[..nf * d],
            (!compact).then_some(&s.xb2[..nf * d]),
            &norms.ffn[l],
            cfg.rms_eps,
        );
        // gate and up (n, ff): one pass over both matrices.
        matmul_many(
            model.kernels(),
            [(&lw.w_gate, data(&lw.w_gate)), (&lw.w_up, data(&lw.w_up))],
            &s.xb[..nf * d],
            nf,
            &mut [&mut s.gate[..nf * ff], &mut s.up[..nf * ff]],
            f_orders,
            &mut s.lin,
        );
        swiglu(
            model.kernels(),
            &mut s.gate[..nf * ff],
            &s.up[..nf * ff],
            ff,
        );
        matmul(
            model.kernels(),
            &lw.w_down,
            data(&lw.w_down),
            &s.gate[..nf * ff],
            nf,
            &mut s.xb2[..nf * d],
            f_orders,
            &mut s.lin,
        );
        if compact {
            add_residual(&mut s.x[..nf * d], &s.xb2[..nf * d]);
        }
    }
    for t in batch {
        kv.set_len(t.seq, kv.len(t.seq).max(t.pos + 1));
    }

    // Logits, only for the tokens that asked: (m, n_vocab).
    let m = batch.iter().filter(|t| t.logits).count();
    s.hidden.resize(m * d, 0.0);
    if w.layers.is_empty() {
        compact_logit_rows(batch, &mut s.x, d);
    }
    // The rows that want logits are the first `m` of `x` (compacted in the last layer).
    rmsnorm(&mut s.hidden, &s.x[..m * d], &norms.output, cfg.rms_eps);
    let logits_at = first_row * cfg.n_vocab;
    s.logits.resize(logits_at + m * cfg.n_vocab, 0.0);
    if m > 0 {
        matmul(
            model.kernels(),
            &w.output,
            data(&w.output),
            &s.hidden,
            m,
            &mut s.logits[logits_at..],
            logit_orders,
            &mut s.lin,
        );
    }
    if let Some(row) = first_non_finite_row(&s.logits[logits_at..], cfg.n_vocab) {
        let index = batch
            .iter()
            .enumerate()
            .filter(|(_, t)| t.logits)
            .nth(row)
            .map_or(0, |(i, _)| i);
        return Err(ForwardError::NonFinite { index });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv_cache::KvType;
    use crate::paths::conformance_file;

    /// Every token's logits, `tokens` of sequence 0 evaluated in batches of `chunk`
    /// tokens, in a pool of `threads`; with `other`, each batch also holds that many
    /// tokens of sequence 1, interleaved with sequence 0's.
    fn logits(
        model: &Model,
        tokens: &[u32],
        threads: usize,
        chunk: usize,
        other: usize,
    ) -> Vec<f32> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let n = tokens.len();
            let n_ctx = n + other * n.div_ceil(chunk);
            let mut kv = model.new_cache(2, n_ctx, KvType::F16, u128::MAX).unwrap();
            let mut s = model.new_scratch(chunk + other, n_ctx);
            let (mut all, mut pos1) = (Vec::new(), 0);
            for (c, part) in tokens.chunks(chunk).enumerate() {
                let mut batch = Vec::new();
                for (i, &token) in part.iter().enumerate() {
                    let pos = c * chunk + i;
                    batch.push(BatchToken {
                        token,
                        pos,
                        seq: 0,
                        logits: true,
                    });
                    if i < other {
                        let token = tokens[(pos * 31) % n];
                        batch.push(BatchToken {
                            token,
                            pos: pos1,
                            seq: 1,
                            logits: i % 2 == 0,
                        });
                        pos1 += 1;
                    }
                }
                model.forward(&batch, &mut kv, &mut s).unwrap();
                // Sequence 0's rows of the logits, in batch order.
                let rows = batch.iter().filter(|t| t.logits).zip(0..);
                for (_, r) in rows.filter(|(t, _)| t.seq == 0) {
                    all.extend_from_slice(s.logits_row(r));
                }
            }
            all
        })
    }

    /// Logits that are not all finite are an error naming the token, counted from the
    /// start of the whole batch when it ran as sub-batches.
    #[test]
    fn non_finite_logits_name_their_token() {
        let path = conformance_file("models/tiny-q4km.gguf");
        let mut bytes = std::fs::read(&path).unwrap();
        let file = crate::gguf::GgufFile::from_bytes(bytes.clone()).unwrap();
        let norm = file.tensor("output_norm.weight").unwrap().clone();
        assert_eq!(norm.ty, woolly_kernels::quant::GgmlType::F32);
        // Finite weights (the loader refuses others) that overflow every logit.
        let start = (file.data_offset() + norm.offset) as usize;
        for w in bytes[start..start + norm.n_bytes as usize].chunks_exact_mut(4) {
            w.copy_from_slice(&f32::MAX.to_le_bytes());
        }
        let model = Model::from_gguf(std::sync::Arc::new(
            crate::gguf::GgufFile::from_bytes(bytes).unwrap(),
        ))
        .unwrap();
        let n = 3 * model.sub_batch() - 2;
        let want = n - 3;
        let mut kv = model.new_cache(1, n, KvType::F16, u128::MAX).unwrap();
        let mut s = model.new_scratch(n, n);
        let batch: Vec<BatchToken> = (0..n)
            .map(|pos| BatchToken {
                token: 1 + pos as u32,
                pos,
                seq: 0,
                logits: pos == want,
            })
            .collect();
        match model.forward(&batch, &mut kv, &mut s) {
            Err(ForwardError::NonFinite { index }) => assert_eq!(index, want),
            other => panic!("expected NonFinite at {want}, got {other:?}"),
        }
    }

    /// The first row with a NaN or an infinity anywhere in it, whatever the threads;
    /// none when every value is finite.
    #[test]
    fn the_first_non_finite_row_is_found_on_any_team() {
        let mut rng = woolly_kernels::testing::TestRng::new(5);
        let n_vocab = 97;
        for m in [1, 2, 3, 8, 13] {
            let clean = rng.f32s(m * n_vocab);
            let mut cases = vec![(clean.clone(), None)];
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let (r1, r2) = (rng.range(0, m), rng.range(0, m));
                let mut x = clean.clone();
                x[r1 * n_vocab + rng.range(0, n_vocab)] = bad;
                x[r2 * n_vocab + rng.range(0, n_vocab)] = bad;
                cases.push((x, Some(r1.min(r2))));
            }
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                for (x, want) in &cases {
                    let got = pool.install(|| first_non_finite_row(x, n_vocab));
                    assert_eq!(got, *want, "{m} rows, {threads} threads");
                }
            }
        }
    }

    /// A batch's rotations, shared out across threads, are each row's serial rotation.
    #[test]
    fn rope_batch_rotates_each_row_as_rope_does() {
        let mut rng = woolly_kernels::testing::TestRng::new(3);
        let (head_dim, half, d, kv_dim) = (64, 32, 512, 128);
        for n in [1, 2, 7, 40, 97] {
            let (q, k) = (rng.f32s(n * d), rng.f32s(n * kv_dim));
            let (cos, sin) = (rng.f32s(n * half), rng.f32s(n * half));
            let (mut want_q, mut want_k) = (q.clone(), k.clone());
            for i in 0..n {
                let (c, s) = (&cos[i * half..][..half], &sin[i * half..][..half]);
                rope(&mut want_q[i * d..][..d], head_dim, c, s);
                rope(&mut want_k[i * kv_dim..][..kv_dim], head_dim, c, s);
            }
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let (mut q, mut k) = (q.clone(), k.clone());
                pool.install(|| {
                    rope_batch((&mut q, d), (&mut k, kv_dim), head_dim, (&cos, &sin), half)
                });
                assert!(q == want_q && k == want_k, "{n} tokens, {threads} threads");
            }
        }
    }

    /// A token's logits are the same bits whatever the thread count and whatever else is
    /// in its batch: attention tasks are split over threads, never a task's arithmetic;
    /// a long batch runs as sub-batches whose logits rows follow one another; a prompt
    /// split into batches of whole groups of four computes as one batch; another
    /// sequence's tokens in the batch change nothing. One token at a time differs (Q4_K
    /// in ggml's gemv order, attention in its one-token order), slightly.
    #[test]
    fn logits_do_not_depend_on_threads_or_batch() {
        let model = Model::load(conformance_file("models/tiny-q4km.gguf")).unwrap();
        assert!(150 % model.sub_batch() != 0);
        // Long enough for the attention of the batch to be split over threads, and for
        // several sub-batches (the last one short).
        let tokens: Vec<u32> = (0..150).map(|i| 1 + (i * 7919) % 31_000).collect();
        let one = logits(&model, &tokens, 1, 150, 0);
        for threads in [2, 3, 5] {
            assert!(
                one == logits(&model, &tokens, threads, 150, 0),
                "{threads} threads"
            );
        }
        assert_eq!(one.len(), tokens.len() * model.config().n_vocab);
        assert!(one == logits(&model, &tokens, 2, 8, 0), "batches of 8");
        assert!(
            one == logits(&model, &tokens, 2, 150, 37),
            "with sequence 1"
        );
        assert!(
            one == logits(&model, &tokens, 2, 12, 5),
            "12 with 5 of sequence 1"
        );
        // Sequence 1 decoding beside the prompt: one token a batch, alone in its part.
        assert!(
            one == logits(&model, &tokens, 2, 8, 1),
            "8 with 1 of sequence 1"
        );
        let by_one = logits(&model, &tokens, 2, 1, 0);
        assert!(one != by_one, "one token at a time takes the gemv order");
        // Three and five threads split a token's attention into one task per query head
        // (`heads_per_task`) once it goes to the team (from position 119 on here), two
        // run a KV head's four query heads in one task.
        for threads in [3, 5] {
            assert!(
                by_one == logits(&model, &tokens, threads, 1, 0),
                "one at a time, {threads} threads"
            );
        }
        // Differences of f32 rounding, amplified by the 8-bit activations: RMS / std.
        let mean = one.iter().sum::<f32>() / one.len() as f32;
        let var = one.iter().map(|a| (a - mean).powi(2)).sum::<f32>();
        let err = one
            .iter()
            .zip(&by_one)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f32>();
        let nrmse = (err / var).sqrt();
        assert!(nrmse < 0.02, "one at a time: NRMSE {nrmse}");
    }

    /// A KV head's query heads are split into one task each only where that leaves
    /// the slowest thread less to do.
    #[test]
    fn attention_splits_query_heads_only_where_threads_would_idle() {
        // (tokens, KV heads, group, workers) -> query heads per task.
        for (case, want) in [
            ((1, 3, 3, 2), 1),  // SmolLM2, one token, 2 threads: 6 heads -> 5 (x 1.15)
            ((1, 4, 8, 2), 8),  // TinyLlama, 2 threads: balanced already
            ((1, 4, 8, 16), 1), // TinyLlama, 16 threads: 4 tasks -> 32
            ((8, 3, 3, 2), 3),  // SmolLM2, 8 tokens: balanced
            ((1, 3, 3, 1), 3),  // one thread: nothing to balance
            ((1, 2, 4, 3), 1),  // tiny-q4km, 3 threads
            ((1, 2, 4, 2), 4),  // tiny-q4km, 2 threads
            ((1, 32, 1, 2), 1), // no grouped heads: one head a task either way
        ] {
            let (n_tok, n_kv, group, workers) = case;
            assert_eq!(
                heads_per_task(n_tok, n_kv, group, workers),
                want,
                "{case:?}"
            );
        }
    }

    /// ggml's grouping, per sequence: whole groups of four of a sequence's rows are gemm,
    /// its remaining rows (a lone decoded token among them) gemv.
    #[test]
    fn q4k_orders_group_each_sequence_in_fours() {
        use Q4kOrder::{Gemm as M, Gemv as V};
        let (mut counts, mut orders) = (Vec::new(), Vec::new());
        for (seqs, want) in [
            (vec![0], vec![V]),
            (vec![0, 0, 0, 0], vec![M, M, M, M]),
            (vec![0, 0, 0, 0, 0, 0], vec![M, M, M, M, V, V]),
            (vec![3, 0, 0, 7, 0, 0, 0], vec![V, M, M, V, M, M, V]),
            (
                vec![1, 2, 1, 2, 1, 2, 1, 2, 1],
                vec![M, M, M, M, M, M, M, M, V],
            ),
            (vec![1, 2, 1, 2, 2, 1, 2], vec![V, M, V, M, M, V, M]),
        ] {
            q4k_orders(seqs.iter().copied(), &mut counts, &mut orders);
            assert_eq!(orders, want, "{seqs:?}");
        }
    }
}
