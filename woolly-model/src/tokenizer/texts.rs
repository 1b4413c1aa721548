//! The vocabulary's strings, stored once, found by id or by text.

use std::collections::hash_map::Entry;
use std::hash::{BuildHasher, BuildHasherDefault};

use super::hash::{FxHashMap, FxHasher};

/// Token strings in one buffer, with a table from each string's hash to its id.
///
/// A `Vec<String>` beside a `HashMap<String, u32>` holds two heap strings per token: for
/// SmolLM2's 49,152 tokens about 4 MB more than this (one buffer, its offsets, and a
/// table of 12-byte entries).
pub(crate) struct TextTable {
    /// Every token's string, concatenated: token `i` is `buf[starts[i]..starts[i + 1]]`.
    buf: String,
    /// (len + 1,)
    starts: Vec<usize>,
    /// A string's hash to the first token with that hash.
    by_hash: FxHashMap<u64, u32>,
    /// Tokens whose hash an earlier, different string already has (none in real files;
    /// a crafted vocabulary may have some).
    collided: FxHashMap<String, u32>,
}

fn hash(text: &str) -> u64 {
    BuildHasherDefault::<FxHasher>::default().hash_one(text)
}

impl TextTable {
    /// An empty table with room for `n` tokens.
    pub fn with_capacity(n: usize) -> TextTable {
        let mut starts = Vec::with_capacity(n + 1);
        starts.push(0);
        let mut by_hash = FxHashMap::default();
        by_hash.reserve(n);
        TextTable {
            buf: String::new(),
            starts,
            by_hash,
            collided: FxHashMap::default(),
        }
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    /// The string of token `id`.
    pub fn text(&self, id: u32) -> Option<&str> {
        let i = id as usize;
        (i < self.len()).then(|| &self.buf[self.starts[i]..self.starts[i + 1]])
    }

    /// The id of the token whose string is exactly `text`.
    #[inline]
    pub fn get(&self, text: &str) -> Option<u32> {
        match self.by_hash.get(&hash(text)) {
            Some(&id) if self.text(id) == Some(text) => Some(id),
            Some(_) => self.collided.get(text).copied(),
            None => None,
        }
    }

    /// Adds `text` as the next token, returning its id. The caller checks first that
    /// `text` is not already there ([`TextTable::get`]).
    pub fn push(&mut self, text: &str) -> u32 {
        let id = u32::try_from(self.len()).expect("a GGUF array has fewer than 2^32 items");
        match self.by_hash.entry(hash(text)) {
            Entry::Vacant(e) => {
                e.insert(id);
            }
            Entry::Occupied(_) => {
                self.collided.insert(text.to_owned(), id);
            }
        }
        self.buf.push_str(text);
        self.starts.push(self.buf.len());
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every string is found by id and by text, colliding hashes included (forced here
    /// by pushing into `collided` directly), and absent strings are not found.
    #[test]
    fn finds_every_string_and_no_other() {
        let words = ["a", "ab", "", "▁the", "<|im_start|>", "ba", "abc"];
        let mut t = TextTable::with_capacity(words.len());
        for (i, w) in words.iter().enumerate() {
            assert_eq!(t.get(w), None, "{w:?} before it is added");
            assert_eq!(t.push(w), i as u32);
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

        // A string whose hash slot holds another token is looked up among the collided.
        let id = t.len() as u32;
        t.buf.push_str("zz");
        t.starts.push(t.buf.len());
        t.collided.insert("zz".into(), id);
        t.by_hash.insert(hash("zz"), 0);
        assert_eq!(t.get("zz"), Some(id));
        assert_eq!(t.get("a"), Some(0));
    }
}
