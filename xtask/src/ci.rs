//! `cargo xtask ci`: the format, clippy and rustdoc checks, then every suite, one
//! summary line at the end.
//!
//! Each step's output is streamed through while it is scanned for cargo test's
//! `test result:` lines and for `SKIPPED:` lines, so the last line can say how many
//! tests passed, failed and were skipped across all suites.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Context;

/// Totals over every suite.
#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
    skipped: u64,
    failed_steps: Vec<String>,
}

impl Tally {
    fn scan(&mut self, line: &str) {
        if let Some(rest) = line.trim_start().strip_prefix("test result: ") {
            self.passed += count_before(rest, " passed");
            self.failed += count_before(rest, " failed");
        }
        if line.contains("SKIPPED:") {
            self.skipped += 1;
        }
    }
}

/// In `ok. 12 passed; 0 failed; ...`, the number before `word`.
fn count_before(text: &str, word: &str) -> u64 {
    text.split(';')
        .find_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(word.trim_start())
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The cargo arguments of a conformance-only run (llama.cpp agreement, printed).
const CONFORMANCE: &[&str] = &[
    "test",
    "--workspace",
    "--test",
    "conformance",
    "--",
    "--nocapture",
];

/// Runs `cargo ARGS`, streaming and scanning its output, and says how long it took.
fn step(tally: &mut Tally, name: &str, args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<()> {
    eprintln!("\n=== xtask ci: {name}: cargo {}", args.join(" "));
    let started = Instant::now();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut child = Command::new(cargo)
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let stderr = child.stderr.take().expect("piped");
    let err_lines = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            seen.push(line);
        }
        seen
    });
    let stdout = child.stdout.take().expect("piped");
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let _ = writeln!(out, "{line}");
        tally.scan(&line);
    }
    drop(out);
    for line in err_lines.join().unwrap_or_default() {
        tally.scan(&line);
    }
    let status = child.wait()?;
    if !status.success() {
        tally.failed_steps.push(name.to_owned());
    }
    eprintln!(
        "=== xtask ci: {name}: {} after {:.0} s",
        if status.success() { "ok" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let mut tally = Tally::default();
    // The code as the README asks for it: formatted, clippy-clean, and documented
    // without broken links.
    step(&mut tally, "format", &["fmt", "--all", "--check"], &[])?;
    step(
        &mut tally,
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    step(
        &mut tally,
        "docs",
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    step(
        &mut tally,
        "fetch SmolLM2",
        &["xtask", "fetch-model", "smollm2"],
        &[],
    )?;
    step(
        &mut tally,
        "workspace tests",
        &["test", "--workspace", "--no-fail-fast", "--", "--nocapture"],
        &[],
    )?;

    // The model's agreement with llama.cpp on the scalar kernels too (the workspace run
    // above used the dispatched, fastest ones).
    step(
        &mut tally,
        "conformance on scalar kernels",
        CONFORMANCE,
        &[("WOOLLY_ISA", "scalar")],
    )?;

    // The ggml-exact mode reproduces llama.cpp's arithmetic: there the conformance test
    // holds the issue's own bounds (NRMSE <= 0.02, greedy >= 4 of 5).
    step(
        &mut tally,
        "conformance in ggml-exact mode",
        CONFORMANCE,
        &[("WOOLLY_GGML_EXACT", "1")],
    )?;

    // NEON for real: the kernel and model suites under qemu, with and without dotprod.
    step(
        &mut tally,
        "aarch64 under qemu",
        &["xtask", "test", "--aarch64"],
        &[],
    )?;

    // Every fuzz target for 60 s (cargo-fuzz on nightly; installed when missing).
    step(
        &mut tally,
        "fuzz targets",
        &["xtask", "fuzz", "--time", "60"],
        &[],
    )?;

    if !tally.failed_steps.is_empty() {
        eprintln!("xtask ci: failing steps: {}", tally.failed_steps.join(", "));
    }
    println!(
        "summary: {} passed, {} failed, {} skipped in {:.0} s",
        tally.passed,
        tally.failed,
        tally.skipped,
        started.elapsed().as_secs_f64()
    );
    if tally.failed_steps.is_empty() && tally.failed == 0 {
        Ok(())
    } else {
        std::process::exit(1)
    }
}
