//! Resolve once, pass a value: [`Kernels`] holds a selected variant of every op, chosen
//! at load for one ISA and the model's dimensions, and handed to the forward pass. No
//! per-call lookup and no global state in the hot path; the free functions
//! ([`crate::ops::matvec::matvec`]) go through [`Kernels::detected`], resolved on first
//! use.

use std::sync::OnceLock;

use crate::GgmlType;
use crate::isa::Isa;
use crate::ops::{attention, dot, ffn, norm, qdot, qtile, quantize, rope};

/// The model dimensions kernels may be specialized for; 0 = unknown (generic variants).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dims {
    /// Hidden size (`embedding_length`).
    pub hidden: usize,
    /// Per-head size (`embedding_length / head_count`, or `key_length`).
    pub head_dim: usize,
    /// Feed-forward size (`feed_forward_length`).
    pub ffn: usize,
}

/// The tile kernels, one per packed weight type.
#[derive(Clone, Copy, Debug)]
pub struct Tiles {
    /// Q4_1 rows x Q8_1 activations.
    pub q4_1: qtile::tile_q4_1_q8_1::Selected,
    /// Q8_0 rows x Q8_0 activations.
    pub q8_0: qtile::tile_q8_0_q8_0::Selected,
    /// Q4_K rows x Q8_K activations.
    pub q4k: qtile::tile_q4k_q8k::Selected,
    /// Q4_K rows x Q8_K activations in ggml's gemv order, for the tokens the caller
    /// marks [`crate::Q4kOrder::Gemv`].
    pub q4k_gemv: qtile::tile_q4k_q8k_gemv::Selected,
    /// Q6_K rows x Q8_K activations.
    pub q6k: qtile::tile_q6k_q8k::Selected,
    /// One token against a run of Q4_1 row groups.
    pub q4_1_rows: qtile::rows_q4_1_q8_1::Selected,
    /// One token against a run of Q8_0 row groups.
    pub q8_0_rows: qtile::rows_q8_0_q8_0::Selected,
    /// One token against a run of Q4_K row groups, in ggml's gemv order.
    pub q4k_gemv_rows: qtile::rows_q4k_q8k_gemv::Selected,
    /// One token against a run of Q6_K row groups.
    pub q6k_rows: qtile::rows_q6k_q8k::Selected,
    /// Two Q4_K row groups at once, where that beats two [`Tiles::q4k`] calls (AVX-512:
    /// sixteen rows per 512-bit vector); `None` elsewhere.
    pub q4k_pair: Option<qtile::tile2_q4k_q8k::Selected>,
    /// Two Q6_K row groups at once, as [`Tiles::q4k_pair`].
    pub q6k_pair: Option<qtile::tile2_q6k_q8k::Selected>,
    /// Two Q4_1 row groups at once, as [`Tiles::q4k_pair`].
    pub q4_1_pair: Option<qtile::tile2_q4_1_q8_1::Selected>,
    /// Two Q8_0 row groups at once, as [`Tiles::q4k_pair`].
    pub q8_0_pair: Option<qtile::tile2_q8_0_q8_0::Selected>,
}

impl Tiles {
    /// The generic (`dyn_`) variants: they take any token count and run it through the
    /// same 4-token and 1-token inner loops as the specialized ones (measured within
    /// 0.98-1.04x of them, `benches/benches/qtile.rs`).
    fn select(isa: Isa) -> Tiles {
        Tiles {
            q4_1: qtile::tile_q4_1_q8_1::select(isa, &[]),
            q8_0: qtile::tile_q8_0_q8_0::select(isa, &[]),
            q4k: qtile::tile_q4k_q8k::select(isa, &[]),
            q4k_gemv: qtile::tile_q4k_q8k_gemv::select(isa, &[]),
            q6k: qtile::tile_q6k_q8k::select(isa, &[]),
            q4_1_rows: qtile::rows_q4_1_q8_1::select(isa, &[]),
            q8_0_rows: qtile::rows_q8_0_q8_0::select(isa, &[]),
            q4k_gemv_rows: qtile::rows_q4k_q8k_gemv::select(isa, &[]),
            q6k_rows: qtile::rows_q6k_q8k::select(isa, &[]),
            q4k_pair: (isa == Isa::Avx512).then(|| qtile::tile2_q4k_q8k::select(isa, &[])),
            q6k_pair: (isa == Isa::Avx512).then(|| qtile::tile2_q6k_q8k::select(isa, &[])),
            // Not taken: in ggml's order (one accumulator per row and lane of four
            // products) these pair tiles run the eight-row tile on each group, and the
            // pair path would only add a pass preparing activations they do not read.
            q4_1_pair: None,
            q8_0_pair: None,
        }
    }
}

/// A selected variant of every op for one ISA.
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    /// The ISA the variants were selected for (each op may fall back to a narrower one).
    pub isa: Isa,
    /// The dimensions the variants were selected for.
    pub dims: Dims,
    /// RMSNorm over the hidden size.
    pub rmsnorm: norm::rmsnorm::Selected,
    /// Softmax (any length).
    pub softmax: norm::softmax::Selected,
    /// SwiGLU over the FFN size.
    pub swiglu: ffn::swiglu::Selected,
    /// RoPE over the head size.
    pub rope: rope::rope::Selected,
    /// f32 dot product over the head size.
    pub dot_f32: dot::dot_f32::Selected,
    /// f16 . f32 dot product (f16 weights).
    pub dot_f16_f32: dot::dot_f16_f32::Selected,
    /// Attention against an f32 KV cache.
    pub attention_f32: attention::attention_f32::Selected,
    /// Attention against an f16 KV cache.
    pub attention_f16: attention::attention_f16::Selected,
    /// Attention against an f16 KV cache in ggml's one-token order, for a token alone in
    /// its sequence's part of a batch.
    pub attention_f16_single: attention::attention_f16_single::Selected,
    /// RMSNorm fused with Q8_K quantization, over the hidden size.
    pub rmsnorm_q8k: quantize::rmsnorm_q8k::Selected,
    /// f32 -> Q8_K activations.
    pub quantize_q8k: quantize::quantize_q8k::Selected,
    /// f32 -> Q8_0 activations.
    pub quantize_q8_0: quantize::quantize_q8_0::Selected,
    /// f32 -> Q8_1 activations.
    pub quantize_q8_1: quantize::quantize_q8_1::Selected,
    /// Q4_K . Q8_K.
    pub vec_dot_q4k_q8k: qdot::vec_dot_q4k_q8k::Selected,
    /// Q4_K . Q8_K in ggml's gemv order ([`crate::Q4kOrder::Gemv`]).
    pub vec_dot_q4k_q8k_gemv: qdot::vec_dot_q4k_q8k_gemv::Selected,
    /// Q6_K . Q8_K.
    pub vec_dot_q6k_q8k: qdot::vec_dot_q6k_q8k::Selected,
    /// Q8_0 . Q8_0.
    pub vec_dot_q8_0_q8_0: qdot::vec_dot_q8_0_q8_0::Selected,
    /// Q4_0 . Q8_0.
    pub vec_dot_q4_0_q8_0: qdot::vec_dot_q4_0_q8_0::Selected,
    /// Q5_0 . Q8_0.
    pub vec_dot_q5_0_q8_0: qdot::vec_dot_q5_0_q8_0::Selected,
    /// Q4_1 . Q8_1.
    pub vec_dot_q4_1_q8_1: qdot::vec_dot_q4_1_q8_1::Selected,
    /// Q5_1 . Q8_1.
    pub vec_dot_q5_1_q8_1: qdot::vec_dot_q5_1_q8_1::Selected,
    /// Tile kernels over packed weights.
    pub tiles: Tiles,
}

impl Kernels {
    /// Generic variants for `isa`.
    ///
    /// # Panics
    /// When the CPU lacks `isa` (get one from [`Isa::from_env`] or [`Isa::checked`]).
    pub fn select(isa: Isa) -> Kernels {
        Kernels::select_for(isa, Dims::default())
    }

    /// Variants for `isa`, specialized for `dims` where the build has them.
    ///
    /// # Panics
    /// When the CPU lacks `isa`.
    pub fn select_for(isa: Isa, dims: Dims) -> Kernels {
        Kernels {
            isa,
            dims,
            rmsnorm: norm::rmsnorm::select(isa, &[dims.hidden]),
            softmax: norm::softmax::select(isa, &[]),
            swiglu: ffn::swiglu::select(isa, &[dims.ffn]),
            rope: rope::rope::select(isa, &[dims.head_dim]),
            dot_f32: dot::dot_f32::select(isa, &[dims.head_dim]),
            dot_f16_f32: dot::dot_f16_f32::select(isa, &[]),
            attention_f32: attention::attention_f32::select(isa, &[dims.head_dim]),
            attention_f16: attention::attention_f16::select(isa, &[dims.head_dim]),
            attention_f16_single: attention::attention_f16_single::select(isa, &[dims.head_dim]),
            rmsnorm_q8k: quantize::rmsnorm_q8k::select(isa, &[dims.hidden]),
            quantize_q8k: quantize::quantize_q8k::select(isa, &[]),
            quantize_q8_0: quantize::quantize_q8_0::select(isa, &[]),
            quantize_q8_1: quantize::quantize_q8_1::select(isa, &[]),
            vec_dot_q4k_q8k: qdot::vec_dot_q4k_q8k::select(isa, &[]),
            vec_dot_q4k_q8k_gemv: qdot::vec_dot_q4k_q8k_gemv::select(isa, &[]),
            vec_dot_q6k_q8k: qdot::vec_dot_q6k_q8k::select(isa, &[]),
            vec_dot_q8_0_q8_0: qdot::vec_dot_q8_0_q8_0::select(isa, &[]),
            vec_dot_q4_0_q8_0: qdot::vec_dot_q4_0_q8_0::select(isa, &[]),
            vec_dot_q5_0_q8_0: qdot::vec_dot_q5_0_q8_0::select(isa, &[]),
            vec_dot_q4_1_q8_1: qdot::vec_dot_q4_1_q8_1::select(isa, &[]),
            vec_dot_q5_1_q8_1: qdot::vec_dot_q5_1_q8_1::select(isa, &[]),
            tiles: Tiles::select(isa),
        }
    }

    /// Generic variants for `WOOLLY_ISA` or the best ISA here, selected once per
    /// process.
    ///
    /// # Panics
    /// When `WOOLLY_ISA` names an unknown ISA or one this CPU lacks.
    pub fn detected() -> &'static Kernels {
        static KERNELS: OnceLock<Kernels> = OnceLock::new();
        KERNELS.get_or_init(|| {
            let isa = Isa::from_env().unwrap_or_else(|e| panic!("{e}"));
            Kernels::select(isa)
        })
    }

    /// Whether [`Kernels::matvec`] handles weights of type `ty`.
    pub fn supports(ty: GgmlType) -> bool {
        matches!(
            ty,
            GgmlType::F32
                | GgmlType::F16
                | GgmlType::Q4_0
                | GgmlType::Q4_1
                | GgmlType::Q5_0
                | GgmlType::Q5_1
                | GgmlType::Q8_0
                | GgmlType::Q4K
                | GgmlType::Q6K
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::for_each_isa;

    /// Tidy: every op has a scalar generic variant, and every ISA an op lists covers
    /// every dimension it lists.
    #[test]
    fn registry_is_complete() {
        for op in crate::registry::all_ops() {
            assert!(
                op.variants
                    .iter()
                    .any(|(isa, dims, _)| *isa == Isa::Scalar && dims.is_none()),
                "{} has no scalar dyn_ variant",
                op.name
            );
            let dims: Vec<_> = op.variants.iter().filter_map(|v| v.1).collect();
            for (isa, _, _) in op.variants {
                for d in &dims {
                    assert!(
                        op.variants.iter().any(|v| v.0 == *isa && v.1 == Some(*d)),
                        "{} on {isa} lacks dims {d:?}",
                        op.name
                    );
                }
            }
        }
    }

    #[test]
    fn select_prefers_exact_dims_then_dyn_then_fallbacks() {
        for_each_isa("dispatch::select", |isa| {
            let k = Kernels::select_for(
                isa,
                Dims {
                    hidden: 2048,
                    head_dim: 64,
                    ffn: 1000,
                },
            );
            assert_eq!(k.rmsnorm.entry().dims, Some(&[2048usize][..]));
            assert_eq!(k.rmsnorm.entry().isa, isa);
            assert_eq!(k.swiglu.entry().dims, None);
            assert_eq!(k.rope.entry().name, format!("{isa}::d64"));
        });
    }
}
