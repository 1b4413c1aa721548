//! `woolly-run bench`, driven as a person runs it.

use assert_cmd::Command;
use woolly_model::paths::conformance_file;

fn woolly() -> Command {
    Command::cargo_bin("woolly-run").unwrap()
}

/// The `results` of `woolly-run bench ARGS -o json` on the conformance pack's tiny model.
fn bench_results(args: &[&str]) -> Vec<serde_json::Value> {
    let model = conformance_file("models/tiny-q4km.gguf");
    let out = woolly()
        .arg("bench")
        .args(args)
        .args(["-o", "json", "-m"])
        .arg(&model)
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    v["results"].as_array().unwrap().clone()
}

#[test]
fn bench_json_has_every_test_including_batched_generation() {
    let results = bench_results(&["-p", "8", "-n", "4", "-r", "1", "-t", "1", "-s", "1,3"]);
    let tests: Vec<(&str, u64)> = results
        .iter()
        .map(|r| {
            (
                r["test"].as_str().unwrap(),
                r["sequences"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(tests, [("pp8", 1), ("tg4", 1), ("tg4x3", 3)]);
    assert!(results.iter().all(|r| r["tps"].as_f64().unwrap() > 0.0));
}

#[test]
fn bench_refuses_zero_sequences() {
    let model = conformance_file("models/tiny-q4km.gguf");
    let out = woolly()
        .args(["bench", "-s", "0", "-m"])
        .arg(&model)
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("-s/--sequences"), "{err}");
}

#[test]
fn bench_runs_each_test_at_each_depth() {
    let results = bench_results(&[
        "-p", "8", "-n", "4", "-r", "1", "-t", "1", "-s", "1,2", "-d", "0,600",
    ]);
    let tests: Vec<(&str, u64)> = results
        .iter()
        .map(|r| (r["test"].as_str().unwrap(), r["depth"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        tests,
        [
            ("pp8", 0),
            ("pp8 @ d600", 600),
            ("tg4", 0),
            ("tg4 @ d600", 600),
            ("tg4x2", 0),
            ("tg4x2 @ d600", 600)
        ]
    );
}

#[test]
fn bench_refuses_a_context_it_cannot_hold() {
    let model = conformance_file("models/tiny-q4km.gguf");
    for depth in ["100000000000000", "18446744073709551615"] {
        let out = woolly()
            .args(["bench", "-p", "0", "-n", "4", "-d", depth, "-m"])
            .arg(&model)
            .assert()
            .failure();
        let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            err.lines().count() == 1 && (err.contains("KV cache") || err.contains("-d/--n-depth")),
            "{err}"
        );
    }
}
