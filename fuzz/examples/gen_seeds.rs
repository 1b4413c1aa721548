//! Writes the seed corpora under `fuzz/seeds/<target>/` and runs every seed through its
//! target's body once (on stable: `cargo run --manifest-path fuzz/Cargo.toml --example
//! gen_seeds`). Deterministic: running it again rewrites the same files.

use std::path::{Path, PathBuf};

use woolly_fuzz::TinyModel;
use woolly_kernels::GgmlType;
use woolly_model::chat::CHATML_TEMPLATE;

/// Largest seed written from a conformance vocabulary (its first bytes).
const VOCAB_PREFIX: usize = 64 * 1024;

fn main() -> std::io::Result<()> {
    let seeds = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    gguf_seeds(&seeds.join("gguf_load"))?;
    text_seeds(&seeds)?;
    sampling_seeds(&seeds.join("sampling_params"))?;
    check(&seeds);
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), bytes)
}

fn gguf_seeds(dir: &Path) -> std::io::Result<()> {
    let models = [
        ("tiny-spm-f32.gguf.bin", TinyModel::default()),
        (
            "tiny-bpe-f32-e8.gguf.bin",
            TinyModel {
                n_embd: 8,
                n_ff: 16,
                spm: false,
                ..TinyModel::default()
            },
        ),
        (
            "tiny-spm-q8_0-gqa-output-chat.gguf.bin",
            TinyModel {
                n_head: 4,
                n_head_kv: 2,
                ty: GgmlType::Q8_0,
                output: true,
                chat_template: true,
                ..TinyModel::default()
            },
        ),
        (
            "tiny-bpe-q4_0.gguf.bin",
            TinyModel {
                ty: GgmlType::Q4_0,
                spm: false,
                ..TinyModel::default()
            },
        ),
    ];
    for (name, m) in models {
        let bytes = m.to_bytes();
        let file = woolly_model::gguf::GgufFile::from_bytes(bytes.clone()).expect("valid GGUF");
        if let Err(e) = woolly_model::Model::from_gguf(std::sync::Arc::new(file)) {
            panic!("seed {name} does not load: {e}");
        }
        write(dir, name, &bytes)?;
    }
    for name in ["llama-spm", "llama-bpe"] {
        let path = woolly_model::paths::conformance_file(&format!("vocab/ggml-vocab-{name}.gguf"));
        let bytes = std::fs::read(&path)?;
        write(
            dir,
            &format!("{name}-head64k.gguf.bin"),
            &bytes[..bytes.len().min(VOCAB_PREFIX)],
        )?;
    }
    Ok(())
}

/// Seeds of the text targets: conformance tokenizer inputs, special-token text and
/// templates with NUL-separated messages.
fn text_seeds(seeds: &Path) -> std::io::Result<()> {
    let dir = seeds.join("tokenize");
    let inp = woolly_model::paths::conformance_file("vocab/ggml-vocab-llama-spm.gguf.inp");
    let inp = std::fs::read_to_string(inp)?;
    // The .inp file holds test strings separated by a marker line.
    let mut n = 0;
    for (i, case) in inp.split("\n__ggml_vocab_test__\n").enumerate() {
        if !case.is_empty() && case.len() < 512 {
            write(&dir, &format!("inp-{i:02}.txt"), case.as_bytes())?;
            n += 1;
        }
    }
    assert!(n > 5, "the conformance inputs were not split ({n} cases)");
    for (name, text) in [
        (
            "special.txt",
            "<s>[INST] hi [/INST]</s><|begin_of_text|><|eot_id|> <unk>",
        ),
        (
            "bytes.txt",
            "\u{1F999}\u{2581}\u{0}\t\r\n  \u{FEFF}é\u{301}",
        ),
        ("digits.txt", "1234567890 3.14159 ١٢٣ 'll 've"),
        ("cjk.txt", "你好，世界！こんにちは 안녕하세요"),
    ] {
        write(&dir, name, text.as_bytes())?;
    }

    let dir = seeds.join("decode_stream");
    // Mode byte, then little-endian ids: in range, split UTF-8, out of range.
    let mut ids = vec![0u8];
    for id in [
        1u32, 15043, 3186, 0xE2, 0x82, 0xAC, 2, 31999, 32000, 128_255,
    ] {
        ids.extend_from_slice(&id.to_le_bytes());
    }
    write(&dir, "mixed.bin", &ids)?;
    ids[0] = 1;
    write(&dir, "mixed-render-special.bin", &ids)?;
    let mut raw = vec![2u8];
    for id in [u32::MAX, 128_000, 128_001, 7, 0x8000_0000] {
        raw.extend_from_slice(&id.to_le_bytes());
    }
    write(&dir, "raw-ids.bin", &raw)?;
    // SentencePiece's <0xHH> tokens are ids 3..=258: every byte, split characters included.
    let mut bytes = vec![0u8];
    for id in (3u32..=258).rev() {
        bytes.extend_from_slice(&id.to_le_bytes());
    }
    write(&dir, "byte-tokens.bin", &bytes)?;

    let dir = seeds.join("chat_template");
    let conversation =
        "\0\x00You are terse.\0\x01Hi <|im_end|> there\0\x02Hello!\0\x01  strip me  ";
    let templates = [
        ("chatml.txt", CHATML_TEMPLATE),
        (
            "llama3.txt",
            "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
        ),
        (
            "mistral.txt",
            "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}",
        ),
        (
            "methods.txt",
            "{% for m in messages %}{{ m.role | upper }}: {{ m.content.strip().split(' ') | join('_') }}{{ m.content[1:3] }}{% if m.content.startswith('H') %}!{% endif %}{{ m | tojson }}\n{% endfor %}{% set ns = namespace(x=0) %}{% for i in range(3) %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}",
        ),
        (
            "loop.txt",
            "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% endif %}x{% endmacro %}{{ f(200) }}{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}",
        ),
    ];
    for (name, source) in templates {
        let mut bytes = source.as_bytes().to_vec();
        bytes.extend_from_slice(conversation.as_bytes());
        write(&dir, name, &bytes)?;
    }
    Ok(())
}

/// Seeds of `sampling_params` (read with `arbitrary`): a few byte patterns, including
/// NaN and infinity bit patterns.
fn sampling_seeds(dir: &Path) -> std::io::Result<()> {
    let mut patterns: Vec<(&str, Vec<u8>)> =
        vec![("zeros.bin", vec![0; 96]), ("ones.bin", vec![0xff; 96])];
    let mut floats = Vec::new();
    for f in [
        0.8f32,
        f32::NAN,
        f32::INFINITY,
        -1.0,
        0.0,
        1e-45,
        f32::MAX,
        0.5,
        1.1,
        -0.0,
        3.0,
        -2.5,
        1.0,
        0.25,
    ] {
        floats.extend_from_slice(&f.to_le_bytes());
    }
    floats.extend_from_slice(&[1, 1, 3, 1, 2]);
    patterns.push(("floats.bin", floats));
    let counting: Vec<u8> = (0..=255u8).collect();
    patterns.push(("counting.bin", counting));
    for (name, bytes) in patterns {
        write(dir, name, &bytes)?;
    }
    Ok(())
}

/// Runs every seed through its target body once.
fn check(seeds: &Path) {
    for (target, run) in [
        ("gguf_load", woolly_fuzz::gguf_load as fn(&[u8])),
        ("tokenize", woolly_fuzz::tokenize),
        ("decode_stream", woolly_fuzz::decode_stream),
        ("chat_template", woolly_fuzz::chat_template),
        ("sampling_params", |data: &[u8]| {
            let mut u = arbitrary::Unstructured::new(data);
            if let Ok(input) = u.arbitrary() {
                woolly_fuzz::sampling_params(input);
            }
        }),
    ] {
        let dir = seeds.join(target);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for path in &entries {
            run(&std::fs::read(path).expect("seed"));
        }
        println!("{target}: {} seeds ok", entries.len());
    }
}
