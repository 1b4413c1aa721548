//! Cutting special-token text out of input before tokenization.
//!
//! Follows `tokenizer_st_partition` in llama.cpp's `src/llama-vocab.cpp`: special tokens
//! are searched for longest first (ties by id), each one splitting every text fragment
//! left by the longer ones at each of its occurrences. User-defined tokens are always cut
//! out; control and unknown tokens only when special tokens are parsed. (llama.cpp's
//! per-model `lstrip`/`rstrip` attributes, used by Phi-3 and a few BERT models, are not
//! implemented.)
//!
//! Each special token costs one substring search over the input, plus one pass over the
//! fragments when it occurs: O(n · s) for s special tokens, which is fast for the few
//! hundred special tokens of Llama-family vocabularies.

use super::vocab::{TokenType, Vocab};

/// A run of input: text still to tokenize, or a token already decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fragment<'t> {
    Text(&'t str),
    Token(u32),
}

/// Splits `text` at the special tokens `parse_special` allows, appending the fragments.
///
/// `by_length` is [`Vocab::special_tokens_by_length`].
pub(crate) fn partition<'t>(
    vocab: &Vocab,
    by_length: &[u32],
    text: &'t str,
    parse_special: bool,
    out: &mut Vec<Fragment<'t>>,
) {
    if text.is_empty() {
        return;
    }
    let mut frags = vec![Fragment::Text(text)];
    let mut next = Vec::new();
    for &id in by_length {
        let allowed = match vocab.token_type(id) {
            Some(TokenType::UserDefined) => true,
            Some(TokenType::Control | TokenType::Unknown) => parse_special,
            _ => false,
        };
        let Some(special) = vocab.text(id).filter(|s| allowed && !s.is_empty()) else {
            continue;
        };
        // One pass over the whole input rules out most tokens cheaply.
        if !text.contains(special) {
            continue;
        }
        next.clear();
        for frag in frags.drain(..) {
            let Fragment::Text(mut rest) = frag else {
                next.push(frag);
                continue;
            };
            while let Some(at) = rest.find(special) {
                if at > 0 {
                    next.push(Fragment::Text(&rest[..at]));
                }
                next.push(Fragment::Token(id));
                rest = &rest[at + special.len()..];
            }
            if !rest.is_empty() {
                next.push(Fragment::Text(rest));
            }
        }
        std::mem::swap(&mut frags, &mut next);
    }
    out.append(&mut frags);
}
