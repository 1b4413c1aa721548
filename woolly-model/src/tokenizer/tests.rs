//! Unit tests on small hand-made vocabularies.

use super::*;
use crate::gguf::{Array, Value};

fn strings(v: &[&str]) -> Value {
    Value::Array(Array::String(v.iter().map(|s| s.to_string()).collect()))
}

fn metadata(pairs: Vec<(&str, Value)>) -> Metadata {
    let mut md = Metadata::default();
    for (k, v) in pairs {
        md.insert(k.to_owned(), v).unwrap();
    }
    md
}

/// An SPM vocabulary: `<unk>`, `<s>`, `</s>`, 256 byte tokens (ids 3..259), then
/// `pieces` (text, score, type).
fn spm_pairs(pieces: &[(&str, f32, i32)]) -> Vec<(&'static str, Value)> {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut scores = vec![0.0f32; 3];
    let mut types = vec![2, 3, 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        scores.push(0.0);
        types.push(6);
    }
    for &(t, s, ty) in pieces {
        tokens.push(t.to_owned());
        scores.push(s);
        types.push(ty);
    }
    vec![
        (keys::MODEL, Value::String("llama".into())),
        (keys::TOKENS, Value::Array(Array::String(tokens))),
        (keys::SCORES, Value::Array(Array::F32(scores))),
        (keys::TOKEN_TYPE, Value::Array(Array::I32(types))),
        (keys::BOS_ID, Value::U32(1)),
        (keys::EOS_ID, Value::U32(2)),
        (keys::UNK_ID, Value::U32(0)),
    ]
}

fn spm(pieces: &[(&str, f32, i32)]) -> Tokenizer {
    Tokenizer::from_metadata(&metadata(spm_pairs(pieces))).unwrap()
}

fn ids(tok: &Tokenizer, texts: &[&str]) -> Vec<u32> {
    texts
        .iter()
        .map(|t| tok.token_id(t).unwrap_or_else(|| panic!("no token {t:?}")))
        .collect()
}

#[test]
fn spm_merges_highest_score_first() {
    let pieces = [
        ("▁", -5.0, 1),
        ("a", -5.0, 1),
        ("b", -5.0, 1),
        ("▁a", -1.0, 1),
        ("ab", -0.5, 1),
    ];
    let tok = spm(&pieces);
    // "ab" outranks "▁a"; nothing joins "▁" and "ab".
    assert_eq!(
        tok.encode("ab", false, false).unwrap(),
        ids(&tok, &["▁", "ab"])
    );
    let mut more = pieces.to_vec();
    more.push(("▁ab", -2.0, 1));
    let tok = spm(&more);
    assert_eq!(tok.encode("ab", false, false).unwrap(), ids(&tok, &["▁ab"]));
    assert_eq!(
        tok.decode(&tok.encode("ab", true, false).unwrap()).unwrap(),
        "ab"
    );
}

#[test]
fn spm_ties_go_to_the_leftmost_pair() {
    let tok = spm(&[("▁", -5.0, 1), ("a", -5.0, 1), ("aa", -1.0, 1)]);
    assert_eq!(
        tok.encode("aaa", false, false).unwrap(),
        ids(&tok, &["▁", "aa", "a"])
    );
}

#[test]
fn spm_byte_fallback_and_unknown() {
    let tok = spm(&[("▁", -5.0, 1)]);
    assert_eq!(
        tok.encode("é", false, false).unwrap(),
        ids(&tok, &["▁", "<0xC3>", "<0xA9>"])
    );
    assert_eq!(
        tok.decode(&tok.encode("é\n", false, false).unwrap())
            .unwrap(),
        "é\n"
    );

    // Without byte tokens, bytes fall back to <unk>.
    let md = metadata(vec![
        (keys::MODEL, Value::String("llama".into())),
        (keys::TOKENS, strings(&["<unk>", "<s>", "</s>", "▁"])),
        (keys::TOKEN_TYPE, Value::Array(Array::I32(vec![2, 3, 3, 1]))),
    ]);
    let tok = Tokenizer::from_metadata(&md).unwrap();
    assert_eq!(tok.encode("é", false, false).unwrap(), [3, 0, 0]);
}

#[test]
fn spm_plain_text_never_forms_control_or_byte_tokens() {
    let tok = spm(&[
        ("▁", -5.0, 1),
        ("<", -5.0, 1),
        ("/", -5.0, 1),
        ("s", -5.0, 1),
        (">", -5.0, 1),
        ("</", -1.0, 1),
        ("s>", -1.0, 1),
        ("<0x4", -1.0, 1),
        ("1>", -1.0, 1),
    ]);
    let plain = tok.encode("</s><0x41>", false, false).unwrap();
    // Characters without a normal token fall back to bytes, but "</s>" and "<0x41>" stay
    // text: no control token, no byte token standing for 'A'.
    assert!(
        !plain.iter().any(|&id| id <= 2 || id == 3 + 0x41),
        "{plain:?}"
    );
    assert_eq!(tok.decode(&plain).unwrap(), "</s><0x41>");
    // Parsed, the control token comes out, and a space goes before the text after it.
    assert_eq!(
        tok.encode("</s>s", false, true).unwrap(),
        ids(&tok, &["</s>", "▁", "s"])
    );
    assert_eq!(
        tok.encode("s</s>s", false, true).unwrap(),
        ids(&tok, &["▁", "s", "</s>", "▁", "s"])
    );
}

#[test]
fn spm_space_prefix_and_special_flags() {
    let tok = spm(&[("▁", -5.0, 1), ("a", -5.0, 1), ("▁a", -1.0, 1)]);
    assert!(tok.add_bos() && !tok.add_eos() && tok.add_space_prefix());
    assert_eq!(tok.encode("", true, false).unwrap(), [1]);
    assert_eq!(tok.encode("", false, false).unwrap(), Vec::<u32>::new());
    assert_eq!(
        tok.encode("a", true, false).unwrap(),
        [1, tok.token_id("▁a").unwrap()]
    );
    assert_eq!(
        tok.encode("<s>a", true, true).unwrap(),
        [1, 1, tok.token_id("▁a").unwrap()]
    );

    let mut pairs = spm_pairs(&[("a", -5.0, 1)]);
    pairs.push((keys::ADD_SPACE_PREFIX, Value::Bool(false)));
    pairs.push((keys::ADD_EOS, Value::Bool(true)));
    pairs.push((keys::ADD_BOS, Value::Bool(false)));
    let tok = Tokenizer::from_metadata(&metadata(pairs)).unwrap();
    let a = tok.token_id("a").unwrap();
    assert_eq!(tok.encode("a", true, false).unwrap(), [a, 2]);
    assert_eq!(tok.decode(&[a]).unwrap(), "a");
}

#[test]
fn decode_renders_pieces_and_rejects_bad_ids() {
    let tok = spm(&[("▁a", -1.0, 1), ("<ud>", 0.0, 4)]);
    let a = tok.token_id("▁a").unwrap();
    let ud = tok.token_id("<ud>").unwrap();
    assert_eq!(tok.decode(&[1, a, a, 2]).unwrap(), "a a");
    assert_eq!(tok.decode_bytes(&[1, a, 2], true).unwrap(), b"<s> a</s>");
    assert_eq!(tok.decode(&[ud]).unwrap(), "<ud>");
    assert_eq!(tok.token_bytes(a), Some(&b" a"[..]));
    assert_eq!(tok.token_bytes(3 + 0x41), Some(&b"A"[..]));
    assert_eq!(tok.token_bytes(99_999), None);
    let err = tok.decode(&[a, 99_999]).unwrap_err();
    assert!(
        matches!(err, TokenizerError::TokenOutOfRange { id: 99_999, .. }),
        "{err}"
    );
    assert!(tok.decode(&[u32::MAX]).is_err());
    // Invalid UTF-8 from byte tokens becomes U+FFFD.
    assert_eq!(tok.decode(&[3 + 0xff, 3 + 0x41]).unwrap(), "\u{fffd}A");
}

#[test]
fn user_defined_tokens_are_matched_in_plain_text() {
    let tok = spm(&[("▁", -5.0, 1), ("x", -5.0, 1), ("<ud>", 0.0, 4)]);
    let ud = tok.token_id("<ud>").unwrap();
    let x = tok.token_id("x").unwrap();
    let sp = tok.token_id("▁").unwrap();
    assert_eq!(
        tok.encode("x<ud>x", false, false).unwrap(),
        [sp, x, ud, sp, x]
    );
}

#[test]
fn end_of_generation_tokens_found_by_text() {
    let tok = spm(&[
        ("<|im_end|>", 0.0, 1),
        ("<|im_start|>", 0.0, 3),
        ("▁", 0.0, 1),
    ]);
    let end = tok.token_id("<|im_end|>").unwrap();
    assert!(tok.is_eog(end) && tok.is_eog(2));
    assert_eq!(tok.token_type(end), Some(TokenType::Control));
    assert_eq!(tok.eot(), Some(end));
    assert!(!tok.is_eog(tok.token_id("<|im_start|>").unwrap()));
    assert!(!tok.is_eog(1) && !tok.is_eog(u32::MAX));
    // Forced to control: plain text no longer produces it.
    assert!(
        !tok.encode("<|im_end|>", false, false)
            .unwrap()
            .contains(&end)
    );
    assert_eq!(tok.encode("<|im_end|>", false, true).unwrap(), [end]);
}

/// A byte-level BPE vocabulary: the 256 byte characters, then `extra` tokens, with
/// `merges`.
fn bpe_pairs(pre: &str, extra: &[(&str, i32)], merges: &[&str]) -> Vec<(&'static str, Value)> {
    let mut tokens: Vec<String> = (0..=255u8)
        .map(|b| bpe::byte_encode(b).to_string())
        .collect();
    let mut types = vec![1; 256];
    for &(t, ty) in extra {
        tokens.push(t.to_owned());
        types.push(ty);
    }
    vec![
        (keys::MODEL, Value::String("gpt2".into())),
        (keys::PRE, Value::String(pre.into())),
        (keys::TOKENS, Value::Array(Array::String(tokens))),
        (keys::TOKEN_TYPE, Value::Array(Array::I32(types))),
        (keys::MERGES, strings(merges)),
        (keys::BOS_ID, Value::U32(256)),
        (keys::EOS_ID, Value::U32(256)),
    ]
}

fn bpe_tok(pre: &str, extra: &[(&str, i32)], merges: &[&str]) -> Tokenizer {
    Tokenizer::from_metadata(&metadata(bpe_pairs(pre, extra, merges))).unwrap()
}

#[test]
fn bpe_merges_lowest_rank_first() {
    let extra = [
        ("<|endoftext|>", 3),
        ("ab", 1),
        ("bc", 1),
        ("abc", 1),
        ("Ġab", 1),
    ];
    let tok = bpe_tok("gpt-2", &extra, &["b c", "a b", "a bc", "Ġ ab"]);
    // "b c" (rank 0) beats "a b" (rank 1), then "a bc".
    assert_eq!(
        tok.encode("abc", false, false).unwrap(),
        ids(&tok, &["abc"])
    );
    assert_eq!(
        tok.encode("ab ab", false, false).unwrap(),
        ids(&tok, &["ab", "Ġab"])
    );
    let tok = bpe_tok("gpt-2", &extra, &["a b", "b c", "a bc"]);
    assert_eq!(
        tok.encode("abc", false, false).unwrap(),
        ids(&tok, &["ab", "c"])
    );
    assert_eq!(
        tok.decode(&tok.encode("abc ab\n", true, false).unwrap())
            .unwrap(),
        "abc ab\n"
    );
    assert!(!tok.add_bos());
    assert!(tok.is_eog(256));
}

#[test]
fn bpe_ignore_merges_takes_whole_words() {
    // llama3 looks a word up before merging: "abc" is a token though no merges lead there.
    let extra = [("<|begin_of_text|>", 3), ("abc", 1)];
    let tok = bpe_tok("llama3", &extra, &[]);
    assert!(tok.add_bos());
    assert_eq!(
        tok.encode("abc", true, false).unwrap(),
        [256, tok.token_id("abc").unwrap()]
    );
    let tok = bpe_tok("gpt-2", &extra, &[]);
    assert_eq!(tok.encode("abc", false, false).unwrap(), [97, 98, 99]);
}

#[test]
fn bpe_control_text_stays_text() {
    let extra = [
        ("<|im_start|>", 3),
        ("<|", 1),
        ("|>", 1),
        ("im", 1),
        ("_start", 1),
    ];
    let merges = [
        "< |", "| >", "i m", "_ s", "_s t", "_st a", "_sta r", "_star t",
    ];
    let mut extra_all = extra.to_vec();
    extra_all.extend([("_s", 1), ("_st", 1), ("_sta", 1), ("_star", 1)]);
    let tok = bpe_tok("llama3", &extra_all, &merges);
    let special = tok.token_id("<|im_start|>").unwrap();
    let plain = tok.encode("<|im_start|>", false, false).unwrap();
    assert!(!plain.contains(&special), "{plain:?}");
    assert_eq!(tok.decode(&plain).unwrap(), "<|im_start|>");
    assert_eq!(tok.encode("<|im_start|>", false, true).unwrap(), [special]);

    // A merge whose result is a control token's text falls back to the parts' bytes.
    let tok = bpe_tok("gpt-2", &[("xy", 3)], &["x y"]);
    assert_eq!(
        tok.encode("xy", false, false).unwrap(),
        [b'x' as u32, b'y' as u32]
    );
    assert_eq!(tok.encode("xy", false, true).unwrap(), [256]);
}

#[test]
fn segments_join_text_across_boundaries() {
    let extra = [("<|im_start|>", 3), ("ab", 1)];
    let tok = bpe_tok("gpt-2", &extra, &["a b"]);
    let special = tok.token_id("<|im_start|>").unwrap();
    let ab = tok.token_id("ab").unwrap();
    let got = tok
        .encode_segments(
            &[
                Segment::special("<|im_start|>a"),
                Segment::plain("b<|im_start|>"),
            ],
            false,
        )
        .unwrap();
    assert_eq!(got[..2], [special, ab]);
    assert!(!got[2..].contains(&special));
}

fn load_err(pairs: Vec<(&str, Value)>) -> String {
    Tokenizer::from_metadata(&metadata(pairs))
        .unwrap_err()
        .to_string()
}

fn replace(
    mut pairs: Vec<(&'static str, Value)>,
    key: &'static str,
    value: Value,
) -> Vec<(&'static str, Value)> {
    pairs.retain(|(k, _)| *k != key);
    pairs.push((key, value));
    pairs
}

#[test]
fn malformed_vocabularies_are_refused() {
    let base = || spm_pairs(&[("▁", 0.0, 1)]);
    let n = 260;

    // Byte tokens that are not <0xHH>.
    for bad in ["<0x-1>", "<0xZZ>", "<0x100>", "<0x1>", "0x41"] {
        let mut tokens: Vec<String> = match &base()[1].1 {
            Value::Array(Array::String(t)) => t.clone(),
            _ => unreachable!(),
        };
        tokens[3] = bad.to_owned();
        let e = load_err(replace(
            base(),
            keys::TOKENS,
            Value::Array(Array::String(tokens)),
        ));
        assert!(e.contains(bad) && e.contains("byte token"), "{e}");
    }

    // Arrays of the wrong length.
    let e = load_err(replace(
        base(),
        keys::SCORES,
        Value::Array(Array::F32(vec![0.0; n - 1])),
    ));
    assert!(e.contains(keys::SCORES) && e.contains("259"), "{e}");
    let e = load_err(replace(
        base(),
        keys::TOKEN_TYPE,
        Value::Array(Array::I32(vec![1; n + 1])),
    ));
    assert!(e.contains(keys::TOKEN_TYPE), "{e}");
    let e = load_err(replace(
        base(),
        keys::SCORES,
        Value::Array(Array::U8(vec![0; n])),
    ));
    assert!(e.contains(keys::SCORES), "{e}");
    let e = load_err(replace(base(), keys::TOKEN_TYPE, strings(&["1"])));
    assert!(e.contains(keys::TOKEN_TYPE), "{e}");

    // Special ids outside the vocabulary.
    for key in [
        keys::BOS_ID,
        keys::EOS_ID,
        keys::UNK_ID,
        keys::PAD_ID,
        keys::EOT_ID,
    ] {
        let e = load_err(replace(base(), key, Value::U32(n as u32)));
        assert!(e.contains(key) && e.contains("260"), "{e}");
    }
    let e = load_err(replace(base(), keys::BOS_ID, Value::I32(-1)));
    assert!(e.contains(keys::BOS_ID), "{e}");

    // Duplicates, missing or unknown pieces.
    let minimal = |tokens: &[&str]| {
        vec![
            (keys::MODEL, Value::String("llama".into())),
            (keys::TOKENS, strings(tokens)),
        ]
    };
    let e = load_err(minimal(&["a", "b", "a"]));
    assert!(e.contains("\"a\"") && e.contains("0 and 2"), "{e}");
    let e = load_err(replace(base(), keys::TOKENS, strings(&[])));
    assert!(e.contains(keys::TOKENS), "{e}");
    let e = load_err(replace(base(), keys::MODEL, Value::String("t5".into())));
    assert!(e.contains("t5"), "{e}");
    let mut no_model = base();
    no_model.retain(|(k, _)| *k != keys::MODEL);
    assert!(load_err(no_model).contains(keys::MODEL));
    let e = load_err(replace(base(), keys::MODEL, Value::U32(1)));
    assert!(e.contains(keys::MODEL), "{e}");

    // add_bos without a BOS token (defaults only exist inside the vocabulary).
    let md = vec![
        (keys::MODEL, Value::String("llama".into())),
        (keys::TOKENS, strings(&["a"])),
    ];
    let e = load_err(md);
    assert!(e.contains(keys::ADD_BOS) && e.contains(keys::BOS_ID), "{e}");

    // BPE: unknown pre-tokenizer, missing merges.
    let e = load_err(bpe_pairs("no-such-pre", &[("xyz", 1)], &[]));
    assert!(e.contains("no-such-pre"), "{e}");
    let mut no_merges = bpe_pairs("gpt-2", &[("xyz", 1)], &[]);
    no_merges.retain(|(k, _)| *k != keys::MERGES);
    assert!(load_err(no_merges).contains(keys::MERGES));
}

#[test]
fn odd_but_valid_inputs() {
    // Empty token strings are renamed (as llama.cpp does), odd token types are
    // undefined, merges without a space are ignored, absent pre means "default".
    let mut pairs = bpe_pairs("gpt-2", &[("", 1), ("", 9)], &["nospace", "", "a b"]);
    pairs.retain(|(k, _)| *k != keys::PRE);
    let tok = Tokenizer::from_metadata(&metadata(pairs)).unwrap();
    assert_eq!(tok.pre_tokenizer(), Some("default"));
    assert_eq!(tok.token_text(256), Some("[EMPTY_256]"));
    assert_eq!(tok.token_type(257), Some(TokenType::Undefined));
    assert_eq!(tok.decode(&[257]).unwrap(), "");
    assert_eq!(
        tok.decode(&tok.encode("a b, 1234!", false, false).unwrap())
            .unwrap(),
        "a b, 1234!"
    );
}

#[test]
fn tokenizer_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Tokenizer>();
    check::<StreamDecoder>();
}
