//! woolly-model: GGUF loading, tokenizers and the Llama forward pass.
//!
//! Load a model, tokenize, evaluate a batch, sample, and stream text:
//!
//! ```no_run
//! use woolly_model::sampling::{Sampler, SamplingParams};
//! use woolly_model::tokenizer::StreamDecoder;
//! use woolly_model::{BatchToken, KvType, Model};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let model = Model::load("model.gguf")?;
//! let prompt = model.tokenizer().encode("The capital of France is", true, false)?;
//! let mut kv = model.new_cache(1, 256, KvType::F16, u128::MAX)?; // one sequence slot
//! let mut scratch = model.new_scratch(prompt.len(), 256);
//!
//! // The prompt in one batch; logits only for its last token.
//! let batch: Vec<BatchToken> = prompt
//!     .iter()
//!     .enumerate()
//!     .map(|(pos, &token)| BatchToken { token, pos, seq: 0, logits: pos + 1 == prompt.len() })
//!     .collect();
//! model.forward(&batch, &mut kv, &mut scratch)?;
//!
//! let mut sampler = Sampler::new(SamplingParams::greedy());
//! let mut decoder = StreamDecoder::new();
//! let mut history = prompt.clone();
//! for pos in prompt.len()..prompt.len() + 16 {
//!     let token = sampler.sample(scratch.logits_row(0), &history)?;
//!     if model.tokenizer().is_eog(token) {
//!         break;
//!     }
//!     print!("{}", decoder.push(model.tokenizer(), token)?);
//!     history.push(token);
//!     model.forward(&[BatchToken { token, pos, seq: 0, logits: true }], &mut kv, &mut scratch)?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! [`Session`] and [`generate::generate`] wrap this loop (prompt batching, prefix reuse,
//! stop strings); `examples/generate.rs` uses them in under 60 lines.
//!
//! - [`gguf`]: a GGUF reader that checks every field before use, and a writer.
//! - [`tokenizer`]: SentencePiece and byte-level BPE tokenizers from GGUF metadata.
//! - [`model`], [`forward`], [`kv_cache`], [`session`]: the Llama forward pass.
//! - [`sampling`], [`chat`], [`generate`], [`batching`]: sampling, chat templates, the
//!   generation loop and the server's scheduler.
//! - [`fetch`] and [`paths`]: the model cache and the conformance pack.

pub mod batching;
pub mod chat;
pub mod config;
pub mod fetch;
pub mod forward;
pub mod generate;
pub mod ggml_exact;
pub mod gguf;
pub mod kv_cache;
mod linear;
pub mod model;
pub mod paths;
pub mod sampling;
pub mod session;
pub mod synthetic;
pub mod tokenizer;
pub mod weights;

pub use config::LlamaConfig;
pub use forward::{BatchToken, ForwardError, Scratch};
pub use kv_cache::{KvCache, KvType};
pub use model::{LoadError, Model};
pub use session::{Session, SessionError, SessionOptions};
