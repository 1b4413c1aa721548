//! Hostile inputs: huge texts must tokenize in near-linear time, malformed vocabularies
//! must be refused with an error naming the key or token, and nothing may panic.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use woolly_model::gguf::writer::GgufWriter;
use woolly_model::gguf::{Array, GgufFile, Value};
use woolly_model::paths::conformance_file;
use woolly_model::tokenizer::{Tokenizer, TokenizerError, keys};

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

const MIB: usize = 1 << 20;
/// Far above what a linear-time tokenizer needs (well under a second for 1 MiB in an
/// optimized build), far below what a quadratic one would take (hours).
const LIMIT: Duration = Duration::from_secs(30);

fn timed_roundtrip(tok: &Tokenizer, name: &str, text: &str) {
    let t0 = Instant::now();
    let ids = tok.encode(text, false, false).unwrap();
    let elapsed = t0.elapsed();
    println!(
        "{name}: {} bytes -> {} tokens in {elapsed:?}",
        text.len(),
        ids.len()
    );
    assert!(
        elapsed < LIMIT,
        "{name}: {elapsed:?} for {} bytes",
        text.len()
    );
    assert!(!ids.is_empty());
    // (No assert_eq!: a failure must not print megabytes.)
    assert!(
        tok.decode(&ids).unwrap() == text,
        "{name}: round trip differs"
    );
}

fn huge_inputs() -> Vec<(&'static str, String)> {
    let mut pseudo = String::with_capacity(MIB);
    let mut x = 0x2545_f491_u32;
    while pseudo.len() < MIB {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        pseudo.push(char::from(b'a' + (x % 26) as u8));
    }
    vec![
        ("1 MiB of 'a'", "a".repeat(MIB)),
        ("1 MiB of spaces", " ".repeat(MIB)),
        ("1 MiB of newlines", "\n".repeat(MIB)),
        ("1 MiB of 'é'", "é".repeat(MIB / 2)),
        ("1 MiB of emoji", "🦙".repeat(MIB / 4)),
        ("1 MiB of digits", "7".repeat(MIB)),
        ("1 MiB of '<|'", "<|".repeat(MIB / 2)),
        ("1 MiB of letters without spaces", pseudo),
        ("1 MiB of ' a'", " a".repeat(MIB / 2)),
    ]
}

#[test]
fn huge_inputs_spm_are_linear() {
    for (name, text) in huge_inputs() {
        timed_roundtrip(spm(), &format!("spm {name}"), &text);
    }
    let t0 = Instant::now();
    let ids = spm().encode(&"</s>".repeat(MIB / 4), false, true).unwrap();
    assert!(t0.elapsed() < LIMIT);
    assert!(ids.len() == MIB / 4 && ids.iter().all(|&id| id == 2));
}

#[test]
fn huge_inputs_bpe_are_linear() {
    for (name, text) in huge_inputs() {
        timed_roundtrip(bpe(), &format!("bpe {name}"), &text);
    }
    // Parsing specials scans for each of the 256 control tokens.
    let t0 = Instant::now();
    let ids = bpe()
        .encode(&"<|eot_id|>x".repeat(MIB / 11), false, true)
        .unwrap();
    assert!(t0.elapsed() < LIMIT);
    assert_eq!(ids.len(), 2 * (MIB / 11));
}

#[test]
fn decoding_hostile_ids_is_an_error_not_a_panic() {
    for tok in [spm(), bpe()] {
        let n = tok.vocab_size() as u32;
        for bad in [n, n + 1, u32::MAX] {
            let err = tok.decode(&[1, bad]).unwrap_err();
            assert!(
                matches!(err, TokenizerError::TokenOutOfRange { id, .. } if id == bad),
                "{err}"
            );
            assert!(err.to_string().contains(&bad.to_string()));
            assert!(tok.token_bytes(bad).is_none());
            assert!(tok.token_text(bad).is_none());
            assert!(!tok.is_eog(bad));
        }
        // Every id decodes, alone and all together.
        let all: Vec<u32> = (0..n).collect();
        tok.decode(&all).unwrap();
        tok.decode_bytes(&all, true).unwrap();
    }
}

/// A small SPM vocabulary as a GGUF file, with `edit` applied to its pairs.
fn spm_file(
    edit: impl FnOnce(&mut Vec<(&'static str, Value)>),
) -> Result<Tokenizer, TokenizerError> {
    let mut tokens = vec!["<unk>".to_owned(), "<s>".to_owned(), "</s>".to_owned()];
    tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    tokens.push("▁".to_owned());
    let n = tokens.len();
    let mut types = vec![2, 3, 3];
    types.extend([6; 256]);
    types.push(1);
    let mut pairs: Vec<(&'static str, Value)> = vec![
        (keys::MODEL, Value::String("llama".into())),
        (keys::TOKENS, Value::Array(Array::String(tokens))),
        (keys::SCORES, Value::Array(Array::F32(vec![0.0; n]))),
        (keys::TOKEN_TYPE, Value::Array(Array::I32(types))),
        (keys::BOS_ID, Value::U32(1)),
        (keys::EOS_ID, Value::U32(2)),
    ];
    edit(&mut pairs);
    let mut w = GgufWriter::new();
    for (k, v) in pairs {
        w.kv(k, v);
    }
    let file = GgufFile::from_bytes(w.to_bytes()).expect("well-formed GGUF");
    Tokenizer::from_gguf(&file)
}

fn set(pairs: &mut Vec<(&'static str, Value)>, key: &'static str, value: Value) {
    pairs.retain(|(k, _)| *k != key);
    pairs.push((key, value));
}

#[test]
fn malformed_gguf_vocabularies_are_refused_with_the_culprit_named() {
    let ok = spm_file(|_| {}).unwrap();
    assert_eq!(ok.vocab_size(), 260);
    assert_eq!(ok.encode("\u{1F999}", false, false).unwrap().len(), 5);

    for bad in ["<0x-1>", "<0xZZ>", "<0xGG>", "<0x>", "<0x123>", "<0x41 >"] {
        let err = spm_file(|p| {
            let Value::Array(Array::String(t)) = &mut p[1].1 else {
                unreachable!()
            };
            t[3 + 0x41] = bad.to_owned();
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(bad) && err.contains(&(3 + 0x41).to_string()),
            "{err}"
        );
    }

    let cases: Vec<(&'static str, Value, &str)> = vec![
        (
            keys::SCORES,
            Value::Array(Array::F32(vec![0.0; 3])),
            "3 entries",
        ),
        (
            keys::SCORES,
            Value::Array(Array::F32(vec![0.0; 261])),
            "261 entries",
        ),
        (
            keys::TOKEN_TYPE,
            Value::Array(Array::I32(vec![1; 259])),
            "259 entries",
        ),
        (keys::SCORES, Value::String("x".into()), "string"),
        (
            keys::TOKEN_TYPE,
            Value::Array(Array::F32(vec![1.0; 260])),
            "array of f32",
        ),
        (keys::BOS_ID, Value::U32(260), "260"),
        (keys::EOS_ID, Value::U32(1_000_000), "1000000"),
        (keys::UNK_ID, Value::U64(u64::MAX), "18446744073709551615"),
        (keys::PAD_ID, Value::I32(-1), "-1"),
        (keys::ADD_BOS, Value::U32(1), "bool"),
        (
            keys::TOKENS,
            Value::Array(Array::U32(vec![1, 2])),
            "array of string",
        ),
    ];
    for (key, value, detail) in cases {
        let err = spm_file(|p| set(p, key, value)).unwrap_err().to_string();
        assert!(err.contains(key) && err.contains(detail), "{key}: {err}");
    }

    let err = spm_file(|p| set(p, keys::MODEL, Value::String("bert".into()))).unwrap_err();
    assert!(err.to_string().contains("\"bert\""), "{err}");
    let err = spm_file(|p| p.retain(|(k, _)| *k != keys::TOKENS)).unwrap_err();
    assert!(err.to_string().contains(keys::TOKENS), "{err}");
}

#[test]
fn unusual_characters_roundtrip() {
    let texts = [
        "\0",
        "\u{feff}BOM",
        "a\u{200d}b",
        "\r\n\r\n",
        "\u{85}\u{a0}\u{2028}\u{3000}x",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ١٢٣ ½ Ⅻ",
        "e\u{301}\u{302}\u{303}",
        "\u{10ffff}\u{e000}\u{fffd}",
        "'S'T'RE'vE'm'LL'd 's",
        "  \t \n \u{b}\u{c} ",
    ];
    for tok in [spm(), bpe()] {
        for text in texts {
            let ids = tok.encode(text, true, false).unwrap();
            assert_eq!(
                tok.decode(&ids).unwrap(),
                text,
                "{:?}: {text:?} -> {ids:?}",
                tok.kind()
            );
        }
    }
}
