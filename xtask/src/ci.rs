//! `cargo xtask ci`: the format, clippy and rustdoc checks, then every suite, one
//! summary line at the end.
//!
//! Each step's output is streamed through while it is scanned for cargo test's
//! `test result:` lines and for `SKIPPED:` lines, so the last line can say how many
//! tests passed, failed and were skipped across all suites.

use std::collections::VecDeque;
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
    /// Each failing step's name and the last lines it printed, repeated at the end of
    /// the run so that a log cut to its head and tail still says why.
    failed_steps: Vec<(String, Vec<String>)>,
}

/// Lines of a failing step's output repeated at the end of the run.
const FAILURE_TAIL: usize = 12;

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
    // The last lines of stdout, for the failure report.
    let mut out_tail = VecDeque::with_capacity(FAILURE_TAIL);
    let stdout = child.stdout.take().expect("piped");
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let _ = writeln!(out, "{line}");
        tally.scan(&line);
        if out_tail.len() == FAILURE_TAIL {
            out_tail.pop_front();
        }
        out_tail.push_back(line);
    }
    drop(out);
    let err_lines = err_lines.join().unwrap_or_default();
    for line in &err_lines {
        tally.scan(line);
    }
    let status = child.wait()?;
    if !status.success() {
        // stderr last: cargo and xtask say why a step failed there.
        let out_tail = Vec::from(out_tail);
        let tail = |lines: &[String], n: usize| lines[lines.len().saturating_sub(n)..].to_vec();
        let mut last = tail(&out_tail, FAILURE_TAIL / 3);
        last.extend(tail(&err_lines, FAILURE_TAIL - last.len()));
        tally
            .failed_steps
            .push((format!("{name} ({status})"), last));
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

    for (name, last) in &tally.failed_steps {
        eprintln!("xtask ci: {name} failed; its last lines:");
        for line in last {
            eprintln!("    {line}");
        }
    }
    if !tally.failed_steps.is_empty() {
        let names: Vec<&str> = tally.failed_steps.iter().map(|(n, _)| n.as_str()).collect();
        eprintln!("xtask ci: failing steps: {}", names.join(", "));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_step_keeps_the_lines_that_say_why() {
        let mut tally = Tally::default();
        step(&mut tally, "bogus", &["woolly-no-such-subcommand"], &[]).unwrap();
        let [(name, last)] = &tally.failed_steps[..] else {
            panic!("one failing step, got {:?}", tally.failed_steps);
        };
        assert!(name.starts_with("bogus ("), "{name}");
        assert!(
            last.iter().any(|l| l.contains("no such command")),
            "{last:?}"
        );
        assert!(last.len() <= FAILURE_TAIL);
    }

    #[test]
    fn test_results_are_counted() {
        let mut tally = Tally::default();
        tally.scan("test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured");
        tally.scan("test result: FAILED. 3 passed; 2 failed; 0 ignored");
        tally.scan("SKIPPED: q4k on avx512 (CPU lacks it)");
        assert_eq!((tally.passed, tally.failed, tally.skipped), (15, 2, 1));
    }
}
