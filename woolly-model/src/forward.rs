//! The Llama forward pass over a batch of tokens, read top to bottom like the paper.
//!
//! A batch is a list of [`BatchToken`]s: each names its sequence slot and position, so
//! one call serves prompt processing (many positions of one sequence), generation (one
//! token) and continuous batching (one token of each of many sequences) alike.

use half::f16;
use woolly_kernels::quant::dequantize_row;

use crate::config::{LlamaConfig, RopeScaling};
use crate::kv_cache::{KvCache, KvView};
use crate::linear::{LinearScratch, dot, matmul, matmul_many};
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
    /// (n_ctx,) attention scores of one head.
    scores: Vec<f32>,
    /// (head_dim,) one head's query, rounded like the cache.
    qbuf: Vec<f32>,
    /// (rope_dim / 2,) cos and sin of one position.
    rope_cos: Vec<f32>,
    rope_sin: Vec<f32>,
    /// (sequence, next position) per sequence of the batch being validated.
    seq_next: Vec<(usize, usize)>,
    /// Buffers of the projections.
    lin: LinearScratch,
    /// (n_logits, n_embd) final hidden states of the tokens that want logits.
    hidden: Vec<f32>,
    /// (n_logits, n_vocab) logits of the tokens that asked for them, in batch order.
    logits: Vec<f32>,
    n_vocab: usize,
}

impl Scratch {
    /// Buffers for batches of up to `max_batch` tokens and contexts of `n_ctx`.
    pub fn new(cfg: &LlamaConfig, max_batch: usize, n_ctx: usize) -> Scratch {
        let n = max_batch.max(1);
        Scratch {
            max_batch: n,
            x: vec![0.0; n * cfg.n_embd],
            xb: vec![0.0; n * cfg.n_embd],
            xb2: vec![0.0; n * cfg.n_embd],
            q: vec![0.0; n * cfg.n_embd],
            k: vec![0.0; n * cfg.kv_dim()],
            v: vec![0.0; n * cfg.kv_dim()],
            gate: vec![0.0; n * cfg.n_ff],
            up: vec![0.0; n * cfg.n_ff],
            scores: vec![0.0; n_ctx],
            qbuf: vec![0.0; cfg.head_dim],
            rope_cos: vec![0.0; cfg.rope_dim / 2],
            rope_sin: vec![0.0; cfg.rope_dim / 2],
            seq_next: Vec::with_capacity(n),
            lin: LinearScratch::default(),
            hidden: Vec::new(),
            logits: Vec::new(),
            n_vocab: cfg.n_vocab,
        }
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

/// `out = x / rms(x) * w`, row by row.
fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let d = w.len();
    for (o, xr) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
        let ss: f32 = xr.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let scale = 1.0 / (ss + eps).sqrt();
        for ((o, &xv), &wv) in o.iter_mut().zip(xr).zip(w) {
            *o = xv * scale * wv;
        }
    }
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
    for head in x.chunks_exact_mut(head_dim) {
        for (i, (&c, &s)) in cos.iter().zip(sin).enumerate() {
            let (a, b) = (head[2 * i], head[2 * i + 1]);
            head[2 * i] = a * c - b * s;
            head[2 * i + 1] = a * s + b * c;
        }
    }
}

/// Attention of one token's queries `q (n_head, head_dim)` over `n_pos` cached positions,
/// written to `out (n_head, head_dim)`.
///
/// With an f16 cache, the query and the softmax weights are rounded to f16 before they
/// meet the f16 keys and values, as ggml's f16 matrix products round their f32 operand.
fn attention(
    cfg: &LlamaConfig,
    q: &[f32],
    kv: &KvView<'_>,
    n_pos: usize,
    scores: &mut [f32],
    qbuf: &mut [f32],
    out: &mut [f32],
) {
    let (hd, kv_dim) = (cfg.head_dim, cfg.kv_dim());
    let group = cfg.n_head / cfg.n_head_kv;
    let scale = 1.0 / (hd as f32).sqrt();
    for h in 0..cfg.n_head {
        let kvh = h / group;
        let qh = &mut qbuf[..hd];
        qh.copy_from_slice(&q[h * hd..(h + 1) * hd]);
        if let KvView::F16 { .. } = kv {
            qh.iter_mut().for_each(|v| *v = f16::from_f32(*v).to_f32());
        }
        let scores = &mut scores[..n_pos];
        for (p, s) in scores.iter_mut().enumerate() {
            let at = p * kv_dim + kvh * hd;
            let dot = match kv {
                KvView::F32 { k, .. } => dot(qh, &k[at..at + hd]),
                KvView::F16 { k, .. } => qh
                    .iter()
                    .zip(&k[at..at + hd])
                    .map(|(&a, &b)| a * b.to_f32())
                    .sum(),
            };
            *s = dot * scale;
        }
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f64;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += f64::from(*s);
        }
        let inv = (1.0 / sum) as f32;
        let oh = &mut out[h * hd..(h + 1) * hd];
        oh.fill(0.0);
        for (p, &s) in scores.iter().enumerate() {
            let at = p * kv_dim + kvh * hd;
            match kv {
                KvView::F32 { v, .. } => {
                    let w = s * inv;
                    for (o, &vv) in oh.iter_mut().zip(&v[at..at + hd]) {
                        *o += w * vv;
                    }
                }
                KvView::F16 { v, .. } => {
                    let w = f16::from_f32(s * inv).to_f32();
                    for (o, &vv) in oh.iter_mut().zip(&v[at..at + hd]) {
                        *o += w * vv.to_f32();
                    }
                }
            }
        }
    }
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// Checks the batch against the cache before anything changes.
/// `next` is scratch space: (sequence, next position) of each sequence seen so far.
fn validate(
    model: &Model,
    batch: &[BatchToken],
    kv: &KvCache,
    max: usize,
    next: &mut Vec<(usize, usize)>,
) -> Result<(), ForwardError> {
    if batch.is_empty() || batch.len() > max {
        return Err(ForwardError::BatchSize {
            n: batch.len(),
            max,
        });
    }
    let n_vocab = model.config().n_vocab;
    next.clear();
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
        *expected = t.pos + 1;
    }
    Ok(())
}

/// Evaluates `batch`, writing its keys and values into `kv` and the requested logits
/// into `scratch`.
pub fn forward(
    model: &Model,
    batch: &[BatchToken],
    kv: &mut KvCache,
    s: &mut Scratch,
) -> Result<(), ForwardError> {
    validate(model, batch, kv, s.max_batch, &mut s.seq_next)?;
    let cfg = model.config();
    let w = model.weights();
    let n = batch.len();
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
        let row = &data(emb)[t.token as usize * emb.row_bytes()..][..emb.row_bytes()];
        dequantize_row(emb.ty, row, xr).expect("embedding rows were checked at load");
    }

    for (l, lw) in w.layers.iter().enumerate() {
        // Attention block.
        rmsnorm(
            &mut s.xb[..n * d],
            &s.x[..n * d],
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
            &mut s.lin,
        );
        for (i, t) in batch.iter().enumerate() {
            rope_table(
                cfg,
                t.pos,
                norms.rope_freqs.as_deref(),
                &mut s.rope_cos,
                &mut s.rope_sin,
            );
            rope(
                &mut s.q[i * d..(i + 1) * d],
                cfg.head_dim,
                &s.rope_cos,
                &s.rope_sin,
            );
            rope(
                &mut s.k[i * kv_dim..(i + 1) * kv_dim],
                cfg.head_dim,
                &s.rope_cos,
                &s.rope_sin,
            );
            let (k, v) = (
                &s.k[i * kv_dim..(i + 1) * kv_dim],
                &s.v[i * kv_dim..(i + 1) * kv_dim],
            );
            kv.write(l, t.seq, t.pos, k, v);
        }
        for (i, t) in batch.iter().enumerate() {
            let view = kv.view(l, t.seq, t.pos + 1);
            attention(
                cfg,
                &s.q[i * d..(i + 1) * d],
                &view,
                t.pos + 1,
                &mut s.scores,
                &mut s.qbuf,
                &mut s.xb[i * d..(i + 1) * d],
            );
        }
        matmul(
            model.kernels(),
            &lw.wo,
            data(&lw.wo),
            &s.xb[..n * d],
            n,
            &mut s.xb2[..n * d],
            &mut s.lin,
        );
        for (x, o) in s.x[..n * d].iter_mut().zip(&s.xb2[..n * d]) {
            *x += o;
        }

        // Feed-forward block: SwiGLU.
        rmsnorm(
            &mut s.xb[..n * d],
            &s.x[..n * d],
            &norms.ffn[l],
            cfg.rms_eps,
        );
        // gate and up (n, ff): one pass over both matrices.
        matmul_many(
            model.kernels(),
            [(&lw.w_gate, data(&lw.w_gate)), (&lw.w_up, data(&lw.w_up))],
            &s.xb[..n * d],
            n,
            &mut [&mut s.gate[..n * ff], &mut s.up[..n * ff]],
            &mut s.lin,
        );
        for (g, u) in s.gate[..n * ff].iter_mut().zip(&s.up[..n * ff]) {
            *g = silu(*g) * u;
        }
        matmul(
            model.kernels(),
            &lw.w_down,
            data(&lw.w_down),
            &s.gate[..n * ff],
            n,
            &mut s.xb2[..n * d],
            &mut s.lin,
        );
        for (x, o) in s.x[..n * d].iter_mut().zip(&s.xb2[..n * d]) {
            *x += o;
        }
    }
    for t in batch {
        kv.set_len(t.seq, kv.len(t.seq).max(t.pos + 1));
    }

    // Logits, only for the tokens that asked: (m, n_vocab).
    let m = batch.iter().filter(|t| t.logits).count();
    s.hidden.resize(m * d, 0.0);
    let wanted = batch
        .iter()
        .enumerate()
        .filter(|(_, t)| t.logits)
        .map(|(i, _)| i);
    for (h, i) in s.hidden.chunks_exact_mut(d).zip(wanted) {
        rmsnorm(h, &s.x[i * d..(i + 1) * d], &norms.output, cfg.rms_eps);
    }
    s.logits.resize(m * cfg.n_vocab, 0.0);
    if m > 0 {
        matmul(
            model.kernels(),
            &w.output,
            data(&w.output),
            &s.hidden,
            m,
            &mut s.logits,
            &mut s.lin,
        );
    }
    if let Some(row) = s
        .logits
        .chunks_exact(cfg.n_vocab)
        .position(|r| r.iter().any(|v| !v.is_finite()))
    {
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
