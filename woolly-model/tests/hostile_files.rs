//! Crafted model files, one per bug class of published CVEs in GGUF loaders (llama.cpp,
//! ollama, candle, gguf-py), beyond the parser cases of `gguf_malformed.rs`. Each must be
//! refused with an error naming the field and, for sizes, the figure it would need:
//! never a panic, an abort, a wrapped size or an allocation of what the file claims.
//!
//! `huge_claims_are_refused_under_a_memory_limit` reruns the size cases in a child
//! process under `ulimit -v`, so an allocation of the claimed size would abort it.

use std::sync::Arc;

use woolly_kernels::GgmlType;
use woolly_model::config::LlamaConfig;
use woolly_model::gguf::writer::{Encoder, GgufWriter};
use woolly_model::gguf::{Array, GgufFile, Value};
use woolly_model::tokenizer::Tokenizer;
use woolly_model::{KvType, Model};

/// Width of the tiny model.
const D: u64 = 32;
/// Feed-forward width of the tiny model.
const FF: u64 = 64;

/// The metadata and tensors of a tiny one-layer Llama model that loads.
struct Tiny {
    kvs: Vec<(String, Value)>,
    tensors: Vec<(String, Vec<u64>, Vec<u8>)>,
}

fn f32s(n: u64, v: f32) -> Vec<u8> {
    (0..n).flat_map(|_| v.to_le_bytes()).collect()
}

impl Tiny {
    fn new() -> Tiny {
        let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>"].map(String::from).to_vec();
        tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
        tokens.extend(["\u{2581}", "a", "b", "\u{2581}a"].map(String::from));
        let n = tokens.len();
        let mut types = vec![2, 3, 3];
        types.extend([6; 256]);
        types.extend([1; 4]);
        let kvs: Vec<(String, Value)> = vec![
            ("general.architecture".into(), Value::String("llama".into())),
            ("llama.embedding_length".into(), Value::U32(D as u32)),
            ("llama.block_count".into(), Value::U32(1)),
            ("llama.attention.head_count".into(), Value::U32(2)),
            ("llama.feed_forward_length".into(), Value::U32(FF as u32)),
            ("llama.context_length".into(), Value::U32(64)),
            ("tokenizer.ggml.model".into(), Value::String("llama".into())),
            (
                "tokenizer.ggml.tokens".into(),
                Value::Array(Array::String(tokens)),
            ),
            (
                "tokenizer.ggml.scores".into(),
                Value::Array(Array::F32(vec![0.0; n])),
            ),
            (
                "tokenizer.ggml.token_type".into(),
                Value::Array(Array::I32(types)),
            ),
        ];
        let v = n as u64;
        let t = |name: &str, dims: &[u64]| {
            let n: u64 = dims.iter().product();
            let fill = if name.contains("norm") { 1.0 } else { 0.01 };
            (name.to_owned(), dims.to_vec(), f32s(n, fill))
        };
        let tensors = vec![
            t("token_embd.weight", &[D, v]),
            t("blk.0.attn_norm.weight", &[D]),
            t("blk.0.attn_q.weight", &[D, D]),
            t("blk.0.attn_k.weight", &[D, D]),
            t("blk.0.attn_v.weight", &[D, D]),
            t("blk.0.attn_output.weight", &[D, D]),
            t("blk.0.ffn_norm.weight", &[D]),
            t("blk.0.ffn_gate.weight", &[D, FF]),
            t("blk.0.ffn_up.weight", &[D, FF]),
            t("blk.0.ffn_down.weight", &[FF, D]),
            t("output_norm.weight", &[D]),
        ];
        Tiny { kvs, tensors }
    }

    /// Replaces (or adds) a metadata pair.
    fn set(mut self, key: &str, value: Value) -> Tiny {
        self.kvs.retain(|(k, _)| k != key);
        self.kvs.push((key.to_owned(), value));
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut w = GgufWriter::new();
        for (k, v) in &self.kvs {
            w.kv(k, v.clone());
        }
        for (name, dims, data) in &self.tensors {
            w.tensor(name, dims, GgmlType::F32, data.clone());
        }
        w.to_bytes()
    }

    fn file(&self) -> Arc<GgufFile> {
        Arc::new(GgufFile::from_bytes(self.bytes()).expect("well-formed GGUF"))
    }

    /// Loads the model, returning the error's message (the test fails if it loads).
    fn refuse(&self) -> String {
        match Model::from_gguf(self.file()) {
            Ok(m) => panic!("a hostile model was accepted: {m:?}"),
            Err(e) => e.to_string(),
        }
    }
}

/// Parses `bytes` and returns the error's message, failing the test if it parsed.
fn refuse(bytes: Vec<u8>) -> String {
    match GgufFile::from_bytes(bytes) {
        Ok(f) => panic!("a malformed file was accepted: {f:?}"),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(msg: &str, needles: &[&str]) {
    for n in needles {
        assert!(msg.contains(n), "error {msg:?} does not mention {n:?}");
    }
}

/// A header and tensor infos `(name, dims, type id, offset)`, padded, then `data_len`
/// zero bytes of data.
fn tensors(infos: &[(&str, &[u64], u32, u64)], data_len: usize) -> Vec<u8> {
    let mut e = Encoder::new();
    e.header(3, infos.len() as u64, 0);
    for &(name, dims, ty, offset) in infos {
        e.tensor_info(name, dims, ty, offset);
    }
    e.pad_to(32).raw(&vec![0u8; data_len]);
    e.bytes
}

#[test]
fn the_tiny_model_loads() {
    let m = Model::from_gguf(Tiny::new().file()).expect("the baseline loads");
    assert_eq!(m.config().n_vocab, 263);
}

/// Bug class: integer overflow when a size is padded to the alignment. A dimension near
/// 2^62 gives a byte size just under 2^64; rounding it up to 32 (or adding the offset)
/// wraps to a small number, and a loader that trusts the wrapped size reads out of
/// bounds (llama.cpp's `GGML_PAD` of tensor sizes, CVE-2024-42477 and kin).
#[test]
fn dimension_near_2_pow_62_whose_padded_size_wraps() {
    let f32_id = GgmlType::F32.id();
    // 4 * (2^62 - 1) = 2^64 - 4 bytes: fits in u64, wraps when padded to 32.
    let msg = refuse(tensors(&[("t", &[(1 << 62) - 1], f32_id, 0)], 64));
    assert_mentions(
        &msg,
        &["tensor \"t\"", "past end of file", "0xfffffffffffffffc"],
    );
    // 4 * 2^62 = 2^64 bytes: the size itself overflows (see the test below for the
    // message).
    let msg = refuse(tensors(&[("t", &[1 << 62], f32_id, 0)], 64));
    assert_mentions(&msg, &["tensor \"t\": dimensions", "overflows a byte size"]);
    // A second tensor placed after the first: its end would wrap past zero.
    let msg = refuse(tensors(
        &[("a", &[8], f32_id, 0), ("b", &[(1 << 62) - 8], f32_id, 32)],
        64,
    ));
    assert_mentions(&msg, &["tensor \"b\"", "past end of file"]);
}

/// Bug class: integer overflow in a row's byte size. The refusal must say the size
/// overflows, not that a 2^62-element F32 row "is not a multiple of the f32 block size
/// 1" (`GgmlType::row_bytes` answers None for both, and the loader reports only the
/// first).
#[test]
fn row_byte_size_overflow_is_reported_as_an_overflow() {
    let msg = refuse(tensors(&[("t", &[1 << 62], GgmlType::F32.id(), 0)], 64));
    assert_mentions(&msg, &["tensor \"t\"", "overflows"]);
    assert!(!msg.contains("not a multiple"), "{msg}");
}

/// Bug class: integer overflow in the byte size of a block-quantized tensor, computed
/// as blocks times block bytes (candle's and gguf-py's `n_elements * type_size /
/// block_size`, which overflows in the multiplication although the element count fits).
#[test]
fn quantized_byte_size_overflows_while_element_count_fits() {
    for ty in [GgmlType::Q8_0, GgmlType::Q4K, GgmlType::Q6K, GgmlType::Q8K] {
        let block = ty.block_len() as u64;
        // 2^62 elements fit in i64; `n * block_bytes` overflows u64, `n / block *
        // block_bytes` does not, and either is far past the end of the file.
        let row = (1u64 << 62) / block * block;
        let msg = refuse(tensors(&[("q", &[row], ty.id(), 0)], 64));
        assert_mentions(&msg, &["tensor \"q\""]);
        assert!(
            msg.contains("past end of file") || msg.contains("overflows"),
            "{ty}: {msg}"
        );
        // Rows times row bytes: the element count is under 2^63, the bytes are not
        // representable as the product of the two naive factors.
        let msg = refuse(tensors(&[("q", &[block * 4, 1 << 58], ty.id(), 0)], 64));
        assert_mentions(&msg, &["tensor \"q\""]);
    }
    // The sizes a real file gets are exact: 3 rows of 32 Q8_0 elements are 102 bytes.
    let mut e = Encoder::new();
    e.header(3, 1, 0)
        .tensor_info("q", &[32, 3], GgmlType::Q8_0.id(), 0)
        .pad_to(32)
        .raw(&[0u8; 128]);
    let f = GgufFile::from_bytes(e.bytes).unwrap();
    assert_eq!(f.tensor("q").unwrap().n_bytes, 102);
}

/// Bug class: integer overflow in the sum of tensor sizes (a loader that totals the
/// sizes to check them against the file, or to allocate one buffer, sees the sum wrap
/// to a small number).
#[test]
fn tensor_sizes_whose_sum_overflows() {
    let f32_id = GgmlType::F32.id();
    // Two tensors of 2^63 bytes each: the total is 2^64, i.e. 0 when wrapped.
    let half = 1u64 << 61;
    let msg = refuse(tensors(
        &[("a", &[half], f32_id, 0), ("b", &[half], f32_id, 1 << 63)],
        64,
    ));
    assert_mentions(&msg, &["tensor \"a\"", "past end of file"]);
    // Many tensors, each small, whose offsets wrap around to overlap the first.
    let msg = refuse(tensors(
        &[
            ("a", &[8], f32_id, 0),
            ("b", &[8], f32_id, 0u64.wrapping_sub(32)),
        ],
        64,
    ));
    assert_mentions(&msg, &["tensor \"b\"", "past end of file"]);
}

/// Bug class: type confusion in tokenizer arrays. A loader that reads
/// `tokenizer.ggml.scores` as f32 without checking the element type reads 4 bytes per
/// entry from an array of u8 (heap over-read); one that reads `token_type` as integers
/// misreads strings.
#[test]
fn tokenizer_arrays_stored_with_the_wrong_element_type() {
    let n = 263;
    let msg = Tiny::new()
        .set("tokenizer.ggml.scores", Value::Array(Array::U8(vec![0; n])))
        .refuse();
    assert_mentions(&msg, &["tokenizer.ggml.scores", "array of u8"]);
    let msg = Tiny::new()
        .set(
            "tokenizer.ggml.token_type",
            Value::Array(Array::String(vec!["1".into(); n])),
        )
        .refuse();
    assert_mentions(&msg, &["tokenizer.ggml.token_type", "array of string"]);
    let msg = Tiny::new()
        .set(
            "tokenizer.ggml.tokens",
            Value::Array(Array::U8(vec![65; n])),
        )
        .refuse();
    assert_mentions(&msg, &["tokenizer.ggml.tokens", "array of u8"]);
    // Nested arrays where a flat one belongs.
    let msg = Tiny::new()
        .set(
            "tokenizer.ggml.scores",
            Value::Array(Array::Array(vec![Array::F32(vec![0.0]); n])),
        )
        .refuse();
    assert_mentions(&msg, &["tokenizer.ggml.scores"]);
}

/// Bug class: unchecked parse of byte-token text. `<0x-1>` through `strtol` gives -1
/// and `<0xZZ>` gives 0 or garbage; used as an index into a 256-entry byte table, that
/// is an out-of-bounds write. A byte token whose text is not `<0xHH>` is refused.
#[test]
fn byte_tokens_that_are_not_two_hex_digits() {
    for bad in ["<0x-1>", "<0xZZ>", "<0x100>", "<0x>", "<0x 1>"] {
        let mut tiny = Tiny::new();
        let Value::Array(Array::String(tokens)) = &mut tiny.kvs[7].1 else {
            unreachable!("tokens are the 8th pair")
        };
        tokens[3 + 0x41] = bad.to_owned();
        let msg = tiny.refuse();
        assert_mentions(&msg, &["byte token 68", bad, "<0xHH>"]);
    }
}

/// Bug class: allocation sized by an unchecked hyper-parameter. A `block_count` of 10^6
/// would make a loader allocate a million layers' state (and a KV cache for each)
/// before finding the tensors missing; it is refused from the metadata alone.
#[test]
fn block_count_of_a_million() {
    let tiny = Tiny::new().set("llama.block_count", Value::U32(1_000_000));
    let msg = tiny.refuse();
    assert_mentions(&msg, &["llama.block_count", "1000000", "outside 1..=4096"]);
    let cfg = LlamaConfig::from_metadata(tiny.file().metadata());
    assert!(cfg.is_err());
    // At the cap, the missing layer is named, nothing per layer is allocated first.
    let msg = Tiny::new()
        .set("llama.block_count", Value::U32(4096))
        .refuse();
    assert_mentions(&msg, &["blk.1.attn_norm.weight", "missing"]);
    // Stored as u64 past u32.
    let msg = Tiny::new()
        .set("llama.block_count", Value::U64(1 << 40))
        .refuse();
    assert_mentions(&msg, &["llama.block_count"]);
}

/// Bug class: misreading an older layout. GGUF v1 stored counts and string lengths as
/// u32; a reader that parses it as v2/v3 takes the u32 pairs for u64 counts. It is
/// refused by version before any count is read.
#[test]
fn gguf_v1_is_refused() {
    let mut e = Encoder::new();
    e.raw(b"GGUF").u32(1).u32(0).u32(1); // v1: u32 tensor and metadata counts
    e.u32(4).raw(b"name").u32(8).u32(3).raw(b"abc"); // v1: u32 string lengths
    assert_mentions(&refuse(e.bytes), &["unsupported GGUF version 1"]);
    let mut w = GgufWriter::new();
    w.version(1).kv("general.name", Value::String("v1".into()));
    assert_mentions(&refuse(w.to_bytes()), &["unsupported GGUF version 1"]);
}

/// Bug class: allocation sized by an unchecked count. A file that claims 10^12 tensors
/// (a `reserve` of 10^12 tensor infos) is refused with the count and what the file
/// could hold.
#[test]
fn a_trillion_tensors() {
    let mut e = Encoder::new();
    e.header(3, 1_000_000_000_000, 0).raw(&[0u8; 1000]);
    let msg = refuse(e.bytes);
    assert_mentions(
        &msg,
        &["tensor count", "1000000000000 is impossible", "at most 30"],
    );
}

/// Bug class: a tensor larger than memory, mapped or copied on trust. A 2^40-element
/// F32 tensor needs 4 TiB (0x40000000000 bytes), which the message states.
#[test]
fn a_tensor_of_2_pow_40_elements() {
    let msg = refuse(tensors(
        &[("huge", &[1 << 20, 1 << 20], GgmlType::F32.id(), 0)],
        64,
    ));
    assert_mentions(
        &msg,
        &["tensor \"huge\"", "0x40000000000", "past end of file"],
    );
    // Quantized: 2^40 Q4_0 elements need 2^35 blocks of 18 bytes (0x9000000000).
    let msg = refuse(tensors(
        &[("huge", &[1 << 20, 1 << 20], GgmlType::Q4_0.id(), 0)],
        64,
    ));
    assert_mentions(
        &msg,
        &["tensor \"huge\"", "0x9000000000", "past end of file"],
    );
}

/// Bug class: allocation sized by an unchecked count. A vocabulary of 10^9 tokens,
/// claimed by the array length (one `reserve` of 10^9 strings) or by `vocab_size`, is
/// refused with the figure.
#[test]
fn a_billion_token_vocabulary() {
    let mut e = Encoder::new();
    e.header(3, 0, 1)
        .string(b"tokenizer.ggml.tokens")
        .u32(9)
        .u32(8)
        .u64(1_000_000_000)
        .string(b"a");
    let msg = refuse(e.bytes);
    assert_mentions(
        &msg,
        &[
            "tokenizer.ggml.tokens",
            "1000000000 is impossible",
            "at most",
        ],
    );
    // A vocab_size that disagrees with the tensors: refused by shape, nothing allocated.
    let msg = Tiny::new()
        .set("llama.vocab_size", Value::U32(1_000_000_000))
        .refuse();
    assert_mentions(&msg, &["token_embd.weight", "1000000000"]);
}

/// Bug class: a context that needs more memory than the machine has. The KV cache is
/// refused with the figure it would need instead of aborting in the allocator.
#[test]
fn a_context_larger_than_memory() {
    let m = Model::from_gguf(Tiny::new().file()).unwrap();
    let Err(err) = m.new_cache(1 << 10, 1 << 30, KvType::F32, 8 << 30) else {
        panic!("a 8 TiB KV cache was allocated");
    };
    let err = err.to_string();
    // 1 layer * 1024 seqs * 2^30 positions * 32 wide * 2 (K and V) * 4 bytes.
    let need: u128 = 1 << (10 + 30 + 5 + 1 + 2);
    assert_mentions(&err, &[&format!("needs {need} bytes"), "limit of 8192 MiB"]);
    // Tokenizer-only files stay usable after all of the above.
    Tokenizer::from_gguf(&Tiny::new().file()).unwrap();
}

/// The size cases again in a child process under `ulimit -v` (2 GiB of address space):
/// an allocation of anything like the claimed size would abort it.
#[test]
fn huge_claims_are_refused_under_a_memory_limit() {
    if std::env::var_os("WOOLLY_HOSTILE_CHILD").is_some() {
        return; // the child runs the named tests themselves
    }
    let exe = std::env::current_exe().unwrap();
    let script = "ulimit -v 2097152 && exec \"$0\" --exact --test-threads=1 \
                  a_trillion_tensors a_tensor_of_2_pow_40_elements \
                  a_billion_token_vocabulary block_count_of_a_million \
                  tensor_sizes_whose_sum_overflows";
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(&exe)
        .env("WOOLLY_HOSTILE_CHILD", "1")
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .expect("running the test binary under ulimit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("5 passed"),
        "under ulimit -v: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Bug class: corrupt weights sampled as if they were numbers. A NaN in a projection
/// (norm weights are checked at load, matrices are not read until used) makes the
/// logits NaN; the forward pass reports it as an error instead of handing NaN to the
/// sampler.
#[test]
fn nan_weights_give_an_error_not_a_token() {
    let mut tiny = Tiny::new();
    let (_, _, data) = tiny
        .tensors
        .iter_mut()
        .find(|(name, _, _)| name == "blk.0.ffn_down.weight")
        .unwrap();
    data[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    let model = Model::from_gguf(tiny.file()).expect("matrices are not scanned at load");
    let mut kv = model
        .new_cache(1, 8, woolly_model::KvType::F16, u128::MAX)
        .unwrap();
    let mut scratch = model.new_scratch(2, 8);
    let batch = [
        woolly_model::BatchToken {
            token: 1,
            pos: 0,
            seq: 0,
            logits: false,
        },
        woolly_model::BatchToken {
            token: 260,
            pos: 1,
            seq: 0,
            logits: true,
        },
    ];
    let err = model
        .forward(&batch, &mut kv, &mut scratch)
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &["not finite", "batch index 1"]);
}
