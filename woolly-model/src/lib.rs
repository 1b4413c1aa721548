//! woolly-model: GGUF loading, tokenizers and the Llama forward pass.
//!
//! - [`gguf`]: a GGUF reader that checks every field before use, and a writer.
//! - [`tokenizer`]: SentencePiece and byte-level BPE tokenizers from GGUF metadata.
//! - [`fetch`] and [`paths`]: the model cache and the conformance pack.

pub mod fetch;
pub mod gguf;
pub mod paths;
pub mod tokenizer;
