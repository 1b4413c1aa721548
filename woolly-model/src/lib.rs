//! woolly-model: GGUF loading, tokenizers and the Llama forward pass.

pub mod gguf;
pub mod tokenizer;
