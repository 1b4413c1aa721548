//! Runs `tests/openai_client.py` (the official `openai` Python client against the live
//! server, and the bounded load test) so that `cargo test` covers it.
//!
//! Without python3 or the `openai` package this prints `SKIPPED: ...` and returns, unless
//! `CI` or `WOOLLY_REQUIRE_OPENAI` is set, when it fails: CI installs the package
//! (`python3 -m pip install openai`).

mod serve_common;

use std::process::Command;

#[test]
fn official_openai_client_and_load_test() {
    let has_openai = Command::new("python3")
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_openai {
        let required = ["CI", "WOOLLY_REQUIRE_OPENAI"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty() && x != "false"));
        assert!(
            !required,
            "python3 with the openai package is required here: python3 -m pip install openai"
        );
        println!("SKIPPED: python3 with the openai package not found (pip install openai)");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_client.py");
    let model = serve_common::tiny_model();
    let status = Command::new("python3")
        .arg(script)
        .args(["--bin", env!("CARGO_BIN_EXE_woolly-run")])
        .arg("--model")
        .arg(&model)
        .arg("--load")
        .status()
        .expect("python3 runs");
    assert!(status.success(), "openai_client.py failed: {status}");
}
