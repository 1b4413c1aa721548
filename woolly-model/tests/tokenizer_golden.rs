//! The golden prompts of the conformance pack: each prompt tokenizes to llama.cpp's ids
//! (BOS added where the GGUF asks, special-token text not parsed), and the greedy
//! continuation detokenizes to llama.cpp's text.
//!
//! `greedy_text` is the concatenation of llama.cpp's `token_to_piece` for each generated
//! token (no leading space removed, control tokens rendered as nothing), which is what
//! [`StreamDecoder`] produces.

use std::path::PathBuf;

use serde::Deserialize;
use woolly_model::gguf::GgufFile;
use woolly_model::paths::conformance_file;
use woolly_model::tokenizer::{StreamDecoder, Tokenizer, TokenizerKind};

#[derive(Deserialize)]
struct Golden {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    prompt: String,
    tokens: Vec<u32>,
    greedy: Vec<u32>,
    greedy_text: String,
}

fn check(model: &std::path::Path, golden: &str, kind: TokenizerKind) {
    let file = GgufFile::open(model).unwrap_or_else(|e| panic!("{}: {e}", model.display()));
    let tok = Tokenizer::from_gguf(&file).unwrap();
    assert_eq!(tok.kind(), kind);
    let path = conformance_file(golden);
    let golden: Golden = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(!golden.cases.is_empty());

    let mut failures = Vec::new();
    for (i, case) in golden.cases.iter().enumerate() {
        let got = tok.encode(&case.prompt, true, false).unwrap();
        if got != case.tokens {
            failures.push(format!(
                "case {i} {:?}: tokens\n  want {:?}\n  got  {:?}",
                case.prompt, case.tokens, got
            ));
        }
        let mut stream = StreamDecoder::new();
        let mut text = String::new();
        for &id in &case.greedy {
            text.push_str(&stream.push(&tok, id).unwrap());
        }
        text.push_str(&stream.finish());
        if text != case.greedy_text {
            failures.push(format!(
                "case {i}: greedy text\n  want {:?}\n  got  {:?}",
                case.greedy_text, text
            ));
        }
        // The batch decoder renders the same bytes.
        let bytes = tok.decode_bytes(&case.greedy, false).unwrap();
        assert_eq!(String::from_utf8_lossy(&bytes), text);
    }
    println!(
        "{golden}: {} cases, {} mismatches",
        golden.cases.len(),
        failures.len(),
        golden = path.display()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn tiny_q4km_prompts_tokenize_like_llama_cpp() {
    check(
        &conformance_file("models/tiny-q4km.gguf"),
        "golden/tiny-q4km.golden.json",
        TokenizerKind::Spm,
    );
}

/// `$WOOLLY_SMOLLM2_GGUF`, else the model cache (`$WOOLLY_CACHE_DIR/models/...`, else
/// `~/.cache/woolly/models/...`).
/// SmolLM2 from the model cache, fetched if needed: a missing model fails the test.
fn smollm2_path() -> PathBuf {
    woolly_model::fetch::fetch(&woolly_model::fetch::SMOLLM2, |m| eprintln!("{m}"))
        .expect("SmolLM2 (cargo xtask fetch-model smollm2)")
}

#[test]
fn smollm2_prompts_tokenize_like_llama_cpp() {
    let model = smollm2_path();
    check(
        &model,
        "golden/SmolLM2-135M-Instruct.Q4_1.golden.json",
        TokenizerKind::Bpe,
    );
}

#[test]
fn smollm2_special_tokens_and_eog() {
    let model = smollm2_path();
    let tok = Tokenizer::from_gguf(&GgufFile::open(model).unwrap()).unwrap();
    assert_eq!(tok.pre_tokenizer(), Some("smollm"));
    assert!(!tok.add_bos());
    assert_eq!(tok.eos(), Some(2));
    for text in ["<|im_end|>", "<|endoftext|>"] {
        assert!(tok.is_eog(tok.token_id(text).unwrap()), "{text}");
    }
    assert!(!tok.is_eog(tok.token_id("<|im_start|>").unwrap()));
    let prompt = "<|im_start|>user\nHi<|im_end|>\n";
    let parsed = tok.encode(prompt, false, true).unwrap();
    assert_eq!(parsed[0], 1);
    assert!(parsed.contains(&2));
    let plain = tok.encode(prompt, false, false).unwrap();
    assert!(
        plain.iter().all(|&id| id > 16),
        "plain text produced a control token: {plain:?}"
    );
    assert_eq!(tok.decode(&plain).unwrap(), prompt);
}
