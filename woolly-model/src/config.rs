//! The hyper-parameters of a Llama-family model, read from GGUF metadata and checked.

use crate::gguf::{GgufError, Metadata};

/// How RoPE pairs the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeLayout {
    /// Adjacent pairs `(x[2i], x[2i+1])`: GGUF's "llama" layout (the converter permutes
    /// Q and K so this matches Hugging Face's rotate-half).
    Normal,
    /// Pairs `(x[i], x[i + d/2])`: GPT-NeoX style.
    Neox,
}

/// Llama 3 style frequency scaling (`llama.rope.scaling.*` or a `rope_freqs` tensor).
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Positions divided by `factor` (`rope.scaling.type = linear`).
    Linear { factor: f32 },
}

/// Why a model's metadata cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A metadata problem (wrong type, out of range).
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A key the model needs is absent.
    #[error("metadata key {0:?} is missing")]
    Missing(String),
    /// An architecture Woolly cannot run.
    #[error("unsupported architecture {0:?} (Woolly runs \"llama\")")]
    UnsupportedArchitecture(String),
    /// Values that cannot be right together.
    #[error("metadata key {key:?}: {problem}")]
    Invalid { key: String, problem: String },
}

/// Hyper-parameters of a Llama-architecture model.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    /// `general.architecture`.
    pub arch: String,
    /// Width of the residual stream.
    pub n_embd: usize,
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_head`).
    pub n_head_kv: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Hidden width of the feed-forward network.
    pub n_ff: usize,
    /// Vocabulary size (rows of the embedding matrix).
    pub n_vocab: usize,
    /// Context length the model was trained for.
    pub n_ctx_train: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// RoPE frequency base.
    pub rope_base: f32,
    /// Number of dimensions of each head that RoPE rotates (even, at most `head_dim`).
    pub rope_dim: usize,
    /// Pair layout of RoPE.
    pub rope_layout: RopeLayout,
    /// Frequency scaling.
    pub rope_scaling: RopeScaling,
}

/// Largest plausible values, so a hostile file cannot make Woolly allocate absurd
/// buffers from its hyper-parameters before the tensors are checked against them.
const MAX_LAYERS: usize = 1 << 12;
const MAX_WIDTH: usize = 1 << 20;

impl LlamaConfig {
    /// Reads and checks the hyper-parameters.
    pub fn from_metadata(md: &Metadata) -> Result<LlamaConfig, ConfigError> {
        let arch = md
            .get_str("general.architecture")?
            .ok_or_else(|| ConfigError::Missing("general.architecture".into()))?
            .to_owned();
        if arch != "llama" {
            return Err(ConfigError::UnsupportedArchitecture(arch));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let required = |k: &str| -> Result<usize, ConfigError> {
            let v = md
                .get_u32(&key(k))?
                .ok_or_else(|| ConfigError::Missing(key(k)))?;
            let v = v as usize;
            let max = if k == "block_count" {
                MAX_LAYERS
            } else {
                MAX_WIDTH
            };
            if v == 0 || v > max {
                return Err(ConfigError::Invalid {
                    key: key(k),
                    problem: format!("{v} is outside 1..={max}"),
                });
            }
            Ok(v)
        };
        let n_embd = required("embedding_length")?;
        let n_layer = required("block_count")?;
        let n_head = required("attention.head_count")?;
        let n_ff = required("feed_forward_length")?;
        let n_head_kv = match md.get_u32(&key("attention.head_count_kv"))? {
            Some(_) => required("attention.head_count_kv")?,
            None => n_head,
        };
        let n_ctx_train = required("context_length")?;
        if n_embd % n_head != 0 {
            return Err(ConfigError::Invalid {
                key: key("attention.head_count"),
                problem: format!("{n_head} heads do not divide the embedding width {n_embd}"),
            });
        }
        if n_head % n_head_kv != 0 {
            return Err(ConfigError::Invalid {
                key: key("attention.head_count_kv"),
                problem: format!("{n_head_kv} KV heads do not divide the {n_head} query heads"),
            });
        }
        let head_dim = n_embd / n_head;
        let rope_dim = match md.get_u32(&key("rope.dimension_count"))? {
            Some(d) => d as usize,
            None => head_dim,
        };
        if rope_dim == 0 || rope_dim % 2 != 0 || rope_dim > head_dim {
            return Err(ConfigError::Invalid {
                key: key("rope.dimension_count"),
                problem: format!("{rope_dim} must be even and in 2..={head_dim} (the head width)"),
            });
        }
        let rms_eps = md
            .get_f32(&key("attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-5);
        if !(rms_eps.is_finite() && rms_eps > 0.0) {
            return Err(ConfigError::Invalid {
                key: key("attention.layer_norm_rms_epsilon"),
                problem: format!("{rms_eps} is not a positive number"),
            });
        }
        let rope_base = md.get_f32(&key("rope.freq_base"))?.unwrap_or(10_000.0);
        if !(rope_base.is_finite() && rope_base > 1.0) {
            return Err(ConfigError::Invalid {
                key: key("rope.freq_base"),
                problem: format!("{rope_base} is not a frequency base above 1"),
            });
        }
        let rope_scaling = match md.get_str(&key("rope.scaling.type"))? {
            None | Some("none") => RopeScaling::None,
            Some("linear") => {
                let factor = md.get_f32(&key("rope.scaling.factor"))?.unwrap_or(1.0);
                if !(factor.is_finite() && factor > 0.0) {
                    return Err(ConfigError::Invalid {
                        key: key("rope.scaling.factor"),
                        problem: format!("{factor} is not a positive factor"),
                    });
                }
                RopeScaling::Linear { factor }
            }
            Some(other) => {
                return Err(ConfigError::Invalid {
                    key: key("rope.scaling.type"),
                    problem: format!("scaling {other:?} is not supported (none, linear)"),
                });
            }
        };
        let n_vocab = match md.get_u32(&key("vocab_size"))? {
            Some(v) => v as usize,
            None => md
                .get_array("tokenizer.ggml.tokens")?
                .map_or(0, |a| a.len()),
        };
        Ok(LlamaConfig {
            arch,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            n_ff,
            n_vocab,
            n_ctx_train,
            rms_eps,
            rope_base,
            rope_dim,
            rope_layout: RopeLayout::Normal,
            rope_scaling,
        })
    }

    /// Width of the keys (and values) of one position: `n_head_kv * head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}
