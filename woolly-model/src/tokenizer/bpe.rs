//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`): GPT-2's byte-to-character mapping
//! and ranked merges within one pre-tokenized word.
//!
//! The merge loop is llama.cpp's `llm_tokenizer_bpe_session::tokenize`
//! (`src/llama-vocab.cpp`): the word starts as one symbol per character, every adjacent
//! pair with a merge rule goes into a priority queue (lowest rank first, then leftmost),
//! and popping a pair merges it and queues the new pairs on either side. Symbols form a
//! linked list over the word, stale queue entries are recognized by their lengths, so a
//! word of n characters costs O(n log n) however long it is.
//!
//! Merge rules are keyed by interned string ids rather than by strings: every vocabulary
//! string is interned as its token id, and every other string a rule mentions gets an id
//! past the vocabulary. A symbol carries the id of its text, so finding a pair's rule is
//! one hash lookup of two integers, with no allocation.

use std::collections::BinaryHeap;

use super::hash::FxHashMap;
use super::vocab::Vocab;

/// Characters standing for bytes: bytes that are printable and not a space stand for
/// themselves (`!`..`~`, `¡`..`¬`, `®`..`ÿ`); the other 68 take U+0100 onwards in order.
const BYTE_TO_CHAR: [char; 256] = build_byte_to_char();

const fn is_self_mapped(b: u32) -> bool {
    (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
}

const fn build_byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    let mut b = 0u32;
    while b < 256 {
        let cp = if is_self_mapped(b) {
            b
        } else {
            next += 1;
            next - 1
        };
        table[b as usize] = match char::from_u32(cp) {
            Some(c) => c,
            None => panic!("byte table"),
        };
        b += 1;
    }
    table
}

/// The inverse of [`BYTE_TO_CHAR`], indexed by code point (all lie below U+0144).
const CHAR_TO_BYTE: [i16; 0x144] = build_char_to_byte();

const fn build_char_to_byte() -> [i16; 0x144] {
    let mut table = [-1i16; 0x144];
    let mut b = 0;
    while b < 256 {
        table[BYTE_TO_CHAR[b] as usize] = b as i16;
        b += 1;
    }
    table
}

/// The character GPT-2's byte-level encoding writes for byte `b`.
#[inline]
pub(crate) fn byte_encode(b: u8) -> char {
    BYTE_TO_CHAR[b as usize]
}

/// The byte a character of GPT-2's byte-level encoding stands for, if any.
#[inline]
pub(crate) fn byte_decode_char(c: char) -> Option<u8> {
    let v = *CHAR_TO_BYTE.get(c as usize)?;
    u8::try_from(v).ok()
}

/// Appends the byte-level encoding of `text` to `out`.
pub(crate) fn byte_encode_into(text: &str, out: &mut String) {
    out.reserve(text.len() * 2);
    out.extend(text.bytes().map(byte_encode));
}

const NONE: u32 = u32::MAX;

/// One rule: the rank (lower merges first) and the interned id of the merged string.
#[derive(Clone, Copy, Debug)]
struct Rule {
    rank: u32,
    result: u32,
}

/// The merge rules of a vocabulary.
pub(crate) struct BpeModel {
    /// Interned strings that are not vocabulary tokens, with ids from `n_vocab` up.
    extra: FxHashMap<String, u32>,
    /// Rules by `(left id) << 32 | (right id)`.
    rules: FxHashMap<u64, Rule>,
    n_vocab: u32,
    /// Look a whole word up in the vocabulary before merging (llama3 and friends).
    pub ignore_merges: bool,
}

/// A symbol: a run of the word, the id of its text (or `NONE`), and its neighbours.
#[derive(Clone, Copy, Debug)]
struct Symbol {
    start: u32,
    len: u32,
    id: u32,
    prev: u32,
    next: u32,
}

/// A candidate merge in the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pair {
    rank: u32,
    left: u32,
    right: u32,
    size: u32,
    result: u32,
}

impl Ord for Pair {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // BinaryHeap pops the greatest: lowest rank first, then the leftmost pair.
        other.rank.cmp(&self.rank).then(other.left.cmp(&self.left))
    }
}

impl PartialOrd for Pair {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Buffers reused from word to word.
#[derive(Default)]
pub(crate) struct Scratch {
    symbols: Vec<Symbol>,
    heap: BinaryHeap<Pair>,
}

impl BpeModel {
    /// Reads `tokenizer.ggml.merges`. A rule is split at the first space after its first
    /// byte (as llama.cpp does); rules without one are ignored, and of two identical
    /// rules the first (lower rank) wins.
    pub fn new(vocab: &Vocab, merges: &[String], ignore_merges: bool) -> BpeModel {
        let n_vocab = vocab.len() as u32;
        let mut model = BpeModel {
            extra: FxHashMap::default(),
            rules: FxHashMap::default(),
            n_vocab,
            ignore_merges,
        };
        model.rules.reserve(merges.len());
        for (rank, rule) in merges.iter().enumerate() {
            // (Rules past the 2^32nd, in an absurd file, share the last rank.)
            let rank = u32::try_from(rank).unwrap_or(u32::MAX);
            let Some(space) = rule.as_bytes().iter().skip(1).position(|&b| b == b' ') else {
                continue;
            };
            let (left, right) = (&rule[..space + 1], &rule[space + 2..]);
            let l = model.intern(vocab, left);
            let r = model.intern(vocab, right);
            let merged = format!("{left}{right}");
            let result = model.intern(vocab, &merged);
            model
                .rules
                .entry(pair_key(l, r))
                .or_insert(Rule { rank, result });
        }
        model
    }

    fn intern(&mut self, vocab: &Vocab, s: &str) -> u32 {
        if let Some(id) = vocab.id(s) {
            return id;
        }
        let next = self.n_vocab.saturating_add(self.extra.len() as u32);
        *self.extra.entry(s.to_owned()).or_insert(next)
    }

    #[inline]
    fn lookup(&self, vocab: &Vocab, s: &str) -> u32 {
        vocab
            .id(s)
            .or_else(|| self.extra.get(s).copied())
            .unwrap_or(NONE)
    }

    /// Tokenizes one word, already in byte-level encoding, appending ids to `out`.
    pub fn encode_word(
        &self,
        vocab: &Vocab,
        word: &str,
        scratch: &mut Scratch,
        out: &mut Vec<u32>,
    ) {
        if word.is_empty() {
            return;
        }
        if self.ignore_merges
            && let Some(id) = vocab.mergeable_id(word)
        {
            out.push(id);
            return;
        }

        let symbols = &mut scratch.symbols;
        symbols.clear();
        for (i, (start, c)) in word.char_indices().enumerate() {
            let i = i as u32;
            let len = c.len_utf8();
            symbols.push(Symbol {
                start: start as u32,
                len: len as u32,
                id: self.lookup(vocab, &word[start..start + len]),
                prev: if i == 0 { NONE } else { i - 1 },
                next: i + 1,
            });
        }
        if let Some(last) = symbols.last_mut() {
            last.next = NONE;
        }

        let heap = &mut scratch.heap;
        heap.clear();
        for i in 1..symbols.len() as u32 {
            self.push_pair(symbols, heap, i - 1, i);
        }
        while let Some(pair) = heap.pop() {
            let (l, r) = (symbols[pair.left as usize], symbols[pair.right as usize]);
            if l.len == 0 || r.len == 0 || l.len + r.len != pair.size {
                continue; // one side merged since this pair was queued
            }
            let left = &mut symbols[pair.left as usize];
            left.len += r.len;
            left.id = pair.result;
            left.next = r.next;
            symbols[pair.right as usize].len = 0;
            if r.next != NONE {
                symbols[r.next as usize].prev = pair.left;
            }
            if l.prev != NONE {
                self.push_pair(symbols, heap, l.prev, pair.left);
            }
            if r.next != NONE {
                self.push_pair(symbols, heap, pair.left, r.next);
            }
        }

        for s in symbols.iter().filter(|s| s.len > 0) {
            let text = &word[s.start as usize..(s.start + s.len) as usize];
            let token = (s.id < self.n_vocab)
                .then_some(s.id)
                .filter(|&id| vocab.token_type(id).is_some_and(|t| t.is_mergeable()));
            match token {
                Some(id) => out.push(id),
                None => {
                    // No token for this text: one token per byte of its encoding where
                    // one exists; other bytes are dropped, as llama.cpp does.
                    for b in text.bytes() {
                        let one = [b];
                        if let Some(id) = std::str::from_utf8(&one)
                            .ok()
                            .and_then(|s| vocab.mergeable_id(s))
                        {
                            out.push(id);
                        }
                    }
                }
            }
        }
    }

    #[inline]
    fn push_pair(&self, symbols: &[Symbol], heap: &mut BinaryHeap<Pair>, left: u32, right: u32) {
        let (l, r) = (symbols[left as usize], symbols[right as usize]);
        if l.id == NONE || r.id == NONE {
            return;
        }
        if let Some(rule) = self.rules.get(&pair_key(l.id, r.id)) {
            heap.push(Pair {
                rank: rule.rank,
                left,
                right,
                size: l.len + r.len,
                result: rule.result,
            });
        }
    }
}

#[inline]
fn pair_key(l: u32, r: u32) -> u64 {
    (u64::from(l) << 32) | u64::from(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_a_bijection() {
        for b in 0..=255u8 {
            assert_eq!(byte_decode_char(byte_encode(b)), Some(b));
        }
        assert_eq!(byte_encode(b' '), 'Ġ');
        assert_eq!(byte_encode(b'\n'), 'Ċ');
        assert_eq!(byte_encode(b'a'), 'a');
        assert_eq!(byte_decode_char('€'), None);
    }
}
