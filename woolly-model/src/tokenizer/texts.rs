//! The vocabulary's strings, stored once, found by id or by text.

use std::hash::{BuildHasher, BuildHasherDefault};

use hashbrown::HashTable;

use super::hash::FxHasher;

/// Token strings in one buffer, with a hash table of token ids keyed by their strings.
///
/// A `Vec<String>` beside a `HashMap<String, u32>` holds two heap strings per token: for
/// SmolLM2's 49,152 tokens about 5 MB more than this (one buffer, its `u32` offsets,
/// and a table of 4-byte ids that hashes a token's string again when it grows).
pub(crate) struct TextTable {
    /// Every token's string, concatenated: token `i` is `buf[starts[i]..starts[i + 1]]`.
    buf: String,
    /// (len + 1,)
    starts: Vec<u32>,
    /// Every token's id, placed by the hash of its string.
    ids: HashTable<u32>,
}

fn hash(text: &str) -> u64 {
    BuildHasherDefault::<FxHasher>::default().hash_one(text)
}

/// Token `id`'s string in `buf` (the free-function form lets the table's closures
/// borrow `buf` and `starts` while the table itself is borrowed mutably).
fn text_of<'a>(buf: &'a str, starts: &[u32], id: u32) -> &'a str {
    let i = id as usize;
    &buf[starts[i] as usize..starts[i + 1] as usize]
}

/// The strings of a table outgrow its `u32` offsets (more than 4 GiB of text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLarge;

impl TextTable {
    /// An empty table with room for `n` tokens of `text_bytes` bytes in all.
    pub fn with_capacity(n: usize, text_bytes: usize) -> TextTable {
        let mut starts = Vec::with_capacity(n + 1);
        starts.push(0);
        TextTable {
            buf: String::with_capacity(text_bytes),
            starts,
            ids: HashTable::with_capacity(n),
        }
    }

    /// Bytes of every token's string together.
    pub fn text_len(&self) -> usize {
        self.buf.len()
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    /// The string of token `id`.
    pub fn text(&self, id: u32) -> Option<&str> {
        ((id as usize) < self.len()).then(|| text_of(&self.buf, &self.starts, id))
    }

    /// The id of the token whose string is exactly `text`.
    #[inline]
    pub fn get(&self, text: &str) -> Option<u32> {
        self.ids
            .find(hash(text), |&id| {
                text_of(&self.buf, &self.starts, id) == text
            })
            .copied()
    }

    /// Adds `text` as the next token, returning its id. The caller checks first that
    /// `text` is not already there ([`TextTable::get`]).
    pub fn push(&mut self, text: &str) -> Result<u32, TooLarge> {
        let id = u32::try_from(self.len()).map_err(|_| TooLarge)?;
        let end = u32::try_from(self.buf.len() + text.len()).map_err(|_| TooLarge)?;
        self.buf.push_str(text);
        self.starts.push(end);
        let (buf, starts) = (&self.buf, &self.starts);
        self.ids
            .insert_unique(hash(text), id, |&id| hash(text_of(buf, starts, id)));
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every string is found by id and by text, and absent strings are not found.
    #[test]
    fn finds_every_string_and_no_other() {
        let words = ["a", "ab", "", "▁the", "<|im_start|>", "ba", "abc"];
        let mut t = TextTable::with_capacity(2, 0);
        for (i, w) in words.iter().enumerate() {
            assert_eq!(t.get(w), None, "{w:?} before it is added");
            assert_eq!(t.push(w), Ok(i as u32));
        }
        assert_eq!(t.len(), words.len());
        for (i, w) in words.iter().enumerate() {
            assert_eq!(t.text(i as u32), Some(*w));
            assert_eq!(t.get(w), Some(i as u32), "{w:?}");
        }
        for absent in ["b", "abcd", "▁", "<|im_start|"] {
            assert_eq!(t.get(absent), None, "{absent:?}");
        }
        assert_eq!(t.text(words.len() as u32), None);
    }

    /// Thousands of strings, so the table grows (rehashing by the stored strings) many
    /// times, all found again.
    #[test]
    fn growth_keeps_every_string() {
        let words: Vec<String> = (0..5000).map(|i| format!("w{i:x}")).collect();
        let mut t = TextTable::with_capacity(0, 0);
        for (i, w) in words.iter().enumerate() {
            assert_eq!(t.push(w), Ok(i as u32));
        }
        for (i, w) in words.iter().enumerate() {
            assert_eq!(t.get(w), Some(i as u32));
        }
        assert_eq!(t.get("w"), None);
    }
}
