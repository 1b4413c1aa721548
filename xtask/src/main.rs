//! Woolly's project automation, run as `cargo xtask <command>`.
//!
//! - `ci`: every test suite, ending with one summary line (passed, failed, skipped).
//! - `fetch-model NAME`: download a known model into the cache (`smollm2`).
//! - `fuzz [--time 60] [TARGET]`: the cargo-fuzz targets under `fuzz/`, each for `--time` s.
//! - `bench [--quick]`: benchmarks, side by side with llama.cpp when installed.
//! - `roofline [-t N] [MODEL.gguf..]`: DRAM read bandwidth and each model's tg roofline.
//! - `clock [-t 1,2,4..]`: per-core clock and FMA rate with N threads busy: the scaling ceiling.
//! - `make-model`: a Llama GGUF with random weights at a real shape, for benchmarks.
//! - `gen --model M.gguf`: extend `woolly-kernels/specialize.toml` with a model's dimensions.
//! - `test --aarch64`: the kernel and model suites under qemu.

mod aarch64;
mod bench;
mod ci;
mod clock;
mod fuzz;
mod make_model;
mod specialize;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Woolly's project automation")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every test suite, as CI does, and print a summary line.
    Ci,
    /// Run test suites; `--aarch64`: woolly-kernels and woolly-model under qemu (NEON).
    Test {
        /// Cross-build for aarch64 and run under qemu-user, with and without dotprod.
        #[arg(long)]
        aarch64: bool,
    },
    /// Benchmarks: kernels, end-to-end pp/tg, DRAM roofline, llama.cpp side by side.
    Bench {
        /// Smaller tests, fewer repetitions, no criterion run.
        #[arg(long)]
        quick: bool,
        /// Also benchmark the llama7b shape.
        #[arg(long)]
        llama7b: bool,
        /// Thread counts, comma separated (default: every thread the machine offers).
        #[arg(short, long, value_delimiter = ',', value_parser = thread_count)]
        threads: Vec<usize>,
    },
    /// Measure the DRAM read bandwidth and print each model's token-generation roofline
    /// (weight bytes read per token / bandwidth).
    Roofline {
        /// Threads reading (default: all the machine's).
        #[arg(short, long, value_parser = thread_count)]
        threads: Option<usize>,
        /// GGUF models whose roofline to print.
        models: Vec<std::path::PathBuf>,
    },
    /// Measure each thread's clock and FMA rate with 1, 2, 4.. threads busy at once, and
    /// the speed-up a compute-bound job can reach at each count.
    Clock {
        /// Thread counts, comma separated (default: 1, powers of two, every thread).
        #[arg(short, long, value_delimiter = ',', value_parser = thread_count)]
        threads: Vec<usize>,
    },
    /// Write a Llama GGUF with seeded random weights at a real model shape.
    MakeModel {
        /// tiny, tinyllama, llama7b or llama8b.
        #[arg(long)]
        shape: String,
        /// q4_k_m, q8_0 or f16.
        #[arg(long = "type", default_value = "q4_k_m")]
        ty: String,
        /// A GGUF whose vocabulary and tokenizer to use (a vocab-only file is enough).
        #[arg(long)]
        vocab_from: std::path::PathBuf,
        /// Where to write the model.
        #[arg(long)]
        out: std::path::PathBuf,
        /// Seed of the weights.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Build and run the fuzz targets (nightly, cargo-fuzz), each for `--time` seconds.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        time: u64,
        /// One target (gguf_load, tokenize, decode_stream, chat_template,
        /// sampling_params); all when absent.
        target: Option<String>,
    },
    /// Extend woolly-kernels/specialize.toml with a model's dimensions, so the next
    /// build specializes the kernels for it.
    Gen {
        /// The model whose hidden, head and FFN sizes to add.
        #[arg(short, long)]
        model: std::path::PathBuf,
    },
    /// Download a known model into the cache (sha256-checked).
    FetchModel {
        /// The model's short name: smollm2.
        name: String,
    },
}

/// A `--threads` value: a whole number, at least 1.
fn thread_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("a thread count must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// The default thread count: every thread the machine offers.
fn all_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs the command; an error is one line on stderr (its causes joined, no backtrace
/// even where `RUST_BACKTRACE` is set, as in CI) and exit status 1.
fn main() -> std::process::ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(command: Cmd) -> anyhow::Result<()> {
    match command {
        Cmd::Ci => ci::run(),
        Cmd::Test { aarch64: true } => aarch64::run(),
        Cmd::Test { aarch64: false } => {
            bail!("cargo xtask test: pass --aarch64 (the host suites run in cargo xtask ci)")
        }
        Cmd::Bench {
            quick,
            llama7b,
            threads,
        } => bench::run(bench::BenchOptions {
            quick,
            llama7b,
            threads: if threads.is_empty() {
                vec![all_threads()]
            } else {
                threads
            },
        }),
        Cmd::Roofline { threads, models } => {
            bench::print_roofline(threads.unwrap_or_else(all_threads), &models)
        }
        Cmd::Clock { threads } => clock::run(&if threads.is_empty() {
            clock::default_counts(all_threads())
        } else {
            threads
        }),
        Cmd::MakeModel {
            shape,
            ty,
            vocab_from,
            out,
            seed,
        } => make_model::run(&shape, &ty, &vocab_from, &out, seed),
        Cmd::Fuzz { time, target } => fuzz::run(time, target),
        Cmd::Gen { model } => specialize::run(
            &model,
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../woolly-kernels/specialize.toml"),
        ),
        Cmd::FetchModel { name } => {
            let Some(model) = woolly_model::fetch::known_model(&name) else {
                let known: Vec<_> = woolly_model::fetch::KNOWN_MODELS
                    .iter()
                    .map(|m| m.name)
                    .collect();
                bail!("unknown model {name:?}; known: {}", known.join(", "));
            };
            let path = woolly_model::fetch::fetch(model, |msg| eprintln!("{msg}"))
                .with_context(|| format!("fetching {name}"))?;
            println!("{}", path.display());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::thread_count;

    #[test]
    fn thread_counts_are_whole_numbers_from_one() {
        assert_eq!(thread_count("16"), Ok(16));
        assert_eq!(thread_count("1"), Ok(1));
        assert!(thread_count("0").unwrap_err().contains("at least 1"));
        assert!(thread_count("-2").is_err());
        assert!(thread_count("x").is_err());
    }
}
