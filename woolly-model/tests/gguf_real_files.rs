//! Real GGUF files written by llama.cpp's tools parse, with the counts their makers state.

use woolly_kernels::GgmlType;
use woolly_model::fetch;
use woolly_model::gguf::GgufFile;
use woolly_model::paths::conformance_file;

fn count_of(file: &GgufFile, ty: GgmlType) -> usize {
    file.tensors().iter().filter(|t| t.ty == ty).count()
}

#[test]
fn tiny_q4km_parses_as_the_pack_describes() {
    let file = GgufFile::open(conformance_file("models/tiny-q4km.gguf")).unwrap();
    let md = file.metadata();
    assert_eq!(md.get_str("general.architecture").unwrap(), Some("llama"));
    assert_eq!(md.get_u32("llama.embedding_length").unwrap(), Some(512));
    assert_eq!(md.get_u32("llama.block_count").unwrap(), Some(4));
    assert_eq!(
        md.get_u32("llama.attention.head_count_kv").unwrap(),
        Some(2)
    );
    assert_eq!(
        md.get_str_array("tokenizer.ggml.tokens")
            .unwrap()
            .unwrap()
            .len(),
        32000
    );
    // "25 Q4_K tensors, 5 Q6_K (output.weight among them), 9 F32 norms".
    assert_eq!(count_of(&file, GgmlType::Q4K), 25);
    assert_eq!(count_of(&file, GgmlType::Q6K), 5);
    assert_eq!(count_of(&file, GgmlType::F32), 9);
    let out = file.tensor("output.weight").unwrap();
    assert_eq!(
        (out.ty, out.dims.clone()),
        (GgmlType::Q6K, vec![512, 32000])
    );
    assert_eq!(file.tensor_data(out).len() as u64, out.n_bytes);
}

#[test]
fn vocab_only_files_parse() {
    for (name, n_vocab) in [("llama-spm", 32000), ("llama-bpe", 128256)] {
        let file =
            GgufFile::open(conformance_file(&format!("vocab/ggml-vocab-{name}.gguf"))).unwrap();
        assert!(file.tensors().is_empty(), "{name}");
        let tokens = file
            .metadata()
            .get_str_array("tokenizer.ggml.tokens")
            .unwrap()
            .unwrap();
        assert_eq!(tokens.len(), n_vocab, "{name}");
    }
}

#[test]
fn smollm2_parses_as_the_pack_describes() {
    let path = fetch::fetch(&fetch::SMOLLM2, |m| eprintln!("{m}"))
        .expect("SmolLM2 (cargo xtask fetch-model smollm2)");
    let file = GgufFile::open(path).unwrap();
    assert_eq!(file.size(), fetch::SMOLLM2.size);
    assert_eq!(count_of(&file, GgmlType::Q4_1), 210);
    assert_eq!(count_of(&file, GgmlType::Q8_0), 1);
    assert!(file.tensor("output.weight").is_none(), "tied embeddings");
    assert_eq!(
        file.metadata().get_str("tokenizer.ggml.pre").unwrap(),
        Some("smollm")
    );
}
