//! `woolly-run info`, driven as a person runs it.

use assert_cmd::Command;
use woolly_model::paths::conformance_file;

fn woolly() -> Command {
    Command::cargo_bin("woolly-run").unwrap()
}

#[test]
fn info_describes_the_tiny_model() {
    let model = conformance_file("models/tiny-q4km.gguf");
    let out = woolly()
        .arg("info")
        .arg(&model)
        .arg("--tensors")
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    for needle in [
        "architecture           llama",
        "embedding_length       512",
        "q4_K: 25",
        "q6_K: 5",
        "blk.3.ffn_up.weight",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
}

#[test]
fn info_json_is_one_object() {
    let model = conformance_file("models/tiny-q4km.gguf");
    let out = woolly()
        .args(["info", "--json", "-m"])
        .arg(&model)
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["head_count_kv"], 2);
    assert_eq!(v["vocab_size"], 32000);
    assert_eq!(v["tensor_types"]["q6_K"], 5);
}

#[test]
fn info_on_a_non_gguf_file_is_one_line_and_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not.gguf");
    std::fs::write(&path, b"hello world").unwrap();
    let out = woolly().arg("info").arg(&path).assert().failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("not a GGUF file"), "{err}");
}

#[test]
fn info_on_a_missing_file_names_it() {
    let out = woolly()
        .args(["info", "/no/such/model.gguf"])
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("/no/such/model.gguf"), "{err}");
}
