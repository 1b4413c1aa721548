//! Decoding a token stream into text as it is generated.
//!
//! A token may end in the middle of a UTF-8 character (byte tokens, or BPE tokens that
//! hold part of a multi-byte character), so text cannot be emitted token by token.
//! [`StreamDecoder`] holds back an incomplete sequence at the end of what it has seen
//! until the bytes that complete it arrive, and turns invalid sequences into U+FFFD.
//! The text it emits, concatenated, always equals `String::from_utf8_lossy` of all the
//! bytes pushed (one U+FFFD per maximal invalid subpart, as the Unicode standard
//! recommends), however the bytes were split between calls.

use super::{Tokenizer, TokenizerError};

/// Turns token ids (or raw bytes) into text incrementally, never splitting a character.
///
/// ```no_run
/// # use woolly_model::tokenizer::{StreamDecoder, Tokenizer};
/// # fn demo(tok: &Tokenizer, generated: &[u32]) -> Result<(), Box<dyn std::error::Error>> {
/// let mut stream = StreamDecoder::new();
/// for &id in generated {
///     print!("{}", stream.push(tok, id)?);
/// }
/// print!("{}", stream.finish());
/// # Ok(()) }
/// ```
///
/// Each token renders as [`Tokenizer::decode`] renders it (control tokens as nothing
/// unless [`StreamDecoder::render_special`] is set), except that no leading space is
/// removed: a stream continues text that came before it.
#[derive(Clone, Debug, Default)]
pub struct StreamDecoder {
    /// Bytes of an incomplete UTF-8 sequence (at most 3).
    pending: Vec<u8>,
    render_special: bool,
}

impl StreamDecoder {
    /// A decoder that renders control tokens as nothing.
    pub fn new() -> StreamDecoder {
        StreamDecoder::default()
    }

    /// Whether control and unknown tokens render as their text (default false).
    pub fn render_special(mut self, yes: bool) -> StreamDecoder {
        self.render_special = yes;
        self
    }

    /// Adds the bytes of token `id` and returns the text now complete (possibly empty).
    /// An id outside the vocabulary is an error and changes nothing.
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String, TokenizerError> {
        let piece = tokenizer.piece(id, self.render_special)?;
        Ok(self.push_bytes(piece))
    }

    /// Adds raw bytes and returns the text now complete (possibly empty).
    pub fn push_bytes(&mut self, bytes: &[u8]) -> String {
        let mut out = String::new();
        if self.pending.is_empty() {
            let rest = decode_prefix(bytes, &mut out);
            self.pending.extend_from_slice(rest);
        } else {
            let mut buf = std::mem::take(&mut self.pending);
            buf.extend_from_slice(bytes);
            let rest = decode_prefix(&buf, &mut out);
            self.pending = rest.to_vec();
        }
        out
    }

    /// Bytes held back: the start of a character whose remaining bytes have not come yet.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Ends the stream: an incomplete character left over becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

/// Decodes `bytes` into `out`, replacing invalid sequences with U+FFFD, and returns the
/// incomplete sequence at the end, if any, undecoded.
fn decode_prefix<'b>(mut bytes: &'b [u8], out: &mut String) -> &'b [u8] {
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.push_str(s);
                return &[];
            }
            Err(e) => {
                let (valid, rest) = bytes.split_at(e.valid_up_to());
                // `valid` is valid UTF-8 by the definition of `valid_up_to`.
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                match e.error_len() {
                    Some(n) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        bytes = &rest[n..];
                    }
                    None => return rest,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_split_characters() {
        let mut s = StreamDecoder::new();
        let euro = "€".as_bytes();
        assert_eq!(s.push_bytes(&euro[..1]), "");
        assert_eq!(s.push_bytes(&euro[1..2]), "");
        assert_eq!(s.pending().len(), 2);
        assert_eq!(s.push_bytes(&euro[2..]), "€");
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut s = StreamDecoder::new();
        assert_eq!(s.push_bytes(b"a\xffb"), "a\u{fffd}b");
        assert_eq!(s.push_bytes(b"\xe2\x82"), "");
        assert_eq!(s.push_bytes(b"x"), "\u{fffd}x");
        assert_eq!(s.push_bytes(b"\xf0\x9f"), "");
        assert_eq!(s.finish(), "\u{fffd}");
    }
}
