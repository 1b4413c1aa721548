//! Properties of the tokenizers on the conformance vocabularies (Llama 2 SentencePiece,
//! Llama 3 byte-level BPE):
//!
//! - round trip: `decode(encode(s, add_special, false)) == s` for any string (for SPM,
//!   strings without `▁` U+2581, which SentencePiece reads back as a space; these
//!   vocabularies have no user-defined tokens);
//! - plain text (`parse_special = false`) never yields a control or unknown token;
//! - `encode_segments` of plain pieces equals `encode` of their concatenation;
//! - [`StreamDecoder`] output, however the input is split, equals the lossy UTF-8
//!   decoding of all the bytes.

use std::sync::OnceLock;

use proptest::prelude::*;
use woolly_model::gguf::GgufFile;
use woolly_model::paths::conformance_file;
use woolly_model::tokenizer::{Segment, StreamDecoder, TokenType, Tokenizer};

fn load(name: &str) -> Tokenizer {
    let path = conformance_file(&format!("vocab/ggml-vocab-{name}.gguf"));
    Tokenizer::from_gguf(&GgufFile::open(path).unwrap()).unwrap()
}

fn spm() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| load("llama-spm"))
}

fn bpe() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| load("llama-bpe"))
}

/// Arbitrary Unicode, text-like ASCII with whitespace and punctuation, and special-token
/// look-alikes.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9 .,;:'\"!?()\\n\\t\\r-]{0,80}",
        "[ \\t\\n\\r\\u{a0}\\u{3000}a1'é]{0,40}",
        "(<s>|</s>|<unk>|<\\|eot_id\\|>|<\\|begin_of_text\\|>|<0x41>|[a ]){0,20}",
        "\\PC{0,40}",
    ]
}

fn no_control(tok: &Tokenizer, ids: &[u32]) -> bool {
    ids.iter().all(|&id| {
        !matches!(
            tok.token_type(id),
            Some(TokenType::Control | TokenType::Unknown) | None
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn spm_roundtrip(s in text().prop_filter("no U+2581", |s| !s.contains('\u{2581}')), bos in any::<bool>()) {
        let tok = spm();
        let ids = tok.encode(&s, bos, false).unwrap();
        prop_assert_eq!(tok.decode(&ids).unwrap(), s.clone());
        let body = if bos { &ids[1..] } else { &ids[..] };
        prop_assert!(no_control(tok, body), "{:?} -> {:?}", s, ids);
    }

    #[test]
    fn bpe_roundtrip(s in text(), bos in any::<bool>()) {
        let tok = bpe();
        let ids = tok.encode(&s, bos, false).unwrap();
        prop_assert_eq!(tok.decode(&ids).unwrap(), s.clone());
        let body = if bos { &ids[1..] } else { &ids[..] };
        prop_assert!(no_control(tok, body), "{:?} -> {:?}", s, ids);
    }

    #[test]
    fn plain_segments_tokenize_as_one_string(a in text(), b in text(), c in text()) {
        for tok in [spm(), bpe()] {
            let joined = format!("{a}{b}{c}");
            let whole = tok.encode(&joined, true, false).unwrap();
            let parts = tok
                .encode_segments(&[Segment::plain(&a), Segment::plain(&b), Segment::plain(&c)], true)
                .unwrap();
            prop_assert_eq!(whole, parts);
        }
    }

    #[test]
    fn special_segments_only_parse_where_allowed(user in text()) {
        let tok = bpe();
        let ids = tok
            .encode_segments(
                &[
                    Segment::special("<|start_header_id|>user<|end_header_id|>\n\n"),
                    Segment::plain(&user),
                    Segment::special("<|eot_id|>"),
                ],
                true,
            )
            .unwrap();
        let control = ids.iter().filter(|&&id| tok.token_type(id) == Some(TokenType::Control)).count();
        prop_assert_eq!(control, 4); // BOS, two header markers, end of turn
        prop_assert_eq!(*ids.last().unwrap(), tok.token_id("<|eot_id|>").unwrap());
    }

    #[test]
    fn stream_decoder_equals_lossy_decoding(bytes in proptest::collection::vec(any::<u8>(), 0..200), cuts in proptest::collection::vec(0usize..200, 0..20)) {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
        cuts.push(0);
        cuts.push(bytes.len());
        cuts.sort_unstable();
        let mut s = StreamDecoder::new();
        let mut out = String::new();
        for w in cuts.windows(2) {
            out.push_str(&s.push_bytes(&bytes[w[0]..w[1]]));
            prop_assert!(s.pending().len() <= 3);
        }
        out.push_str(&s.finish());
        prop_assert_eq!(out, String::from_utf8_lossy(&bytes).into_owned());
    }

    #[test]
    fn stream_decoder_over_tokens(ids in proptest::collection::vec(0u32..128_256, 0..64)) {
        let tok = bpe();
        let mut s = StreamDecoder::new();
        let mut out = String::new();
        for &id in &ids {
            out.push_str(&s.push(tok, id).unwrap());
        }
        out.push_str(&s.finish());
        prop_assert_eq!(out, String::from_utf8_lossy(&tok.decode_bytes(&ids, false).unwrap()).into_owned());
    }
}

#[test]
fn stream_decoder_emits_characters_as_soon_as_complete() {
    let tok = bpe();
    // "🦙" is 4 bytes; Llama 3 writes it as several byte-level tokens.
    let ids = tok.encode("🦙!", false, false).unwrap();
    assert!(ids.len() >= 3, "{ids:?}");
    let mut s = StreamDecoder::new();
    let outs: Vec<String> = ids.iter().map(|&id| s.push(tok, id).unwrap()).collect();
    assert!(
        outs[..outs.len() - 2].iter().all(String::is_empty),
        "{outs:?}"
    );
    assert_eq!(outs.concat(), "🦙!");
    assert!(s.push(tok, u32::MAX).is_err());
    assert_eq!(s.finish(), "");
}
