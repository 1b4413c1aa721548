//! The ggml-exact mode (`WOOLLY_GGML_EXACT=1`): ggml's x86 arithmetic (the AVX-512
//! VNNI build of llama.cpp 0.3.36 / ggml 0.25.3, GCC contracting to FMA, flash attention
//! off) reproduced in scalar Rust for every op of a Llama forward pass, **including the
//! choices ggml makes by batch shape**, so that Woolly's logits equal llama.cpp's bit for
//! bit on the conformance pack (tested in `tests/conformance.rs`, run so by `cargo
//! xtask ci`). Each function was checked against llama.cpp's own intermediate tensors,
//! dumped through its eval callback.
//!
//! Woolly's default arithmetic is ggml's too, in its fast kernels: activations quantized
//! with `127 / amax` and ties to even; the legacy dots' 8-lane FMA order; Q4_K in the
//! repacked kernels' gemm order for whole groups of four of a sequence's tokens and
//! their gemv order for the rest, a decoded token among them
//! ([`woolly_kernels::Q4kOrder`], chosen in `forward.rs` as ggml chooses); Q6_K in its
//! tiled order; RMSNorm's sum in f64; RoPE with FMAs; `exp` as ggml's `ggml_v_expf` in
//! softmax and SiLU; attention in tinyBLAS's 16-lane order with Q and the softmax weights
//! rounded to f16, and in `ggml_vec_dot_f16`'s order for a token alone in its sequence's
//! part of a batch. Where ggml's choice depends on the whole batch (attention for a
//! batch of one token, Q6_K in its per-lane order below [`TILED_MIN`] tokens), the
//! default chooses per sequence or takes one order, so that a token's result does not
//! depend on the other sequences in its batch. This mode reproduces the whole-batch
//! choices: a diagnostic, not a fast path (scalar, slow: `attend_f16`,
//! `vec_dot_q6k_q8k`).

use half::f16;
use woolly_kernels::reference::quant_dot::hsum8;

/// Whether the ggml-exact mode is on (`WOOLLY_GGML_EXACT` set, and not `0`).
pub fn on() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("WOOLLY_GGML_EXACT").is_some_and(|v| v != "0"))
}

/// Weight types whose matmul this module reproduces.
pub fn covers(ty: woolly_kernels::GgmlType) -> bool {
    use woolly_kernels::GgmlType as T;
    matches!(ty, T::Q4_1 | T::Q8_0 | T::Q4K | T::Q6K)
}

/// Non-flash attention of the query heads `q (n_q, hd)` sharing KV head `kv_head`, as
/// ggml computes it for the whole batch's size: llamafile_sgemm (tinyBLAS) takes products
/// of two tokens or more, a batch of one token runs `ggml_vec_dot_f16`. The kernels'
/// references compute both orders ([`woolly_kernels::reference::attention_f16`] and
/// [`woolly_kernels::reference::attention_f16_single`]; their exp, the kernels'
/// `exp_ggml`, clamps below -87.3 where `ggml_v_expf` goes on to zero, which changes no
/// weight: such a weight rounds to an f16 zero, and the softmax's sum is at least 1).
/// Keys are Woolly's transposed blocks; `q` is rounded to f16 in place.
#[expect(clippy::too_many_arguments)]
pub fn attend_f16(
    q: &mut [f32],
    k: &[f16],
    vals: &[f16],
    n_kv_head: usize,
    kv_head: usize,
    hd: usize,
    scores: &mut [f32],
    out: &mut [f32],
    single: bool,
) {
    use woolly_kernels::reference::{attention_f16, attention_f16_single};
    let attend = if single {
        attention_f16_single
    } else {
        attention_f16
    };
    attend(q, k, vals, n_kv_head, kv_head, hd, scores, out);
}

/// x86 `ggml_vec_dot_q6_K_q8_K` (AVX2): lane k of 8 sums the scaled products of elements
/// with `i % 32 / 4 == k`; lanes FMA'd by `d_x * d_w` per super-block; `hsum_float_8`.
pub fn vec_dot_q6k_q8k(
    w: &[woolly_kernels::quant::BlockQ6K],
    x: &[woolly_kernels::quant::BlockQ8K],
) -> f32 {
    use woolly_kernels::reference::quant_dot::q6k_quant;
    let mut acc = [0f32; 8];
    for (w, x) in w.iter().zip(x) {
        let d = x.d * w.d.to_f32();
        // ggml 0.25.3: unsigned codes in the lanes, the -32 offset taken out per lane
        // afterwards from the bsums (lane k: sub-blocks 2k and 2k+1).
        let mut lanes = [0i32; 8];
        for i in 0..256 {
            let p = i32::from(q6k_quant(w, i)) * i32::from(x.qs[i]);
            lanes[i % 32 / 4] += i32::from(w.scales[i / 16]) * p;
        }
        for (k, l) in lanes.iter_mut().enumerate() {
            let sub = i32::from(x.bsums[2 * k]) * i32::from(w.scales[2 * k])
                + i32::from(x.bsums[2 * k + 1]) * i32::from(w.scales[2 * k + 1]);
            *l -= sub << 5;
        }
        for k in 0..8 {
            acc[k] = d.mul_add(lanes[k] as f32, acc[k]);
        }
    }
    hsum8(acc)
}

/// Batches from which ggml's mul_mat takes the tiled path for Q6_K (Woolly's default
/// order, [`woolly_kernels::reference::quant_dot::vec_dot_q6k_q8k`]; types it supports,
/// not repacked): measured 6 tokens -> vec_dot, 14 and 37 -> tiled; 8 per the source.
pub const TILED_MIN: usize = 8;
