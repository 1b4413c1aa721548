//! `woolly-run generate` and `tokenize`, and the errors a person can act on, driven
//! through the real binary.

use std::io::Read;
use std::process::Stdio;

use assert_cmd::Command;
use woolly_model::gguf::Value;
use woolly_model::gguf::writer::GgufWriter;
use woolly_model::paths::conformance_file;

fn woolly() -> Command {
    Command::cargo_bin("woolly-run").unwrap()
}

fn tiny() -> String {
    conformance_file("models/tiny-q4km.gguf")
        .display()
        .to_string()
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// `woolly-run generate` on the tiny model, asked for far more tokens than a test
/// waits for, with stdout and stderr piped.
fn spawn_endless_generate() -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("woolly-run"))
        .args([
            "generate",
            "-m",
            &tiny(),
            "-p",
            "Once",
            "-n",
            "100000",
            "--ignore-eos",
            "--temp",
            "0",
        ])
        .args(["--ctx", "4096"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs a command expected to fail; returns its stderr, checked to be one line.
fn one_line_error(cmd: &mut Command) -> String {
    let out = cmd.assert().failure().get_output().clone();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn greedy_generation_reports_json_with_every_key() {
    let out = woolly()
        .args([
            "generate",
            "-m",
            &tiny(),
            "-p",
            "The capital of France is",
            "-n",
            "8",
            "--temp",
            "0",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    for key in [
        "text",
        "prompt_tokens",
        "generated_tokens",
        "load_ms",
        "prompt_tps",
        "gen_tps",
        "isa",
        "threads",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    // The golden tokenization of this prompt, BOS included (tiny-q4km adds BOS).
    assert_eq!(
        v["prompt_tokens"],
        serde_json::json!([1, 450, 7483, 310, 3444, 338])
    );
    // llama.cpp's greedy continuation starts with these tokens (golden case 0).
    let golden: serde_json::Value = serde_json::from_slice(
        &std::fs::read(conformance_file("golden/tiny-q4km.golden.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        v["generated_tokens"].as_array().unwrap()[..4],
        golden["cases"][0]["greedy"].as_array().unwrap()[..4]
    );
}

/// Generation that runs into the end of the context stops there with its output, exit
/// status 0, and says why on stderr; one that ends by its token limit does not.
#[test]
fn the_end_of_the_context_stops_generation_with_a_notice() {
    let notice = "stopped at the end of the context (24 positions";
    let run = |n: &str| {
        let out = woolly()
            .args(["generate", "-m", &tiny(), "-p", "Once upon a time", "-n", n])
            .args(["--temp", "0", "--ignore-eos", "--ctx", "24"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        (String::from_utf8_lossy(&out.stdout).into_owned(), err)
    };
    let (text, err) = run("100");
    assert!(err.contains(notice), "{err}");
    assert!(!text.trim().is_empty(), "the output so far is printed");
    let (_, err) = run("4");
    assert!(!err.contains(notice), "{err}");
}

#[test]
fn same_seed_same_output() {
    let run = |seed: &str| {
        let out = woolly()
            .args([
                "generate",
                "-m",
                &tiny(),
                "-p",
                "Once upon a time",
                "-n",
                "12",
                "--seed",
                seed,
                "--json",
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        json_of(&out)["generated_tokens"].clone()
    };
    assert_eq!(run("7"), run("7"));
}

#[test]
fn prompt_file_is_taken_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prompt.txt");
    std::fs::write(&path, "Hello there \n").unwrap();
    let ids = |args: &[&str]| {
        let out = woolly()
            .args(["tokenize", "-m", &tiny()])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let from_file = ids(&["-f", path.to_str().unwrap()]);
    assert_eq!(from_file, ids(&["-p", "Hello there \n"]));
    assert_ne!(
        from_file,
        ids(&["-p", "Hello there"]),
        "trailing space and newline count"
    );
}

#[test]
fn tokenize_parses_special_tokens_only_when_asked() {
    let vocab = conformance_file("vocab/ggml-vocab-llama-bpe.gguf")
        .display()
        .to_string();
    let run = |extra: &[&str]| {
        let out = woolly()
            .args([
                "tokenize",
                "-m",
                &vocab,
                "-p",
                "<|begin_of_text|>",
                "--no-bos",
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    assert_eq!(run(&["--special"]), "128000");
    assert_ne!(run(&[]), "128000");
}

#[test]
fn errors_are_one_line_and_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let not_gguf = dir.path().join("x.gguf");
    std::fs::write(&not_gguf, b"not a model").unwrap();
    let mut w = GgufWriter::new();
    w.kv("general.architecture", Value::String("gpt2".into()));
    let gpt2 = dir.path().join("gpt2.gguf");
    w.write(&gpt2).unwrap();
    let generate = |model: &str| {
        let mut c = woolly();
        c.args(["generate", "-m", model, "-p", "hi", "-n", "1"]);
        c
    };

    assert!(one_line_error(&mut generate("/no/such/file.gguf")).contains("/no/such/file.gguf"));
    assert!(one_line_error(&mut generate(not_gguf.to_str().unwrap())).contains("not a GGUF file"));
    assert!(
        one_line_error(&mut generate(gpt2.to_str().unwrap()))
            .contains("unsupported architecture \"gpt2\"")
    );
    let long = "word ".repeat(50);
    let err =
        one_line_error(woolly().args(["generate", "-m", &tiny(), "-p", &long, "--ctx", "16"]));
    assert!(err.contains("longer than the context of 16"), "{err}");
    let err = one_line_error(generate(&tiny()).args(["--temp", "-1"]));
    assert!(err.contains("temperature"), "{err}");
    let err = one_line_error(generate(&tiny()).args(["--top-p", "1.5"]));
    assert!(err.contains("top_p"), "{err}");
    let err = one_line_error(generate(&tiny()).env("WOOLLY_ISA", "neon"));
    assert!(err.contains("neon"), "{err}");
    let err = one_line_error(generate(&tiny()).env("WOOLLY_ISA", "sse9"));
    assert!(err.contains("sse9"), "{err}");
}

#[test]
fn a_closed_stdout_pipe_ends_quietly() {
    let mut child = spawn_endless_generate();
    let mut first = [0u8; 10];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap(); // then the pipe closes
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
}

#[test]
fn context_limits_are_checked_before_allocating() {
    // More than the model was trained for: a warning, and it runs.
    let out = woolly()
        .args([
            "generate",
            "-m",
            &tiny(),
            "-p",
            "hi",
            "-n",
            "2",
            "--ctx",
            "8192",
        ])
        .assert()
        .success()
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("larger than the 4096 tokens the model was trained on"),
        "{err}"
    );
    // More than memory allows: refused with the figure, before allocating (after the
    // warning above).
    let out = woolly()
        .args(["generate", "-m", &tiny(), "-p", "hi", "--ctx", "4000000000"])
        .assert()
        .failure()
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.trim().lines().last().unwrap_or("");
    assert!(
        last.contains("KV cache") && last.contains("7812500 MiB"),
        "{err}"
    );
}

#[test]
fn an_unsupported_tensor_type_is_named() {
    let mut bytes = std::fs::read(conformance_file("models/tiny-q4km.gguf")).unwrap();
    // Rewrite the type id of the first Q4_K tensor (12) to IQ2_XXS (16).
    let file = woolly_model::gguf::GgufFile::from_bytes(bytes.clone()).unwrap();
    let name = &file
        .tensors()
        .iter()
        .find(|t| t.ty == woolly_kernels::GgmlType::Q4K)
        .unwrap()
        .name;
    let at = bytes
        .windows(name.len())
        .position(|w| w == name.as_bytes())
        .unwrap()
        + name.len();
    let n_dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let ty_at = at + 4 + 8 * n_dims;
    assert_eq!(
        u32::from_le_bytes(bytes[ty_at..ty_at + 4].try_into().unwrap()),
        12
    );
    bytes[ty_at..ty_at + 4].copy_from_slice(&16u32.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iq2.gguf");
    std::fs::write(&path, bytes).unwrap();
    let err = one_line_error(woolly().args(["generate", "-m", path.to_str().unwrap(), "-p", "hi"]));
    assert!(
        err.contains(name.as_str()) && err.contains("type id 16"),
        "{err}"
    );
}

#[test]
fn sigint_during_generate_ends_cleanly_with_the_output_flushed() {
    let mut child = spawn_endless_generate();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).unwrap(); // it is generating
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status);
    assert!(err.contains("generated"), "timings still printed: {err}");
    assert!(!err.contains("panicked"), "{err}");
}
