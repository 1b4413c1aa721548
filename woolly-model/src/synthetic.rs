//! Llama-architecture GGUF files with seeded random weights at real model shapes, for
//! benchmarks (speed does not depend on weight values) and tests, with a real vocabulary
//! taken from another GGUF.
//!
//! Weights are quantized by Woolly's reference quantizers following llama.cpp's Q4_K_M
//! recipe (`src/llama-quant.cpp`, `llama_tensor_get_type`): Q6_K for `output.weight` and
//! for the `attn_v` / `ffn_down` layers that `use_more_bits` picks, Q4_K elsewhere.

use std::path::Path;

use rayon::prelude::*;
use woolly_kernels::GgmlType;
use woolly_kernels::quant::quantize_row;

use crate::gguf::writer::GgufWriter;
use crate::gguf::{GgufError, GgufFile, Value};

/// The hyper-parameters of a model shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Name used on the command line.
    pub name: &'static str,
    /// Width of the residual stream.
    pub n_embd: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// Feed-forward width.
    pub n_ff: usize,
}

/// The shapes `cargo xtask make-model --shape` knows.
pub const SHAPES: &[Shape] = &[
    Shape {
        name: "tiny",
        n_embd: 512,
        n_layer: 4,
        n_head: 8,
        n_head_kv: 2,
        n_ff: 1536,
    },
    Shape {
        name: "tinyllama",
        n_embd: 2048,
        n_layer: 22,
        n_head: 32,
        n_head_kv: 4,
        n_ff: 5632,
    },
    Shape {
        name: "llama7b",
        n_embd: 4096,
        n_layer: 32,
        n_head: 32,
        n_head_kv: 32,
        n_ff: 11008,
    },
    Shape {
        name: "llama8b",
        n_embd: 4096,
        n_layer: 32,
        n_head: 32,
        n_head_kv: 8,
        n_ff: 14336,
    },
];

/// How the weights are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recipe {
    /// llama.cpp's Q4_K_M mix.
    Q4KM,
    /// Every matrix Q8_0.
    Q8_0,
    /// Every matrix F16.
    F16,
}

impl Recipe {
    /// Parses `q4_k_m`, `q8_0` or `f16`.
    pub fn parse(s: &str) -> Option<Recipe> {
        match s {
            "q4_k_m" => Some(Recipe::Q4KM),
            "q8_0" => Some(Recipe::Q8_0),
            "f16" => Some(Recipe::F16),
            _ => None,
        }
    }

    /// `general.file_type` as llama.cpp numbers it.
    fn file_type(self) -> u32 {
        match self {
            Recipe::Q4KM => 15,
            Recipe::Q8_0 => 7,
            Recipe::F16 => 1,
        }
    }
}

/// llama.cpp's `use_more_bits`: the layers the K_M mixes give more bits.
fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The storage type of a matrix under `recipe`.
fn matrix_type(recipe: Recipe, name: &str, layer: Option<(usize, usize)>) -> GgmlType {
    match recipe {
        Recipe::Q8_0 => GgmlType::Q8_0,
        Recipe::F16 => GgmlType::F16,
        Recipe::Q4KM => {
            let more_bits = layer.is_some_and(|(i, n)| use_more_bits(i, n));
            if name == "output.weight"
                || ((name.ends_with("attn_v.weight") || name.ends_with("ffn_down.weight"))
                    && more_bits)
            {
                GgmlType::Q6K
            } else {
                GgmlType::Q4K
            }
        }
    }
}

/// A seeded stream of approximately normal numbers (SplitMix64, sum of four uniforms).
struct Noise(u64);

impl Noise {
    fn new(seed: u64, stream: u64) -> Noise {
        Noise(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Mean 0, standard deviation `std`.
    fn normal(&mut self, std: f32) -> f32 {
        let mut sum = 0.0f32;
        for _ in 0..4 {
            sum += (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        }
        // Four uniforms on [0, 1): mean 2, variance 4/12.
        (sum - 2.0) * std * 3f32.sqrt()
    }
}

/// A `(rows, cols)` matrix of seeded random weights in `ty`, rows quantized in parallel.
fn random_matrix(ty: GgmlType, rows: usize, cols: usize, seed: u64, stream: u64) -> Vec<u8> {
    let row_bytes = ty.row_bytes(cols as u64).expect("shapes are whole blocks") as usize;
    let mut out = vec![0u8; rows * row_bytes];
    let std = 1.0 / (cols as f32).sqrt();
    out.par_chunks_mut(row_bytes).enumerate().for_each_init(
        || vec![0f32; cols],
        |row, (r, dst)| {
            let mut noise = Noise::new(seed, stream.wrapping_mul(1 << 32) ^ r as u64);
            row.iter_mut().for_each(|v| *v = noise.normal(std));
            quantize_row(ty, row, dst).expect("sizes match");
        },
    );
    out
}

fn ones(n: usize) -> Vec<u8> {
    (0..n).flat_map(|_| 1.0f32.to_le_bytes()).collect()
}

/// Writes a model of `shape` stored as `recipe`, with the vocabulary and tokenizer of
/// `vocab`, to `out`.
pub fn write_model(
    shape: &Shape,
    recipe: Recipe,
    vocab: &GgufFile,
    seed: u64,
    out: &Path,
) -> Result<(), GgufError> {
    let md = vocab.metadata();
    let n_vocab = md
        .get_str_array("tokenizer.ggml.tokens")?
        .ok_or_else(|| {
            GgufError::malformed("tokenizer.ggml.tokens", "missing from the vocabulary file")
        })?
        .len();
    let (d, ff, kv) = (
        shape.n_embd,
        shape.n_ff,
        shape.n_embd / shape.n_head * shape.n_head_kv,
    );
    let mut w = GgufWriter::new();
    w.kv("general.architecture", Value::String("llama".into()))
        .kv(
            "general.name",
            Value::String(format!("woolly-random-{}", shape.name)),
        )
        .kv("general.file_type", Value::U32(recipe.file_type()))
        .kv("general.quantization_version", Value::U32(2))
        .kv("llama.context_length", Value::U32(4096))
        .kv("llama.embedding_length", Value::U32(d as u32))
        .kv("llama.block_count", Value::U32(shape.n_layer as u32))
        .kv("llama.feed_forward_length", Value::U32(ff as u32))
        .kv(
            "llama.attention.head_count",
            Value::U32(shape.n_head as u32),
        )
        .kv(
            "llama.attention.head_count_kv",
            Value::U32(shape.n_head_kv as u32),
        )
        .kv("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5))
        .kv(
            "llama.rope.dimension_count",
            Value::U32((d / shape.n_head) as u32),
        )
        .kv("llama.rope.freq_base", Value::F32(10_000.0))
        .kv("llama.vocab_size", Value::U32(n_vocab as u32));
    for (key, value) in md.iter().filter(|(k, _)| k.starts_with("tokenizer.")) {
        w.kv(key, value.clone());
    }

    let mut stream = 0u64;
    let mut matrix = |w: &mut GgufWriter,
                      name: &str,
                      rows: usize,
                      cols: usize,
                      layer: Option<(usize, usize)>| {
        let ty = matrix_type(recipe, name, layer);
        stream += 1;
        w.tensor(
            name,
            &[cols as u64, rows as u64],
            ty,
            random_matrix(ty, rows, cols, seed, stream),
        );
    };
    // The embeddings use the recipe's base type (Q4_K for Q4_K_M), as llama.cpp does.
    matrix(&mut w, "token_embd.weight", n_vocab, d, None);
    for i in 0..shape.n_layer {
        let l = Some((i, shape.n_layer));
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        w.tensor(&n("attn_norm"), &[d as u64], GgmlType::F32, ones(d));
        matrix(&mut w, &n("attn_q"), d, d, l);
        matrix(&mut w, &n("attn_k"), kv, d, l);
        matrix(&mut w, &n("attn_v"), kv, d, l);
        matrix(&mut w, &n("attn_output"), d, d, l);
        w.tensor(&n("ffn_norm"), &[d as u64], GgmlType::F32, ones(d));
        matrix(&mut w, &n("ffn_gate"), ff, d, l);
        matrix(&mut w, &n("ffn_up"), ff, d, l);
        matrix(&mut w, &n("ffn_down"), d, ff, l);
    }
    w.tensor("output_norm.weight", &[d as u64], GgmlType::F32, ones(d));
    matrix(&mut w, "output.weight", n_vocab, d, None);
    w.write(out).map_err(|source| GgufError::Io {
        path: out.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_k_m_gives_more_bits_where_llama_cpp_does() {
        // llama.cpp's tiny-q4km (4 layers): attn_v and ffn_down of layers 2 and 3 are Q6_K.
        let picked: Vec<usize> = (0..4).filter(|&i| use_more_bits(i, 4)).collect();
        assert_eq!(picked, vec![2, 3]);
        // 22 layers (TinyLlama): i < 2, i >= 19, and every third from 2 + 2.
        let picked: Vec<usize> = (0..22).filter(|&i| use_more_bits(i, 22)).collect();
        assert_eq!(picked, vec![0, 1, 4, 7, 10, 13, 16, 19, 20, 21]);
    }

    #[test]
    fn q4_k_m_types_match_llama_cpp_quantize_on_the_tiny_model() {
        let file = GgufFile::open(crate::paths::conformance_file("models/tiny-q4km.gguf")).unwrap();
        for t in file.tensors().iter().filter(|t| t.dims.len() == 2) {
            let layer = t
                .name
                .strip_prefix("blk.")
                .and_then(|r| r.split('.').next())
                .map(|i| (i.parse().unwrap(), 4));
            assert_eq!(
                matrix_type(Recipe::Q4KM, &t.name, layer),
                t.ty,
                "{}",
                t.name
            );
        }
    }
}
