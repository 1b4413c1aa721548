//! The vocabulary: token strings, types, scores and special tokens, read and checked
//! from GGUF metadata.
//!
//! What is read, and the defaults where a key is absent, follow `llama_vocab::impl::load`
//! in llama.cpp's `src/llama-vocab.cpp`; where llama.cpp only warns about a broken file
//! (a special token id past the vocabulary, arrays shorter or longer than the token
//! list), Woolly refuses it with an error naming the key.

use super::TokenizerError;
use super::bpe::byte_decode_char;
use super::texts::TextTable;
use crate::gguf::{Array, Metadata, Value};

/// Metadata keys read by the tokenizer.
pub mod keys {
    /// Tokenizer model: `"llama"` (SentencePiece) or `"gpt2"` (byte-level BPE).
    pub const MODEL: &str = "tokenizer.ggml.model";
    /// Pre-tokenizer name for BPE (`"default"`, `"llama-bpe"`, `"smollm"`, ...).
    pub const PRE: &str = "tokenizer.ggml.pre";
    /// Token strings.
    pub const TOKENS: &str = "tokenizer.ggml.tokens";
    /// Token scores (SentencePiece merge priorities).
    pub const SCORES: &str = "tokenizer.ggml.scores";
    /// Token types (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
    pub const TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
    /// BPE merges, `"left right"`, in priority order.
    pub const MERGES: &str = "tokenizer.ggml.merges";
    /// Beginning-of-sequence token id.
    pub const BOS_ID: &str = "tokenizer.ggml.bos_token_id";
    /// End-of-sequence token id.
    pub const EOS_ID: &str = "tokenizer.ggml.eos_token_id";
    /// End-of-turn token id.
    pub const EOT_ID: &str = "tokenizer.ggml.eot_token_id";
    /// End-of-message token id.
    pub const EOM_ID: &str = "tokenizer.ggml.eom_token_id";
    /// Unknown token id.
    pub const UNK_ID: &str = "tokenizer.ggml.unknown_token_id";
    /// Padding token id.
    pub const PAD_ID: &str = "tokenizer.ggml.padding_token_id";
    /// Fill-in-the-middle padding token id.
    pub const FIM_PAD_ID: &str = "tokenizer.ggml.fim_pad_token_id";
    /// Fill-in-the-middle repository token id.
    pub const FIM_REP_ID: &str = "tokenizer.ggml.fim_rep_token_id";
    /// Fill-in-the-middle file separator token id.
    pub const FIM_SEP_ID: &str = "tokenizer.ggml.fim_sep_token_id";
    /// Whether to add BOS when encoding with `add_special`.
    pub const ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
    /// Whether to add EOS when encoding with `add_special`.
    pub const ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
    /// Whether SentencePiece prepends a space to text.
    pub const ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
}

/// The type of a vocabulary entry (`tokenizer.ggml.token_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenType {
    /// Type 0 or any value outside 1..=6: decodes to nothing, as in llama.cpp.
    Undefined,
    /// Type 1: an ordinary piece of text.
    Normal,
    /// Type 2: the unknown token (`<unk>`).
    Unknown,
    /// Type 3: a control token (`<s>`, `<|im_end|>`): only produced from text when
    /// special tokens are parsed, decodes to nothing unless special tokens are rendered.
    Control,
    /// Type 4: a user-defined token, matched in text before tokenization.
    UserDefined,
    /// Type 5: an unused slot: decodes to nothing.
    Unused,
    /// Type 6: a byte token `<0xHH>` standing for one raw byte.
    Byte,
}

impl TokenType {
    /// The type for a GGUF token type number.
    pub fn from_gguf(value: i32) -> TokenType {
        match value {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Undefined,
        }
    }

    /// Control and unknown tokens: the ones plain text must never produce.
    pub fn is_special(self) -> bool {
        matches!(self, TokenType::Control | TokenType::Unknown)
    }

    /// Whether tokenizing plain text may produce this token by merging characters
    /// (control, unknown and byte tokens are reached only by other routes).
    pub(crate) fn is_mergeable(self) -> bool {
        matches!(
            self,
            TokenType::Normal | TokenType::UserDefined | TokenType::Unused | TokenType::Undefined
        )
    }
}

/// Which tokenizer algorithm the vocabulary uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenizerKind {
    /// SentencePiece-style (`tokenizer.ggml.model = "llama"`): score-driven merges over
    /// the whole text, spaces written as `▁`, `<0xHH>` byte fallback.
    Spm,
    /// Byte-level BPE (`tokenizer.ggml.model = "gpt2"`): a regex pre-tokenizer, then
    /// ranked merges within each word over GPT-2's byte-to-character mapping.
    Bpe,
}

/// Token ids with a special role, after defaults and checks.
#[derive(Clone, Debug, Default)]
pub(crate) struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    /// End-of-generation tokens, sorted.
    pub eog: Vec<u32>,
}

/// The checked vocabulary.
pub(crate) struct Vocab {
    pub kind: TokenizerKind,
    /// `tokenizer.ggml.pre` as written (None when absent).
    pub pre: Option<String>,
    texts: TextTable,
    types: Vec<TokenType>,
    scores: Vec<f32>,
    /// Concatenated raw bytes of every token; token `i` is `bytes[offsets[i]..offsets[i+1]]`.
    bytes: Vec<u8>,
    offsets: Vec<u32>,
    /// For SentencePiece byte fallback: the token for each byte (`<0xHH>`, else the
    /// one-byte string).
    byte_tokens: [Option<u32>; 256],
    /// Length in bytes of the longest token string.
    pub max_token_len: usize,
    pub special: SpecialIds,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
}

/// Token texts llama.cpp treats as end of turn when `tokenizer.ggml.eot_token_id` is absent.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// Fill-in-the-middle token texts (prefix, suffix, middle, pad, repository, separator),
/// which llama.cpp forces to control type.
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];

/// Token texts llama.cpp treats as end of generation (in addition to EOS/EOT/EOM).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Largest vocabulary accepted: ids must fit llama.cpp's `int32_t` token type.
const MAX_VOCAB: usize = i32::MAX as usize;

/// Parses `<0xHH>` (either case of hex digit) into its byte.
pub(crate) fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

impl Vocab {
    /// Reads and checks the vocabulary from `md`.
    pub fn from_metadata(md: &Metadata) -> Result<Vocab, TokenizerError> {
        let model = md
            .get_str(keys::MODEL)?
            .ok_or(TokenizerError::MissingKey(keys::MODEL))?;
        let kind = match model {
            "llama" => TokenizerKind::Spm,
            "gpt2" => TokenizerKind::Bpe,
            other => return Err(TokenizerError::UnsupportedModel(other.to_owned())),
        };
        let pre = md.get_str(keys::PRE)?.map(str::to_owned);

        let tokens = md
            .get_str_array(keys::TOKENS)?
            .ok_or(TokenizerError::MissingKey(keys::TOKENS))?;
        let n = tokens.len();
        if n == 0 {
            return Err(TokenizerError::BadVocabularySize(
                "the vocabulary is empty".into(),
            ));
        }
        if n > MAX_VOCAB {
            return Err(TokenizerError::BadVocabularySize(format!(
                "{n} tokens, more than the {MAX_VOCAB} token ids can address"
            )));
        }

        // Byte-level BPE ranks merges, not tokens: its scores are checked, not kept.
        let scores = read_scores(md, n, kind != TokenizerKind::Bpe)?;
        let mut types = match md.get_i32_array(keys::TOKEN_TYPE)? {
            None => vec![TokenType::Normal; n],
            Some(t) if t.len() != n => {
                return Err(TokenizerError::LengthMismatch {
                    key: keys::TOKEN_TYPE,
                    len: t.len(),
                    expected: n,
                });
            }
            Some(t) => t.iter().map(|&v| TokenType::from_gguf(v)).collect(),
        };

        // Token strings; an empty one is renamed as llama.cpp does, so it stays unique
        // and visible.
        let mut texts = TextTable::with_capacity(n, tokens.iter().map(|t| t.len()).sum());
        let mut max_token_len = 0;
        for (i, t) in tokens.iter().enumerate() {
            let id = i as u32;
            let renamed;
            let text = if t.is_empty() {
                renamed = format!("[EMPTY_{i}]");
                &renamed
            } else {
                t
            };
            if let Some(first) = texts.get(text) {
                return Err(TokenizerError::DuplicateToken {
                    token: text.to_owned(),
                    first,
                    second: id,
                });
            }
            if types[i] == TokenType::Byte && parse_byte_token(text).is_none() {
                return Err(TokenizerError::BadByteToken {
                    id,
                    token: text.to_owned(),
                });
            }
            max_token_len = max_token_len.max(text.len());
            texts.push(text).map_err(|_| {
                TokenizerError::BadVocabularySize("its token strings exceed 4 GiB".into())
            })?;
        }

        let special = read_special_ids(md, kind, n, &texts, &mut types)?;

        // Flags: model defaults, then the file's keys.
        let is_llama3_family = kind == TokenizerKind::Bpe
            && pre
                .as_deref()
                .is_some_and(super::pretokenize::adds_bos_by_default);
        let mut add_bos = kind == TokenizerKind::Spm || is_llama3_family;
        let mut add_eos = false;
        let mut add_space_prefix = kind == TokenizerKind::Spm;
        if let Some(v) = md.get_bool(keys::ADD_BOS)? {
            add_bos = v;
        }
        if let Some(v) = md.get_bool(keys::ADD_EOS)? {
            add_eos = v;
        }
        if let Some(v) = md.get_bool(keys::ADD_SPACE_PREFIX)? {
            add_space_prefix = v;
        }
        if add_bos && special.bos.is_none() {
            return Err(TokenizerError::MissingSpecialToken {
                flag: keys::ADD_BOS,
                key: keys::BOS_ID,
            });
        }
        if add_eos && special.eos.is_none() {
            return Err(TokenizerError::MissingSpecialToken {
                flag: keys::ADD_EOS,
                key: keys::EOS_ID,
            });
        }

        let mut byte_tokens = [None; 256];
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            let hex = format!("<0x{b:02X}>");
            *slot = texts.get(&hex).or_else(|| {
                let one = [b as u8];
                std::str::from_utf8(&one).ok().and_then(|s| texts.get(s))
            });
        }

        // Raw bytes of every token: no more than its text (`render_token`), so their
        // offsets fit the `u32` of the text table's.
        let mut bytes = Vec::with_capacity(texts.text_len());
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        for (id, &ty) in types.iter().enumerate() {
            let text = texts.text(id as u32).expect("one type per token");
            render_token(kind, text, ty, &mut bytes);
            offsets.push(bytes.len() as u32);
        }
        bytes.shrink_to_fit();

        Ok(Vocab {
            kind,
            pre,
            texts,
            types,
            scores,
            bytes,
            offsets,
            byte_tokens,
            max_token_len,
            special,
            add_bos,
            add_eos,
            add_space_prefix,
        })
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// The vocabulary string of `id`.
    pub fn text(&self, id: u32) -> Option<&str> {
        self.texts.text(id)
    }

    /// The type of `id`.
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// The score of `id` (0 when the file has no scores, and for a BPE vocabulary, whose
    /// merges are ranked by the merge list instead).
    pub fn score(&self, id: u32) -> f32 {
        self.scores.get(id as usize).copied().unwrap_or(0.0)
    }

    /// The raw bytes `id` stands for.
    pub fn bytes(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        if i >= self.texts.len() {
            return None;
        }
        Some(&self.bytes[self.offsets[i] as usize..self.offsets[i + 1] as usize])
    }

    /// The id of the token whose string is exactly `text`, of any type.
    pub fn id(&self, text: &str) -> Option<u32> {
        self.texts.get(text)
    }

    /// The id of `text` if plain-text tokenization may produce it (see
    /// [`TokenType::is_mergeable`]).
    #[inline]
    pub fn mergeable_id(&self, text: &str) -> Option<u32> {
        let id = self.texts.get(text)?;
        self.types[id as usize].is_mergeable().then_some(id)
    }

    /// The SentencePiece byte-fallback token for `b`.
    pub fn byte_token(&self, b: u8) -> Option<u32> {
        self.byte_tokens[b as usize]
    }

    /// The bytes `id` renders as when decoding: control, unknown, unused and undefined
    /// tokens render as nothing unless `special` (then control and unknown tokens render
    /// their text), as llama.cpp's `token_to_piece`.
    pub fn piece(&self, id: u32, special: bool) -> Option<&[u8]> {
        let ty = self.token_type(id)?;
        let bytes = self.bytes(id)?;
        Some(match ty {
            TokenType::Normal | TokenType::Byte | TokenType::UserDefined => bytes,
            TokenType::Control | TokenType::Unknown if special => bytes,
            _ => &[],
        })
    }

    /// Ids of control, unknown and user-defined tokens, longest text first (ties by id):
    /// the order special tokens are searched for in text.
    pub fn special_tokens_by_length(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = (0..self.len() as u32)
            .filter(|&id| {
                matches!(
                    self.types[id as usize],
                    TokenType::Control | TokenType::Unknown | TokenType::UserDefined
                )
            })
            .collect();
        ids.sort_by(|&a, &b| {
            let len = |id: u32| self.texts.text(id).map_or(0, str::len);
            len(b).cmp(&len(a)).then(a.cmp(&b))
        });
        ids
    }
}

/// Scores as f32 (when `keep`; empty otherwise): an f32 or i32 array with one entry per
/// token, or empty if absent ([`Vocab::score`] reads a missing score as 0). Their type
/// and length are checked either way.
fn read_scores(md: &Metadata, n: usize, keep: bool) -> Result<Vec<f32>, TokenizerError> {
    let (len, scores) = match md.get(keys::SCORES) {
        None => return Ok(Vec::new()),
        Some(Value::Array(Array::F32(v))) => (v.len(), keep.then(|| v.clone())),
        Some(Value::Array(Array::I32(v))) => {
            (v.len(), keep.then(|| v.iter().map(|&s| s as f32).collect()))
        }
        Some(other) => {
            return Err(TokenizerError::WrongType {
                key: keys::SCORES,
                expected: "array of f32 or i32",
                found: other.type_name(),
            });
        }
    };
    if len != n {
        return Err(TokenizerError::LengthMismatch {
            key: keys::SCORES,
            len,
            expected: n,
        });
    }
    Ok(scores.unwrap_or_default())
}

/// Reads the special token ids and works out the end-of-generation set, forcing the
/// tokens found by text to control type (as llama.cpp does).
fn read_special_ids(
    md: &Metadata,
    kind: TokenizerKind,
    n: usize,
    index: &TextTable,
    types: &mut [TokenType],
) -> Result<SpecialIds, TokenizerError> {
    let in_range = |id: u32| (id as usize) < n;
    // llama.cpp's defaults, dropped when outside the vocabulary.
    let (bos, eos, unk) = match kind {
        TokenizerKind::Spm => (Some(1), Some(2), Some(0)),
        TokenizerKind::Bpe => (Some(11), Some(11), None),
    };
    let key = |key: &'static str, default: Option<u32>| -> Result<Option<u32>, TokenizerError> {
        match md.get_u32(key)? {
            Some(id) if in_range(id) => Ok(Some(id)),
            Some(id) => Err(TokenizerError::SpecialIdOutOfRange {
                key,
                id,
                vocab_size: n,
            }),
            None => Ok(default.filter(|&id| in_range(id))),
        }
    };
    let mut s = SpecialIds {
        bos: key(keys::BOS_ID, bos)?,
        eos: key(keys::EOS_ID, eos)?,
        eot: key(keys::EOT_ID, None)?,
        eom: key(keys::EOM_ID, None)?,
        unk: key(keys::UNK_ID, unk)?,
        pad: key(keys::PAD_ID, None)?,
        eog: Vec::new(),
    };
    let mut fim_pad = key(keys::FIM_PAD_ID, None)?;
    let mut fim_rep = key(keys::FIM_REP_ID, None)?;
    let mut fim_sep = key(keys::FIM_SEP_ID, None)?;

    // The lowest id whose text is in `texts`, forced to control type.
    let mut find = |texts: &[&str]| -> Option<u32> {
        let id = texts.iter().filter_map(|t| index.get(t)).min()?;
        types[id as usize] = TokenType::Control;
        Some(id)
    };
    if s.eot.is_none() {
        s.eot = find(EOT_TEXTS);
    }
    if s.eom.is_none() {
        s.eom = find(&["<|eom_id|>"]);
    }
    find(FIM_PRE_TEXTS);
    find(FIM_SUF_TEXTS);
    find(FIM_MID_TEXTS);
    if fim_pad.is_none() {
        fim_pad = find(FIM_PAD_TEXTS);
    }
    if fim_rep.is_none() {
        fim_rep = find(FIM_REP_TEXTS);
    }
    if fim_sep.is_none() {
        fim_sep = find(FIM_SEP_TEXTS);
    }

    let mut eog: Vec<u32> = [fim_pad, fim_rep, fim_sep].into_iter().flatten().collect();
    for text in EOG_TEXTS {
        if let Some(id) = index.get(text) {
            if types[id as usize] != TokenType::Control {
                types[id as usize] = TokenType::Control;
            }
            eog.push(id);
        }
    }
    eog.extend([s.eos, s.eot, s.eom].into_iter().flatten());
    eog.sort_unstable();
    eog.dedup();

    // llama.cpp's model-specific exceptions: with <|return|>/<|call|> (o200k_harmony) or
    // <|calls|>/<|flush|> (solar-open), <|end|> is not end of generation; with
    // <|tool_response> (gemma4), </s> is not.
    let has = |eog: &[u32], t: &str| index.get(t).is_some_and(|id| eog.contains(&id));
    if let Some(end) = index.get("<|end|>") {
        let harmony = has(&eog, "<|return|>") && has(&eog, "<|call|>");
        let solar = (has(&eog, "<|call|>") || has(&eog, "<|calls|>")) && has(&eog, "<|flush|>");
        if eog.contains(&end) && (harmony || solar) {
            eog.retain(|&id| id != end);
            types[end as usize] = TokenType::UserDefined;
        }
    }
    if let Some(s_id) = index.get("</s>")
        && has(&eog, "<|tool_response>")
        && eog.contains(&s_id)
    {
        eog.retain(|&id| id != s_id);
        types[s_id as usize] = TokenType::Normal;
    }
    s.eog = eog;
    Ok(s)
}

/// Appends the raw bytes `text` (of type `ty`) stands for: never more than `text`'s own.
fn render_token(kind: TokenizerKind, text: &str, ty: TokenType, out: &mut Vec<u8>) {
    match ty {
        TokenType::Byte => {
            // Checked at load.
            if let Some(b) = parse_byte_token(text) {
                out.push(b);
            }
        }
        TokenType::Control | TokenType::Unknown | TokenType::UserDefined => {
            out.extend_from_slice(text.as_bytes());
        }
        TokenType::Normal | TokenType::Unused | TokenType::Undefined => match kind {
            TokenizerKind::Spm => {
                // `▁` (U+2581) stands for a space.
                let mut rest = text;
                while let Some(pos) = rest.find('\u{2581}') {
                    out.extend_from_slice(&rest.as_bytes()[..pos]);
                    out.push(b' ');
                    rest = &rest[pos + '\u{2581}'.len_utf8()..];
                }
                out.extend_from_slice(rest.as_bytes());
            }
            TokenizerKind::Bpe => {
                // Each character stands for one byte (GPT-2's byte-to-unicode table); a
                // character outside the table is kept as its UTF-8.
                for c in text.chars() {
                    match byte_decode_char(c) {
                        Some(b) => out.push(b),
                        None => {
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                    }
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_token_syntax() {
        assert_eq!(parse_byte_token("<0x0A>"), Some(10));
        assert_eq!(parse_byte_token("<0xff>"), Some(255));
        assert_eq!(parse_byte_token("<0xZZ>"), None);
        assert_eq!(parse_byte_token("<0x-1>"), None);
        assert_eq!(parse_byte_token("<0x+1>"), None);
        assert_eq!(parse_byte_token("<0x100>"), None);
        assert_eq!(parse_byte_token("<0x1>"), None);
        assert_eq!(parse_byte_token("0x41"), None);
    }
}
