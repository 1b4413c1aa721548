//! The errors a tokenizer can raise, each naming the metadata key, token or id at fault.

use crate::gguf::GgufError;

/// Why a tokenizer could not be built, or could not encode or decode.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A metadata value had the wrong type (the GGUF error names the key).
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A metadata value had a type the tokenizer cannot use.
    #[error("metadata key {key:?}: expected {expected}, found {found}")]
    WrongType {
        key: &'static str,
        expected: &'static str,
        found: String,
    },
    /// A required metadata key is absent.
    #[error("metadata key {0:?} is missing")]
    MissingKey(&'static str),
    /// `tokenizer.ggml.model` names a tokenizer Woolly does not implement.
    #[error(
        "metadata key \"tokenizer.ggml.model\": unsupported tokenizer model {0:?} (Woolly supports \"llama\" and \"gpt2\")"
    )]
    UnsupportedModel(String),
    /// `tokenizer.ggml.pre` names a pre-tokenizer Woolly does not implement.
    #[error("metadata key \"tokenizer.ggml.pre\": unsupported pre-tokenizer {0:?}")]
    UnsupportedPreTokenizer(String),
    /// The vocabulary is empty or larger than token ids can address.
    #[error("metadata key \"tokenizer.ggml.tokens\": {0}")]
    BadVocabularySize(String),
    /// A per-token array does not have one entry per token.
    #[error("metadata key {key:?}: {len} entries, but the vocabulary has {expected} tokens")]
    LengthMismatch {
        key: &'static str,
        len: usize,
        expected: usize,
    },
    /// The same token text appears twice in the vocabulary.
    #[error(
        "metadata key \"tokenizer.ggml.tokens\": token {token:?} appears at ids {first} and {second}"
    )]
    DuplicateToken {
        token: String,
        first: u32,
        second: u32,
    },
    /// A token typed as a byte token whose text is not `<0xHH>`.
    #[error(
        "metadata key \"tokenizer.ggml.tokens\": byte token {id} is {token:?}, expected <0xHH> with two hex digits"
    )]
    BadByteToken { id: u32, token: String },
    /// A special token id (BOS, EOS, ...) outside the vocabulary.
    #[error("metadata key {key:?}: token id {id} is outside the vocabulary of {vocab_size} tokens")]
    SpecialIdOutOfRange {
        key: &'static str,
        id: u32,
        vocab_size: usize,
    },
    /// The metadata asks for a special token to be added but does not say which.
    #[error("metadata key {flag:?} is true, but {key:?} is not set")]
    MissingSpecialToken {
        flag: &'static str,
        key: &'static str,
    },
    /// A pre-tokenizer pattern failed to compile (a bug in Woolly, not in the file).
    #[error("pre-tokenizer {name:?}: pattern failed to compile: {message}")]
    Pattern { name: String, message: String },
    /// A token id passed to decoding is outside the vocabulary.
    #[error("token id {id} is outside the vocabulary of {vocab_size} tokens")]
    TokenOutOfRange { id: u32, vocab_size: usize },
    /// SentencePiece byte fallback found neither a `<0xHH>` token nor an unknown token.
    #[error(
        "cannot encode byte {byte:#04x}: the vocabulary has no <0x{byte:02X}> token and no unknown token"
    )]
    NoByteToken { byte: u8 },
    /// The input is too long for 32-bit symbol indices.
    #[error("input of {0} bytes is too long to tokenize")]
    InputTooLong(usize),
}
