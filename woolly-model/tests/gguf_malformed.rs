//! Crafted GGUF files, one per way a file can lie. Each must be refused with an error
//! that names the field at fault: never a panic, an abort or a huge allocation.

use woolly_kernels::GgmlType;
use woolly_model::gguf::writer::{Encoder, GgufWriter};
use woolly_model::gguf::{Array, GgufError, GgufFile, Value};

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

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A valid file: two metadata pairs and two F32 tensors.
fn valid() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.kv("general.architecture", Value::String("llama".into()))
        .kv("llama.block_count", Value::U32(2))
        .tensor("a", &[8], GgmlType::F32, f32_bytes(&[1.0; 8]))
        .tensor("b", &[4, 2], GgmlType::F32, f32_bytes(&[2.0; 8]));
    w
}

/// The header and one tensor info, written by hand so a single field can be wrong.
fn one_tensor(dims: &[u64], type_id: u32, offset: u64, data_len: usize) -> Vec<u8> {
    let mut e = Encoder::new();
    e.header(3, 1, 0)
        .tensor_info("t", dims, type_id, offset)
        .pad_to(32);
    e.raw(&vec![0u8; data_len]);
    e.bytes
}

#[test]
fn valid_file_round_trips() {
    let f = GgufFile::from_bytes(valid().to_bytes()).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(
        f.metadata().get_str("general.architecture").unwrap(),
        Some("llama")
    );
    assert_eq!(f.metadata().get_u32("llama.block_count").unwrap(), Some(2));
    let b = f.tensor("b").unwrap();
    assert_eq!(
        (b.dims.clone(), b.n_elements, b.n_bytes),
        (vec![4, 2], 8, 32)
    );
    assert_eq!(f.tensor_data(b), f32_bytes(&[2.0; 8]).as_slice());
}

#[test]
fn version_2_is_read() {
    let mut w = valid();
    w.version(2);
    assert_eq!(GgufFile::from_bytes(w.to_bytes()).unwrap().version(), 2);
}

#[test]
fn every_value_type_round_trips() {
    let values = [
        Value::U8(1),
        Value::I8(-2),
        Value::U16(3),
        Value::I16(-4),
        Value::U32(5),
        Value::I32(-6),
        Value::U64(7),
        Value::I64(-8),
        Value::F32(9.5),
        Value::F64(-10.25),
        Value::Bool(true),
        Value::String("héllo".into()),
        Value::Array(Array::String(vec!["a".into(), "".into()])),
        Value::Array(Array::Array(vec![
            Array::I32(vec![1, 2]),
            Array::F64(vec![]),
        ])),
        Value::Array(Array::Bool(vec![true, false])),
    ];
    let mut w = GgufWriter::new();
    for (i, v) in values.iter().enumerate() {
        w.kv(&format!("k{i}"), v.clone());
    }
    let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
    for (i, v) in values.iter().enumerate() {
        assert_eq!(f.metadata().get(&format!("k{i}")), Some(v));
    }
}

#[test]
fn bad_magic() {
    let mut bytes = valid().to_bytes();
    bytes[..4].copy_from_slice(b"GGML");
    assert!(matches!(
        GgufFile::from_bytes(bytes.clone()),
        Err(GgufError::BadMagic { .. })
    ));
    assert_mentions(&refuse(bytes), &["not a GGUF file", "magic"]);
}

#[test]
fn four_byte_file() {
    assert_mentions(&refuse(b"GGUF".to_vec()), &["header: version", "file ends"]);
    assert_mentions(&refuse(Vec::new()), &["not a GGUF file"]);
}

#[test]
fn unsupported_versions() {
    for v in [0, 1, 4, u32::MAX] {
        let mut e = Encoder::new();
        e.header(v, 0, 0);
        assert_mentions(
            &refuse(e.bytes),
            &["unsupported GGUF version", &v.to_string()],
        );
    }
}

#[test]
fn truncated_header_kv_and_tensor_table() {
    let bytes = valid().to_bytes();
    // Header cut inside the tensor count.
    assert_mentions(&refuse(bytes[..12].to_vec()), &["header: tensor count"]);
    // Too short for the two pairs the header announces.
    assert_mentions(
        &refuse(bytes[..30].to_vec()),
        &["header: metadata count", "impossible"],
    );
    // Cut inside the first value: 24 (header) + 28 (key) + 4 (type) + 8 (length) + 2.
    assert_mentions(
        &refuse(bytes[..66].to_vec()),
        &["metadata key \"general.architecture\"", "file ends"],
    );
    // Cut inside the tensor table: find where tensor "b"'s info begins.
    let table_end = {
        let f = GgufFile::from_bytes(bytes.clone()).unwrap();
        f.data_offset() as usize
    };
    let msg = refuse(bytes[..table_end - 40].to_vec());
    assert_mentions(&msg, &["tensor"]);
}

#[test]
fn string_length_past_end_of_file() {
    let mut e = Encoder::new();
    e.header(3, 0, 1).u64(1 << 40).raw(b"general.name");
    assert_mentions(
        &refuse(e.bytes),
        &["metadata pair 0 (key)", "string of 1099511627776 bytes"],
    );
    let mut e = Encoder::new();
    e.header(3, 0, 1)
        .string(b"k")
        .u32(8)
        .u64(u64::MAX)
        .raw(b"x");
    assert_mentions(&refuse(e.bytes), &["metadata key \"k\"", "file ends"]);
}

#[test]
fn array_length_past_end_of_file() {
    let mut e = Encoder::new();
    // An array of 2^60 u32: must be refused before allocating 4 EiB.
    e.header(3, 0, 1)
        .string(b"k")
        .u32(9)
        .u32(4)
        .u64(1 << 60)
        .u32(7);
    assert_mentions(
        &refuse(e.bytes),
        &["metadata key \"k\"", "1152921504606846976 is impossible"],
    );
    // An array of 2^40 strings.
    let mut e = Encoder::new();
    e.header(3, 0, 1).string(b"k").u32(9).u32(8).u64(1 << 40);
    assert_mentions(&refuse(e.bytes), &["impossible"]);
}

#[test]
fn absurd_tensor_and_kv_counts_are_refused_before_allocating() {
    let mut e = Encoder::new();
    e.header(3, 1_000_000_000_000, 0);
    assert_mentions(
        &refuse(e.bytes),
        &["header: tensor count", "1000000000000 is impossible"],
    );
    let mut e = Encoder::new();
    e.header(3, 0, u64::MAX);
    assert_mentions(&refuse(e.bytes), &["header: metadata count", "impossible"]);
}

#[test]
fn n_dims_zero_or_more_than_four() {
    for n in [0u32, 5, u32::MAX] {
        let mut e = Encoder::new();
        e.header(3, 1, 0).string(b"t").u32(n).raw(&[0u8; 64]);
        assert_mentions(
            &refuse(e.bytes),
            &["tensor \"t\": n_dims", "expected 1..=4"],
        );
    }
}

#[test]
fn zero_dimension() {
    let msg = refuse(one_tensor(&[32, 0], 0, 0, 0));
    assert_mentions(&msg, &["tensor \"t\": dimension 1", "is 0"]);
}

#[test]
fn overflowing_dimensions() {
    let msg = refuse(one_tensor(&[1 << 32, 1 << 32], 0, 0, 0));
    assert_mentions(&msg, &["tensor \"t\": dimensions", "2^63"]);
}

#[test]
fn quantized_byte_size_overflows_while_element_count_fits() {
    // 2^62 f32 elements fit in i64, but 2^64 bytes do not.
    let msg = refuse(one_tensor(&[1 << 31, 1 << 31], 0, 0, 0));
    assert_mentions(&msg, &["tensor \"t\"", "overflows"]);
}

#[test]
fn unknown_type_id() {
    for id in [4u32, 5, 16, 31, 999] {
        let msg = refuse(one_tensor(&[32], id, 0, 128));
        assert_mentions(&msg, &["tensor \"t\": type", &format!("type id {id}")]);
    }
}

#[test]
fn row_length_not_a_multiple_of_the_block() {
    let msg = refuse(one_tensor(&[100, 2], GgmlType::Q4K.id(), 0, 4096));
    assert_mentions(
        &msg,
        &["tensor \"t\": dimension 0", "not a multiple", "256"],
    );
}

#[test]
fn data_offset_not_aligned() {
    let msg = refuse(one_tensor(&[8], 0, 4, 64));
    assert_mentions(
        &msg,
        &["tensor \"t\": offset", "not a multiple of the alignment 32"],
    );
}

#[test]
fn data_past_end_of_file() {
    let msg = refuse(one_tensor(&[64], 0, 0, 100));
    assert_mentions(&msg, &["tensor \"t\"", "ends past end of file"]);
    // An offset so large that offset + size wraps.
    let msg = refuse(one_tensor(&[8], 0, u64::MAX - 31, 32));
    assert_mentions(&msg, &["tensor \"t\"", "past end of file"]);
}

#[test]
fn overlapping_tensors() {
    let mut e = Encoder::new();
    e.header(3, 2, 0)
        .tensor_info("a", &[16], 0, 0)
        .tensor_info("b", &[16], 0, 32)
        .pad_to(32)
        .raw(&[0u8; 128]);
    assert_mentions(&refuse(e.bytes), &["tensor \"b\"", "overlaps tensor \"a\""]);
}

#[test]
fn duplicate_tensor_names() {
    let mut w = valid();
    w.tensor("a", &[8], GgmlType::F32, f32_bytes(&[0.0; 8]));
    assert_mentions(
        &refuse(w.to_bytes()),
        &["tensor \"a\" appears more than once"],
    );
}

#[test]
fn duplicate_keys() {
    let mut w = valid();
    w.kv("llama.block_count", Value::U32(3));
    assert_mentions(
        &refuse(w.to_bytes()),
        &["\"llama.block_count\" appears more than once"],
    );
}

#[test]
fn metadata_key_of_the_wrong_type() {
    let mut w = valid();
    w.kv("llama.context_length", Value::String("2048".into()));
    let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
    let msg = f
        .metadata()
        .get_u32("llama.context_length")
        .unwrap_err()
        .to_string();
    assert_mentions(
        &msg,
        &[
            "llama.context_length",
            "expected an unsigned integer",
            "found string",
        ],
    );
    let msg = f
        .metadata()
        .get_str("llama.block_count")
        .unwrap_err()
        .to_string();
    assert_mentions(&msg, &["llama.block_count", "expected string", "found u32"]);
    let msg = f
        .metadata()
        .get_f32_array("general.architecture")
        .unwrap_err()
        .to_string();
    assert_mentions(&msg, &["expected array of f32"]);
}

#[test]
fn negative_integer_where_u32_is_needed() {
    let mut w = valid();
    w.kv("llama.embedding_length", Value::I32(-1));
    let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
    let msg = f
        .metadata()
        .get_u32("llama.embedding_length")
        .unwrap_err()
        .to_string();
    assert_mentions(&msg, &["llama.embedding_length", "-1", "out of range"]);
}

#[test]
fn invalid_utf8_in_a_string() {
    let mut e = Encoder::new();
    e.header(3, 0, 1).string(b"k").u32(8).string(b"ok\xff\xfe");
    assert_mentions(&refuse(e.bytes), &["metadata key \"k\"", "not valid UTF-8"]);
    let mut e = Encoder::new();
    e.header(3, 0, 1).string(b"\xc3\x28").u32(4).u32(1);
    assert_mentions(
        &refuse(e.bytes),
        &["metadata pair 0 (key)", "not valid UTF-8"],
    );
}

#[test]
fn alignment_zero_or_not_a_power_of_two() {
    for a in [0u32, 3, 48, 1 << 30] {
        let mut e = Encoder::new();
        e.header(3, 0, 1).string(b"general.alignment").u32(4).u32(a);
        assert_mentions(&refuse(e.bytes), &["general.alignment", "power of two"]);
    }
}

#[test]
fn alignment_stored_as_the_wrong_integer_type() {
    // Bug class: loaders that read general.alignment with the wrong width read past
    // the value. GGUF says u32; anything else is refused.
    let mut e = Encoder::new();
    e.header(3, 0, 1)
        .string(b"general.alignment")
        .u32(10)
        .u64(32);
    assert_mentions(
        &refuse(e.bytes),
        &["general.alignment", "expected u32", "found u64"],
    );
}

#[test]
fn custom_alignment_is_honoured() {
    let mut w = valid();
    w.alignment(64);
    let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.data_offset() % 64, 0);
    assert_eq!(
        f.tensor_data(f.tensor("b").unwrap()),
        f32_bytes(&[2.0; 8]).as_slice()
    );
}

#[test]
fn arrays_nested_a_thousand_deep() {
    let mut e = Encoder::new();
    e.header(3, 0, 1).string(b"k").u32(9);
    for _ in 0..1000 {
        e.u32(9).u64(1);
    }
    e.u32(4).u64(0);
    assert_mentions(
        &refuse(e.bytes),
        &["metadata key \"k\"", "nested more than"],
    );
}

#[test]
fn unknown_value_type() {
    let mut e = Encoder::new();
    e.header(3, 0, 1).string(b"k").u32(13).u32(0);
    assert_mentions(
        &refuse(e.bytes),
        &["metadata key \"k\"", "unknown value type id 13"],
    );
}

#[test]
fn bool_that_is_neither_0_nor_1() {
    let mut e = Encoder::new();
    e.header(3, 0, 1).string(b"k").u32(7).raw(&[2]);
    assert_mentions(&refuse(e.bytes), &["metadata key \"k\"", "bool byte is 2"]);
}

#[test]
fn every_prefix_of_a_valid_file_is_refused_without_panic() {
    let bytes = valid().to_bytes();
    let full = GgufFile::from_bytes(bytes.clone()).unwrap();
    let needed = full.data_offset() as usize + 64;
    for len in 0..needed {
        assert!(
            GgufFile::from_bytes(bytes[..len].to_vec()).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
}

#[test]
fn open_reports_missing_files_by_path() {
    let msg = GgufFile::open("/nonexistent/model.gguf")
        .unwrap_err()
        .to_string();
    assert_mentions(&msg, &["/nonexistent/model.gguf"]);
}
