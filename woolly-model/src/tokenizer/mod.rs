//! Tokenizers built from GGUF metadata alone, matching llama.cpp token for token.
//!
//! Two algorithms are implemented, chosen by `tokenizer.ggml.model`:
//! - `"llama"`: SentencePiece-style ([`TokenizerKind::Spm`]): spaces become `▁`, a space
//!   is prepended to text (`tokenizer.ggml.add_space_prefix`, default true), characters
//!   merge by token score, and text without a token falls back to `<0xHH>` byte tokens.
//! - `"gpt2"`: byte-level BPE ([`TokenizerKind::Bpe`]): a regex pre-tokenizer named by
//!   `tokenizer.ggml.pre` cuts text into words (`default`, `llama3`/`llama-bpe` and
//!   family, `gpt-2` and family, `smollm`/`starcoder` and family, `qwen2` and family,
//!   `falcon`), then ranked merges apply within each word.
//!
//! # Special tokens
//!
//! [`Tokenizer::encode`] takes `parse_special`: when true, the text of control tokens
//! (`<s>`, `<|im_start|>`, ...) in the input becomes those tokens; when false, it is
//! tokenized as ordinary text, and plain text can never produce a control or unknown
//! token (not even by merging characters that spell one). That is what keeps a chat user
//! from forging a turn marker: render the template's markers with `parse_special` and
//! the user's text without, using [`Tokenizer::encode_segments`] so the pieces tokenize
//! exactly as one string would:
//!
//! ```no_run
//! # use woolly_model::tokenizer::{Segment, Tokenizer};
//! # fn demo(tok: &Tokenizer, user_text: &str) -> Result<Vec<u32>, Box<dyn std::error::Error>> {
//! let ids = tok.encode_segments(
//!     &[
//!         Segment::special("<|im_start|>user\n"),
//!         Segment::plain(user_text),
//!         Segment::special("<|im_end|>\n<|im_start|>assistant\n"),
//!     ],
//!     true, // add BOS/EOS as the model asks
//! )?;
//! # Ok(ids) }
//! ```
//!
//! User-defined tokens (type 4) are cut out of text in both modes, as llama.cpp and
//! Hugging Face `tokenizers` do (they are ordinary added vocabulary, not control tokens).
//!
//! # Decoding
//!
//! Tokens render as the bytes they stand for ([`Tokenizer::token_bytes`]); control,
//! unknown, unused and undefined tokens render as nothing (llama.cpp's `token_to_piece`
//! with `special = false`). [`Tokenizer::decode`] also removes the space SentencePiece
//! prepends, and turns invalid UTF-8 into U+FFFD. [`StreamDecoder`] decodes while
//! generating, never splitting a character. Woolly does not apply llama.cpp's
//! `clean_spaces` heuristics (which drop the space in `" ,"`, `" 's"` ...): decoding is
//! lossless, so for text `s` free of control and user-defined token text,
//! `decode(encode(s, add_special, false)) == s`, provided the vocabulary has every byte
//! (BPE: all 256 byte characters; SPM: all `<0xHH>` tokens) and, for SPM, `s` has no
//! `▁` (U+2581), which SentencePiece reads back as a space.
//!
//! # Differences from llama.cpp
//!
//! Files llama.cpp would load with a warning are refused with an error naming the key:
//! per-token arrays whose length differs from the token list, special token ids past
//! the vocabulary. SentencePiece byte fallback uses the unknown token when the `<0xHH>`
//! token is missing (llama.cpp throws). Model-specific token attributes llama.cpp sets by
//! model name (Phi-3's `rstrip`, gpt-oss's always-rendered tokens) are not applied.

mod bpe;
mod error;
mod hash;
mod pretokenize;
mod special;
mod spm;
mod stream;
mod texts;
mod vocab;

use std::borrow::Cow;

pub use error::TokenizerError;
pub use stream::StreamDecoder;
pub use vocab::{TokenType, TokenizerKind, keys};

use crate::gguf::{GgufFile, Metadata};
use bpe::BpeModel;
use pretokenize::PreTokenizer;
use special::Fragment;
use vocab::Vocab;

/// A piece of input for [`Tokenizer::encode_segments`]: text, and whether special-token
/// text in it becomes special tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    /// The text.
    pub text: &'a str,
    /// Whether control-token text in `text` becomes control tokens.
    pub parse_special: bool,
}

impl<'a> Segment<'a> {
    /// Trusted text (a chat template's markers): special-token text becomes tokens.
    pub fn special(text: &'a str) -> Segment<'a> {
        Segment {
            text,
            parse_special: true,
        }
    }

    /// Untrusted text (what a user typed): always tokenized as text.
    pub fn plain(text: &'a str) -> Segment<'a> {
        Segment {
            text,
            parse_special: false,
        }
    }
}

/// The algorithm-specific part of a tokenizer.
enum Model {
    Spm,
    Bpe { bpe: BpeModel, pre: PreTokenizer },
}

/// A tokenizer built from GGUF metadata. Immutable, `Send + Sync`: share one between
/// threads.
pub struct Tokenizer {
    vocab: Vocab,
    model: Model,
    /// Control, unknown and user-defined tokens, longest text first.
    specials_by_length: Vec<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind())
            .field("pre", &self.pre_tokenizer())
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos())
            .field("eos", &self.eos())
            .field("add_bos", &self.add_bos())
            .finish_non_exhaustive()
    }
}

/// Largest input accepted by one encode call (symbol positions are 32-bit, and
/// byte-level encoding doubles the size of text at worst).
const MAX_INPUT: usize = (u32::MAX / 4) as usize;

impl Tokenizer {
    /// The tokenizer described by a GGUF file's metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        Self::from_metadata(file.metadata())
    }

    /// The tokenizer described by GGUF metadata (`tokenizer.ggml.*` keys).
    pub fn from_metadata(md: &Metadata) -> Result<Tokenizer, TokenizerError> {
        let vocab = Vocab::from_metadata(md)?;
        let model = match vocab.kind {
            TokenizerKind::Spm => Model::Spm,
            TokenizerKind::Bpe => {
                let pre = PreTokenizer::from_name(vocab.pre.as_deref())?;
                let merges = md
                    .get_str_array(keys::MERGES)?
                    .ok_or(TokenizerError::MissingKey(keys::MERGES))?;
                let bpe = BpeModel::new(&vocab, merges, pre.ignore_merges);
                Model::Bpe { bpe, pre }
            }
        };
        let specials_by_length = vocab.special_tokens_by_length();
        Ok(Tokenizer {
            vocab,
            model,
            specials_by_length,
        })
    }

    /// Tokenizes `text`.
    ///
    /// - `add_special`: add BOS and/or EOS as the model asks ([`Tokenizer::add_bos`],
    ///   [`Tokenizer::add_eos`]).
    /// - `parse_special`: turn control-token text (`<|im_start|>`) into control tokens;
    ///   when false, such text is tokenized as text (see the module docs).
    ///
    /// Fails only on input over 1 GiB, or when SentencePiece byte fallback finds neither
    /// a `<0xHH>` token nor an unknown token. Time is O(n log n) in the length of the
    /// text (times the number of special tokens that occur in it, for cutting those out).
    pub fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        self.encode_segments(
            &[Segment {
                text,
                parse_special,
            }],
            add_special,
        )
    }

    /// Tokenizes the concatenation of `segments`, parsing special-token text only in the
    /// segments that allow it. Text on either side of a segment boundary tokenizes as one
    /// string (the result equals `encode` of the concatenation whenever the plain
    /// segments hold no special-token text), so a prompt can be assembled from trusted
    /// template parts and untrusted user text.
    pub fn encode_segments(
        &self,
        segments: &[Segment<'_>],
        add_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let total = segments
            .iter()
            .fold(0usize, |n, s| n.saturating_add(s.text.len()));
        if total > MAX_INPUT {
            return Err(TokenizerError::InputTooLong(total));
        }

        // Cut out special tokens per segment, then join text across segment boundaries.
        let mut pieces: Vec<Piece<'_>> = Vec::new();
        let mut frags = Vec::new();
        for seg in segments {
            frags.clear();
            special::partition(
                &self.vocab,
                &self.specials_by_length,
                seg.text,
                seg.parse_special,
                &mut frags,
            );
            for frag in frags.drain(..) {
                match (frag, pieces.last_mut()) {
                    (Fragment::Text(t), Some(Piece::Text(prev))) => prev.to_mut().push_str(t),
                    (Fragment::Text(t), _) => pieces.push(Piece::Text(Cow::Borrowed(t))),
                    (Fragment::Token(id), _) => pieces.push(Piece::Token(id)),
                }
            }
        }

        let mut out = Vec::new();
        if add_special && self.vocab.add_bos {
            out.extend(self.vocab.special.bos);
        }
        match &self.model {
            Model::Spm => self.encode_spm(&pieces, &mut out)?,
            Model::Bpe { bpe, pre } => self.encode_bpe(bpe, pre, &pieces, &mut out),
        }
        if add_special && self.vocab.add_eos {
            out.extend(self.vocab.special.eos);
        }
        Ok(out)
    }

    fn encode_spm(&self, pieces: &[Piece<'_>], out: &mut Vec<u32>) -> Result<(), TokenizerError> {
        // As llama.cpp: a space goes before text at the start and after a special token.
        let mut after_special = true;
        let mut escaped = String::new();
        for piece in pieces {
            match piece {
                Piece::Token(id) => {
                    out.push(*id);
                    after_special = true;
                }
                Piece::Text(text) => {
                    escaped.clear();
                    if self.vocab.add_space_prefix && after_special {
                        escaped.push('\u{2581}');
                    }
                    for c in text.chars() {
                        escaped.push(if c == ' ' { '\u{2581}' } else { c });
                    }
                    spm::encode(&self.vocab, &escaped, out)?;
                    after_special = false;
                }
            }
        }
        Ok(())
    }

    fn encode_bpe(
        &self,
        bpe: &BpeModel,
        pre: &PreTokenizer,
        pieces: &[Piece<'_>],
        out: &mut Vec<u32>,
    ) {
        let mut scratch = bpe::Scratch::default();
        let mut encoded = String::new();
        for piece in pieces {
            match piece {
                Piece::Token(id) => out.push(*id),
                Piece::Text(text) => {
                    for word in pre.split(text) {
                        encoded.clear();
                        bpe::byte_encode_into(word, &mut encoded);
                        bpe.encode_word(&self.vocab, &encoded, &mut scratch, out);
                    }
                }
            }
        }
    }

    /// The text `ids` stand for: control, unknown, unused and undefined tokens render as
    /// nothing, the space SentencePiece prepends (`add_space_prefix`) is removed from the
    /// start, and invalid UTF-8 becomes U+FFFD. An id outside the vocabulary is an error.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        let bytes = self.decode_bytes(ids, false)?;
        let mut bytes = bytes.as_slice();
        if self.kind() == TokenizerKind::Spm && self.vocab.add_space_prefix {
            bytes = bytes.strip_prefix(b" ").unwrap_or(bytes);
        }
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    /// The bytes of each token's rendering, concatenated, with nothing removed; with
    /// `render_special`, control and unknown tokens render as their text. An id outside
    /// the vocabulary is an error.
    pub fn decode_bytes(
        &self,
        ids: &[u32],
        render_special: bool,
    ) -> Result<Vec<u8>, TokenizerError> {
        let mut out = Vec::new();
        for &id in ids {
            out.extend_from_slice(self.piece(id, render_special)?);
        }
        Ok(out)
    }

    /// How token `id` renders when decoding (see [`Tokenizer::decode_bytes`]).
    pub fn piece(&self, id: u32, render_special: bool) -> Result<&[u8], TokenizerError> {
        self.vocab
            .piece(id, render_special)
            .ok_or(TokenizerError::TokenOutOfRange {
                id,
                vocab_size: self.vocab_size(),
            })
    }

    /// The raw bytes token `id` stands for: the text of a normal token (with `▁` as a
    /// space, or GPT-2's byte characters decoded), the byte of a `<0xHH>` token, the
    /// literal text of a control or user-defined token. None outside the vocabulary.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.vocab.bytes(id)
    }

    /// The vocabulary string of token `id`, as stored in the file (`▁Hello`, `ĠHello`).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.text(id)
    }

    /// The type of token `id` (after llama.cpp's corrections: end-of-generation tokens
    /// found by their text are control tokens).
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.vocab.token_type(id)
    }

    /// The id of the token whose vocabulary string is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.id(text)
    }

    /// Number of tokens in the vocabulary; valid ids are `0..vocab_size()`.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// The algorithm.
    pub fn kind(&self) -> TokenizerKind {
        self.vocab.kind
    }

    /// The BPE pre-tokenizer's name (`tokenizer.ggml.pre`, `"default"` when absent);
    /// None for SentencePiece.
    pub fn pre_tokenizer(&self) -> Option<&str> {
        match &self.model {
            Model::Spm => None,
            Model::Bpe { pre, .. } => Some(pre.name()),
        }
    }

    /// Beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        self.vocab.special.bos
    }

    /// End-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.vocab.special.eos
    }

    /// End-of-turn token (`tokenizer.ggml.eot_token_id`, else found by its text, e.g.
    /// `<|eot_id|>`, `<|im_end|>`).
    pub fn eot(&self) -> Option<u32> {
        self.vocab.special.eot
    }

    /// Unknown token.
    pub fn unk(&self) -> Option<u32> {
        self.vocab.special.unk
    }

    /// Padding token.
    pub fn pad(&self) -> Option<u32> {
        self.vocab.special.pad
    }

    /// Whether `encode` with `add_special` starts with BOS.
    pub fn add_bos(&self) -> bool {
        self.vocab.add_bos
    }

    /// Whether `encode` with `add_special` ends with EOS.
    pub fn add_eos(&self) -> bool {
        self.vocab.add_eos
    }

    /// Whether SentencePiece prepends a space to text (false for BPE).
    pub fn add_space_prefix(&self) -> bool {
        self.kind() == TokenizerKind::Spm && self.vocab.add_space_prefix
    }

    /// Whether generating `id` ends generation: EOS, EOT, EOM, and the tokens llama.cpp
    /// recognizes by their text (`<|im_end|>`, `<|eot_id|>`, `<|end_of_text|>`,
    /// `<|endoftext|>`, `</s>`, `<end_of_turn>`, some fill-in-the-middle tokens, ...).
    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.special.eog.binary_search(&id).is_ok()
    }

    /// All end-of-generation tokens, sorted.
    pub fn eog_tokens(&self) -> &[u32] {
        &self.vocab.special.eog
    }
}

/// Input after special tokens are cut out: text (joined across segments) or a token.
enum Piece<'t> {
    Text(Cow<'t, str>),
    Token(u32),
}

#[cfg(test)]
mod tests;
