//! A loaded model: the memory-mapped file, its hyper-parameters and its weights.
//!
//! A [`Model`] is immutable once loaded and `Sync`: many sequences (the server's
//! requests) share one model, each with its own slot in a [`KvCache`] and its own
//! [`Scratch`].

use std::path::Path;
use std::sync::Arc;

use crate::config::{ConfigError, LlamaConfig};
use crate::forward::{self, BatchToken, ForwardError, Scratch};
use crate::gguf::{GgufError, GgufFile};
use crate::kv_cache::{KvCache, KvCacheError, KvType};
use woolly_kernels::dispatch::{Dims, Kernels};
use woolly_kernels::isa::{Isa, IsaError};

use crate::tokenizer::{Tokenizer, TokenizerError};
use crate::weights::{WeightError, Weights};

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file is not a valid GGUF.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The hyper-parameters are missing or inconsistent.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A tensor is missing or does not fit.
    #[error(transparent)]
    Weights(#[from] WeightError),
    /// The tokenizer metadata is missing or broken.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// `WOOLLY_ISA` names an ISA this CPU lacks.
    #[error(transparent)]
    Isa(#[from] IsaError),
    /// The tokenizer and the embeddings disagree on the vocabulary size.
    #[error("the tokenizer has {tokenizer} tokens but token_embd.weight has {embeddings} rows")]
    VocabMismatch { tokenizer: usize, embeddings: usize },
}

/// Norm weights and RoPE factors, decoded to f32 once at load (a few KiB).
#[derive(Debug)]
pub(crate) struct Norms {
    /// (n_layer, n_embd)
    pub attn: Vec<Vec<f32>>,
    /// (n_layer, n_embd)
    pub ffn: Vec<Vec<f32>>,
    /// (n_embd,)
    pub output: Vec<f32>,
    /// (rope_dim / 2,)
    pub rope_freqs: Option<Vec<f32>>,
}

/// A loaded Llama-family model.
pub struct Model {
    file: Arc<GgufFile>,
    config: LlamaConfig,
    weights: Weights,
    norms: Norms,
    tokenizer: Tokenizer,
    kernels: Kernels,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn decode_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect()
}

/// The metadata arrays a [`Tokenizer`] copies: the vocabulary, its scores and types, and
/// the BPE merges.
pub const TOKENIZER_ARRAYS: &[&str] = &[
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.scores",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
];

/// Gives the pages of freed heap memory back to the system (glibc keeps them otherwise:
/// the metadata's hundred thousand small strings sit in the middle of the heap).
fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system; it takes the
    // allocator's locks like any allocation and touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Model {
    /// Maps and checks the GGUF file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Model, LoadError> {
        Self::from_gguf(Arc::new(GgufFile::open(path)?))
    }

    /// Builds a model over an already parsed file.
    pub fn from_gguf(file: Arc<GgufFile>) -> Result<Model, LoadError> {
        Self::from_gguf_with_isa(file, Isa::from_env()?)
    }

    /// Builds a model over an already parsed file, running the kernels of `isa`
    /// (which the CPU must have: see [`Isa::checked`]).
    ///
    /// When this model holds the only reference to `file` (as after [`Model::load`]), the
    /// tokenizer's arrays ([`TOKENIZER_ARRAYS`]) leave its metadata once the tokenizer
    /// has copied them (read them through [`Model::tokenizer`]), and the pages of the
    /// file's header leave resident memory: about 5 MB of SmolLM2's 100.
    pub fn from_gguf_with_isa(mut file: Arc<GgufFile>, isa: Isa) -> Result<Model, LoadError> {
        let isa = Isa::checked(isa.as_str())?;
        let config = LlamaConfig::from_metadata(file.metadata())?;
        let mut weights = Weights::from_file(&file, &config)?;
        let tokenizer = Tokenizer::from_gguf(&file)?;
        if tokenizer.vocab_size() != config.n_vocab {
            return Err(LoadError::VocabMismatch {
                tokenizer: tokenizer.vocab_size(),
                embeddings: config.n_vocab,
            });
        }
        if let Some(file) = Arc::get_mut(&mut file) {
            file.forget_metadata(TOKENIZER_ARRAYS);
            release_freed_heap();
        }
        let bytes =
            |w: &crate::weights::Weight| decode_f32(file_bytes(&file, w.file_offset, w.n_bytes));
        let norms = Norms {
            attn: weights.layers.iter().map(|l| bytes(&l.attn_norm)).collect(),
            ffn: weights.layers.iter().map(|l| bytes(&l.ffn_norm)).collect(),
            output: bytes(&weights.output_norm),
            rope_freqs: weights.rope_freqs.as_ref().map(bytes),
        };
        let kernels = Kernels::select_for(
            isa,
            Dims {
                hidden: config.n_embd,
                head_dim: config.head_dim,
                ffn: config.n_ff,
            },
        );
        if kernels.packs_weights() {
            weights.pack(&file);
        }
        Ok(Model {
            file,
            config,
            weights,
            norms,
            tokenizer,
            kernels,
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Tokens a batch evaluates together ([`crate::forward::sub_batch_rows`]): a longer
    /// prompt batch runs as consecutive sub-batches of this many.
    pub fn sub_batch(&self) -> usize {
        crate::forward::sub_batch_rows(&self.config, self.file.size())
    }

    /// The ISA whose kernels run this model.
    pub fn isa(&self) -> Isa {
        self.kernels.isa
    }

    /// The kernels selected at load.
    pub fn kernels(&self) -> &Kernels {
        &self.kernels
    }

    /// The tokenizer built from the file's metadata.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The weights' descriptions.
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// The underlying file (metadata, tokenizer, chat template). After [`Model::load`] its
    /// metadata lacks the [`TOKENIZER_ARRAYS`]: [`Model::tokenizer`] holds them.
    pub fn gguf(&self) -> &GgufFile {
        &self.file
    }

    pub(crate) fn norms(&self) -> &Norms {
        &self.norms
    }

    /// The bytes of a weight, a view into the memory map.
    pub fn weight_data(&self, w: &crate::weights::Weight) -> &[u8] {
        file_bytes(&self.file, w.file_offset, w.n_bytes)
    }

    /// A KV cache of `n_seq` slots of `n_ctx` positions, refused with the figure it would
    /// need when larger than `limit_bytes`.
    pub fn new_cache(
        &self,
        n_seq: usize,
        n_ctx: usize,
        ty: KvType,
        limit_bytes: u128,
    ) -> Result<KvCache, KvCacheError> {
        let c = &self.config;
        KvCache::new(c.n_layer, n_seq, n_ctx, c.kv_dim(), ty, limit_bytes)
    }

    /// Scratch buffers for batches of up to `max_batch` tokens.
    pub fn new_scratch(&self, max_batch: usize, n_ctx: usize) -> Scratch {
        Scratch::new(&self.config, max_batch, n_ctx)
    }

    /// Evaluates a batch; the logits of the tokens that asked are in `scratch.logits()`.
    ///
    /// The pass runs on the calling thread, which leads the thread team
    /// ([`woolly_kernels::team`]) of the current rayon pool's size: its parallel steps
    /// never go through rayon, so handing the pass to a pool thread first (as this once
    /// did) only added a wake-up each way (measured: SmolLM2 single-stream decode 2.8 ->
    /// 2.5 ms a token).
    pub fn forward(
        &self,
        batch: &[BatchToken],
        kv: &mut KvCache,
        scratch: &mut Scratch,
    ) -> Result<(), ForwardError> {
        forward::forward(self, batch, kv, scratch)
    }
}

fn file_bytes(file: &GgufFile, offset: usize, len: usize) -> &[u8] {
    // Checked against the file at load (`Weights::from_file` takes ranges from
    // validated tensor infos).
    &file.bytes()[offset..offset + len]
}
