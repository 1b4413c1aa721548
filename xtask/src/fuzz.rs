//! `cargo xtask fuzz [--time 60] [TARGET]`: builds the cargo-fuzz targets under `fuzz/`
//! with nightly Rust and runs each for `--time` seconds.
//!
//! - Installs cargo-fuzz (`cargo install cargo-fuzz`) when `cargo +nightly fuzz` is
//!   missing.
//! - Builds with debug assertions (integer overflow panics) and without a sanitizer: the
//!   code under test is safe Rust, and the fuzzer runs several times faster without ASan.
//! - Each target reads its committed seeds (`fuzz/seeds/<target>/`) and a scratch corpus
//!   (`fuzz/corpus/<target>/`, emptied first) that receives the inputs it finds; libFuzzer
//!   runs with `-rss_limit_mb=2048 -timeout=10`, so a blow-up in memory or time is a
//!   finding like a panic.
//! - Stops at the first failing target with a non-zero exit, printing where the crashing
//!   input was written (`fuzz/artifacts/<target>/`) and how to replay it. Each target that
//!   passes prints a cargo-test-like `test result: ok. 1 passed; ...` line, so `cargo
//!   xtask ci` counts it.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

/// The fuzz targets, in the order they run.
pub const TARGETS: &[&str] = &[
    "gguf_load",
    "tokenize",
    "decode_stream",
    "chat_template",
    "sampling_params",
];

/// Flags of `cargo fuzz build` and `cargo fuzz run` (they must match, or `run` rebuilds).
const BUILD_FLAGS: &[&str] = &["--sanitizer", "none", "--debug-assertions"];

/// Memory limit of one fuzzing process, in MiB.
const RSS_LIMIT_MB: u32 = 2048;

/// Seconds one input may take before libFuzzer reports a timeout.
const INPUT_TIMEOUT_S: u32 = 10;

/// What libFuzzer reported about one run.
#[derive(Debug, Default)]
struct Stats {
    execs: Option<u64>,
    cov: Option<u64>,
    features: Option<u64>,
    corpus: Option<u64>,
    peak_rss_mb: Option<u64>,
    /// The input libFuzzer wrote on a crash, timeout or out-of-memory.
    artifact: Option<String>,
}

impl Stats {
    /// Reads one line of libFuzzer's output.
    fn scan(&mut self, line: &str) {
        // Status lines: `#1234	NEW    cov: 567 ft: 890 corp: 12/3456b ...`.
        if line.starts_with('#') {
            let mut words = line.split_whitespace();
            let mut prev = "";
            for w in words.by_ref() {
                match prev {
                    "cov:" => self.cov = w.parse().ok().or(self.cov),
                    "ft:" => self.features = w.parse().ok().or(self.features),
                    "corp:" => {
                        self.corpus = w.split('/').next().and_then(|n| n.parse().ok());
                    }
                    _ => {}
                }
                prev = w;
            }
        }
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units: ") {
            self.execs = n.trim().parse().ok();
        }
        if let Some(n) = line.strip_prefix("stat::peak_rss_mb: ") {
            self.peak_rss_mb = n.trim().parse().ok();
        }
        if let Some((_, path)) = line.split_once("Test unit written to ") {
            self.artifact = Some(path.trim().to_owned());
        }
    }
}

/// The workspace root (xtask lives one level below it).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_owned()
}

/// `cargo +nightly ARGS` run from `dir`, with the variables the outer (stable) cargo set
/// for xtask removed so they do not pin the toolchain.
fn nightly(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("+nightly").args(args).current_dir(dir);
    for var in [
        "CARGO",
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTDOC",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Installs cargo-fuzz unless `cargo +nightly fuzz --version` already works.
fn ensure_cargo_fuzz(root: &Path) -> anyhow::Result<()> {
    let present = nightly(root, &["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    eprintln!("=== xtask fuzz: cargo-fuzz is missing, running cargo install cargo-fuzz");
    let status = Command::new("cargo")
        .args(["install", "cargo-fuzz"])
        .status()
        .context("running cargo install cargo-fuzz")?;
    if !status.success() {
        bail!("cargo install cargo-fuzz failed ({status})");
    }
    Ok(())
}

/// Builds and runs `target` (one of [`TARGETS`], or all when None) for `time` seconds
/// each.
pub fn run(time: u64, target: Option<String>) -> anyhow::Result<()> {
    let targets: Vec<&str> = match &target {
        None => TARGETS.to_vec(),
        Some(t) => match TARGETS.iter().find(|&&k| k == t) {
            Some(&k) => vec![k],
            None => bail!("unknown fuzz target {t:?}; known: {}", TARGETS.join(", ")),
        },
    };
    let root = workspace_root();
    let fuzz_dir = root.join("fuzz");
    let started = Instant::now();
    ensure_cargo_fuzz(&root)?;

    eprintln!("=== xtask fuzz: building {}", targets.join(", "));
    let mut build_args = vec!["fuzz", "build"];
    build_args.extend_from_slice(BUILD_FLAGS);
    if let Some(t) = &target {
        build_args.push(t);
    }
    let status = nightly(&root, &build_args)
        .status()
        .context("running cargo +nightly fuzz build")?;
    if !status.success() {
        bail!("cargo +nightly fuzz build failed ({status})");
    }
    eprintln!(
        "=== xtask fuzz: built in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    for t in targets {
        run_target(&root, &fuzz_dir, t, time)?;
    }
    eprintln!(
        "=== xtask fuzz: done in {:.0} s (builds included)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs one target; an error when libFuzzer found something.
fn run_target(root: &Path, fuzz_dir: &Path, target: &str, time: u64) -> anyhow::Result<()> {
    let seeds = fuzz_dir.join("seeds").join(target);
    let corpus = fuzz_dir.join("corpus").join(target);
    let artifacts = fuzz_dir.join("artifacts").join(target);
    if !seeds.is_dir() {
        bail!("no seed corpus at {}", seeds.display());
    }
    if corpus.exists() {
        std::fs::remove_dir_all(&corpus)
            .with_context(|| format!("emptying {}", corpus.display()))?;
    }
    std::fs::create_dir_all(&corpus)?;
    std::fs::create_dir_all(&artifacts)?;
    let log_path = artifacts.join("fuzz.log");
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;

    let time_arg = format!("-max_total_time={time}");
    let rss_arg = format!("-rss_limit_mb={RSS_LIMIT_MB}");
    let timeout_arg = format!("-timeout={INPUT_TIMEOUT_S}");
    let prefix_arg = format!("-artifact_prefix={}/", artifacts.display());
    let corpus_arg = corpus.display().to_string();
    let seeds_arg = seeds.display().to_string();
    let mut args = vec!["fuzz", "run"];
    args.extend_from_slice(BUILD_FLAGS);
    args.extend_from_slice(&[
        target,
        &corpus_arg,
        &seeds_arg,
        "--",
        &time_arg,
        &rss_arg,
        &timeout_arg,
        &prefix_arg,
        "-print_final_stats=1",
    ]);
    eprintln!(
        "=== xtask fuzz: {target} for {time} s (log: {})",
        log_path.display()
    );
    let t0 = Instant::now();
    let mut child = nightly(root, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting cargo +nightly fuzz run")?;
    // libFuzzer writes its status to stderr; keep stdout (the target's prints) too.
    let stdout = child.stdout.take().expect("piped");
    let out_thread = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let mut stats = Stats::default();
    let mut tail: Vec<String> = Vec::new();
    let stderr = child.stderr.take().expect("piped");
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        writeln!(log, "{line}")?;
        stats.scan(&line);
        tail.push(line);
        if tail.len() > 200 {
            tail.drain(..100);
        }
    }
    for line in out_thread.join().unwrap_or_default() {
        writeln!(log, "{line}")?;
    }
    let status = child.wait()?;
    let secs = t0.elapsed().as_secs_f64();
    let num = |v: Option<u64>| v.map_or("?".to_owned(), |v| v.to_string());

    if status.success() {
        println!(
            "fuzz {target}: {} execs in {secs:.0} s, cov {}, ft {}, corpus {}, peak rss {} MiB",
            num(stats.execs),
            num(stats.cov),
            num(stats.features),
            num(stats.corpus),
            num(stats.peak_rss_mb),
        );
        println!(
            "test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; \
             finished in {secs:.2}s"
        );
        return Ok(());
    }

    let keep = tail.len().saturating_sub(60);
    for line in &tail[keep..] {
        eprintln!("{line}");
    }
    println!("fuzz {target}: FAILED after {secs:.0} s ({status})");
    println!(
        "test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; \
         finished in {secs:.2}s"
    );
    match &stats.artifact {
        Some(path) => bail!(
            "fuzz target {target} failed; the input is {path}\n\
             replay: cargo +nightly fuzz run {} {target} {path}\n\
             then add it to woolly-model/tests/hostile_regressions.rs (full log: {})",
            BUILD_FLAGS.join(" "),
            log_path.display()
        ),
        None => bail!(
            "fuzz target {target} failed ({status}) without writing an input; see {}",
            log_path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_libfuzzer_output() {
        let mut s = Stats::default();
        for line in [
            "#2\tINITED cov: 120 ft: 130 corp: 5/20Kb exec/s: 0 rss: 40Mb",
            "#4096\tpulse  cov: 150 ft: 190 corp: 9/21Kb lim: 4096 exec/s: 2048 rss: 41Mb",
            "stat::number_of_executed_units: 123456",
            "stat::peak_rss_mb: 77",
            "artifact_prefix='fuzz/artifacts/x/'; Test unit written to fuzz/artifacts/x/crash-ab12",
        ] {
            s.scan(line);
        }
        assert_eq!(s.cov, Some(150));
        assert_eq!(s.features, Some(190));
        assert_eq!(s.corpus, Some(9));
        assert_eq!(s.execs, Some(123_456));
        assert_eq!(s.peak_rss_mb, Some(77));
        assert_eq!(s.artifact.as_deref(), Some("fuzz/artifacts/x/crash-ab12"));
    }
}
