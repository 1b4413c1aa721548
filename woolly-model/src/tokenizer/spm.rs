//! SentencePiece-style tokenization (`tokenizer.ggml.model = "llama"`).
//!
//! The algorithm is llama.cpp's `llm_tokenizer_spm_session` (`src/llama-vocab.cpp`,
//! itself from the original LLaMA tokenizer port): the text (spaces already written as
//! `▁`) starts as one symbol per character; every adjacent pair whose concatenation is a
//! token goes into a priority queue keyed by that token's score (highest first, then
//! leftmost); popping a pair merges it and queues the new pairs on either side. Symbols
//! form a linked list, stale queue entries are recognized by their lengths, and pairs
//! longer than the longest token are never looked up, so n characters cost
//! O(n log n · max token length).
//!
//! A final symbol that is not a token is written as byte tokens `<0xHH>` (byte
//! fallback), or as the unknown token where the vocabulary lacks a byte token.
//!
//! Unlike llama.cpp, only tokens that plain text may produce (normal, user-defined,
//! unused, undefined) take part: a run of characters spelling `</s>` or `<0x0A>` never
//! merges into the control or byte token of that name (SentencePiece itself behaves
//! this way: such pieces are reserved, never matched).

use std::collections::BinaryHeap;

use super::TokenizerError;
use super::vocab::Vocab;

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Symbol {
    start: u32,
    len: u32,
    prev: u32,
    next: u32,
}

#[derive(Clone, Copy, Debug)]
struct Pair {
    score: f32,
    left: u32,
    right: u32,
    size: u32,
}

impl PartialEq for Pair {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Pair {}

impl Ord for Pair {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // BinaryHeap pops the greatest: highest score first, then the leftmost pair.
        self.score
            .total_cmp(&other.score)
            .then(other.left.cmp(&self.left))
    }
}

impl PartialOrd for Pair {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Tokenizes `text` (spaces already escaped as `▁`), appending ids to `out`.
pub(crate) fn encode(vocab: &Vocab, text: &str, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
    if text.is_empty() {
        return Ok(());
    }
    if text.len() >= NONE as usize {
        return Err(TokenizerError::InputTooLong(text.len()));
    }
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    for (i, (start, c)) in text.char_indices().enumerate() {
        let i = i as u32;
        symbols.push(Symbol {
            start: start as u32,
            len: c.len_utf8() as u32,
            prev: if i == 0 { NONE } else { i - 1 },
            next: i + 1,
        });
    }
    if let Some(last) = symbols.last_mut() {
        last.next = NONE;
    }

    let mut heap = BinaryHeap::with_capacity(symbols.len());
    for i in 1..symbols.len() as u32 {
        push_pair(vocab, text, &symbols, &mut heap, i - 1, i);
    }
    while let Some(pair) = heap.pop() {
        let (l, r) = (symbols[pair.left as usize], symbols[pair.right as usize]);
        if l.len == 0 || r.len == 0 || l.len + r.len != pair.size {
            continue; // one side merged since this pair was queued
        }
        let left = &mut symbols[pair.left as usize];
        left.len += r.len;
        left.next = r.next;
        symbols[pair.right as usize].len = 0;
        if r.next != NONE {
            symbols[r.next as usize].prev = pair.left;
        }
        if l.prev != NONE {
            push_pair(vocab, text, &symbols, &mut heap, l.prev, pair.left);
        }
        if r.next != NONE {
            push_pair(vocab, text, &symbols, &mut heap, pair.left, r.next);
        }
    }

    for s in symbols.iter().filter(|s| s.len > 0) {
        let piece = &text[s.start as usize..(s.start + s.len) as usize];
        match vocab.mergeable_id(piece) {
            Some(id) => out.push(id),
            None => {
                for b in piece.bytes() {
                    let id = vocab
                        .byte_token(b)
                        .or(vocab.special.unk)
                        .ok_or(TokenizerError::NoByteToken { byte: b })?;
                    out.push(id);
                }
            }
        }
    }
    Ok(())
}

#[inline]
fn push_pair(
    vocab: &Vocab,
    text: &str,
    symbols: &[Symbol],
    heap: &mut BinaryHeap<Pair>,
    left: u32,
    right: u32,
) {
    let (l, r) = (symbols[left as usize], symbols[right as usize]);
    let size = l.len + r.len;
    if size as usize > vocab.max_token_len {
        return;
    }
    let start = l.start as usize;
    let piece = &text[start..start + size as usize];
    if let Some(id) = vocab.mergeable_id(piece) {
        heap.push(Pair {
            score: vocab.score(id),
            left,
            right,
            size,
        });
    }
}
