//! woolly-model: GGUF loading, tokenizers and the Llama forward pass.
//!
//! - [`gguf`]: a GGUF reader that checks every field before use, and a writer.
//! - [`tokenizer`]: SentencePiece and byte-level BPE tokenizers from GGUF metadata.
//! - [`fetch`] and [`paths`]: the model cache and the conformance pack.

pub mod batching;
pub mod chat;
pub mod config;
pub mod fetch;
pub mod forward;
pub mod generate;
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
