//! llama.cpp's own tokenizer test vectors (`tests/test-tokenizer-0.cpp`), from the
//! conformance pack: every text must tokenize to exactly the reference ids.
//!
//! As in llama.cpp's test, the `.inp` file is split at `"\n__ggml_vocab_test__\n"` (the
//! last text keeps everything after the last separator), each text is encoded with
//! `add_special = false` and `parse_special = false`, and the `.out` file has one line of
//! space-separated ids per text.

use woolly_model::gguf::GgufFile;
use woolly_model::paths::conformance_file;
use woolly_model::tokenizer::{Tokenizer, TokenizerKind};

fn split_inputs(raw: &str) -> Vec<&str> {
    const SEP: &str = "\n__ggml_vocab_test__\n";
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < raw.len() {
        match raw[pos..].find(SEP) {
            Some(at) => {
                out.push(&raw[pos..pos + at]);
                pos += at + SEP.len();
            }
            None => {
                out.push(&raw[pos..]);
                break;
            }
        }
    }
    out
}

fn run_suite(name: &str, kind: TokenizerKind) {
    let gguf = conformance_file(&format!("vocab/ggml-vocab-{name}.gguf"));
    let inp = conformance_file(&format!("vocab/ggml-vocab-{name}.gguf.inp"));
    let out = conformance_file(&format!("vocab/ggml-vocab-{name}.gguf.out"));

    let file = GgufFile::open(&gguf).unwrap_or_else(|e| panic!("{}: {e}", gguf.display()));
    let tok = Tokenizer::from_gguf(&file).unwrap_or_else(|e| panic!("{}: {e}", gguf.display()));
    assert_eq!(tok.kind(), kind);

    let raw = std::fs::read_to_string(&inp).unwrap();
    let expected_lines = std::fs::read_to_string(&out).unwrap();
    let texts = split_inputs(&raw);
    let expected: Vec<Vec<u32>> = expected_lines
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(
        texts.len(),
        expected.len(),
        "{name}: .inp and .out disagree on the number of cases"
    );
    assert!(!texts.is_empty(), "{name}: no cases");

    let mut failures = Vec::new();
    for (text, want) in texts.iter().zip(&expected) {
        let got = tok.encode(text, false, false).unwrap();
        if &got != want {
            failures.push(format!("  {text:?}\n    want {want:?}\n    got  {got:?}"));
        }
    }
    println!(
        "{name}: {}/{} cases exact",
        texts.len() - failures.len(),
        texts.len()
    );
    assert!(
        failures.is_empty(),
        "{name}: {} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn llama_spm_vocab_matches_llama_cpp() {
    run_suite("llama-spm", TokenizerKind::Spm);
}

#[test]
fn llama_bpe_vocab_matches_llama_cpp() {
    run_suite("llama-bpe", TokenizerKind::Bpe);
}

#[test]
fn input_split_keeps_empty_and_multiline_cases() {
    let raw = "a\n__ggml_vocab_test__\n\n__ggml_vocab_test__\n\n\n__ggml_vocab_test__\nb\n__ggml_vocab_test__\n";
    assert_eq!(split_inputs(raw), ["a", "", "\n", "b"]);
}
