//! `woolly-run bench`: llama-bench's method and table.
//!
//! pp N: one batch of N random tokens into an empty context (prompt processing).
//! tg N: N random tokens evaluated one at a time from an empty context (generation).
//! tg NxS (`-s S`): S sequences generating N tokens each, their steps evaluated as one
//! batch of S tokens (the server's continuous batching); t/s counts every sequence's.
//! `@ dD` (`-d D`, llama-bench's `--n-depth`): each sequence's context holds D tokens
//! before the test starts (filled untimed), so the test measures attention over a long
//! context too.
//! Each test runs once to warm up, then `-r` times; the table shows mean +- stddev t/s.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde_json::json;
use woolly_model::{BatchToken, KvType, Model};

use crate::commands::common::available_memory;
use crate::model_arg;

/// Output format.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Output {
    /// A markdown table, like llama-bench.
    Md,
    /// One JSON object.
    Json,
}

/// Arguments of `woolly-run bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// The GGUF model (default: SmolLM2-135M-Instruct).
    #[arg(short, long, value_name = "MODEL")]
    model: Option<PathBuf>,
    /// Prompt-processing test size (0: skip).
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_name = "N",
        default_value_t = 512
    )]
    n_prompt: usize,
    /// Generation test size (0: skip).
    #[arg(short = 'n', long = "n-gen", value_name = "N", default_value_t = 128)]
    n_gen: usize,
    /// Repetitions of each test.
    #[arg(
        short = 'r',
        long = "repetitions",
        value_name = "N",
        default_value_t = 5
    )]
    reps: usize,
    /// Thread counts to test, comma separated.
    #[arg(
        short = 't',
        long = "threads",
        value_name = "N,..",
        value_delimiter = ','
    )]
    threads: Vec<usize>,
    /// Sequences generating together in the generation test, comma separated (the
    /// decode steps of all of them run as one batch).
    #[arg(
        short = 's',
        long = "sequences",
        value_name = "N,..",
        value_delimiter = ',',
        default_value = "1"
    )]
    sequences: Vec<usize>,
    /// Context depths, comma separated: tokens already in each sequence's context when a
    /// test starts (filled untimed), as llama-bench's `-d`.
    #[arg(
        short = 'd',
        long = "n-depth",
        value_name = "N,..",
        value_delimiter = ',',
        default_value = "0"
    )]
    depths: Vec<usize>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Md)]
    output: Output,
}

/// A small deterministic generator for the benchmark's random tokens (SplitMix64).
struct TokenStream(u64);

impl TokenStream {
    fn next(&mut self, n_vocab: usize) -> u32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n_vocab as u64) as u32
    }
}

fn mean_stddev(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// Tokens a batch fills the context with before a test (`-d`).
const DEPTH_BATCH: usize = 512;

/// One timed run of a test: tokens per second. `seqs` sequences generate together
/// (generation only), each after `depth` tokens of context filled untimed.
fn run_test(
    model: &Model,
    (pp, n, seqs): (bool, usize, usize),
    depth: usize,
    rng: &mut TokenStream,
) -> anyhow::Result<f64> {
    let n_vocab = model.config().n_vocab;
    let n_ctx = depth
        .checked_add(n)
        .and_then(|c| c.checked_add(1))
        .context("-d/--n-depth plus the test size: too many tokens")?;
    let mut kv = model.new_cache(seqs, n_ctx, KvType::F16, available_memory())?;
    let max_batch = (if pp { n } else { seqs }).max(DEPTH_BATCH.min(depth.saturating_mul(seqs)));
    let mut scratch = model.new_scratch(max_batch, n_ctx);
    let filled: Vec<BatchToken> = (0..seqs)
        .flat_map(|seq| (0..depth).map(move |pos| (seq, pos)))
        .map(|(seq, pos)| BatchToken {
            token: rng.next(n_vocab),
            pos,
            seq,
            logits: false,
        })
        .collect();
    for chunk in filled.chunks(DEPTH_BATCH) {
        model.forward(chunk, &mut kv, &mut scratch)?;
    }
    let tokens: Vec<u32> = (0..n * seqs).map(|_| rng.next(n_vocab)).collect();
    let t0 = Instant::now();
    if pp {
        let batch: Vec<BatchToken> = tokens
            .iter()
            .enumerate()
            .map(|(i, &token)| BatchToken {
                token,
                pos: depth + i,
                seq: 0,
                logits: i + 1 == n,
            })
            .collect();
        model.forward(&batch, &mut kv, &mut scratch)?;
    } else {
        let mut batch = Vec::with_capacity(seqs);
        for i in 0..n {
            batch.clear();
            batch.extend((0..seqs).map(|seq| BatchToken {
                token: tokens[seq * n + i],
                pos: depth + i,
                seq,
                logits: true,
            }));
            model.forward(&batch, &mut kv, &mut scratch)?;
        }
    }
    Ok((n * seqs) as f64 / t0.elapsed().as_secs_f64())
}

/// Runs `woolly-run bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.reps == 0 {
        bail!("-r/--repetitions must be at least 1");
    }
    let threads = if args.threads.is_empty() {
        vec![num_cpus::get_physical()]
    } else {
        args.threads.clone()
    };
    if threads.contains(&0) {
        bail!("-t/--threads: thread counts must be at least 1");
    }
    if args.sequences.contains(&0) {
        bail!("-s/--sequences: sequence counts must be at least 1");
    }
    woolly_kernels::Isa::from_env()?;
    let path = model_arg::resolve(args.model)?;
    let model = Model::load(&path).with_context(|| format!("{}", path.display()))?;
    let size = model.gguf().size();
    let params: u64 = model.gguf().tensors().iter().map(|t| t.n_elements).sum();
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let isa = model.isa().as_str();

    let mut results = Vec::new();
    for &t in &threads {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build()?;
        let tests = std::iter::once((true, args.n_prompt, 1))
            .chain(args.sequences.iter().map(|&s| (false, args.n_gen, s)))
            .filter(|&(_, n, _)| n > 0)
            .flat_map(|test| args.depths.iter().map(move |&d| (test, d)));
        for ((pp, n, seqs), depth) in tests {
            let mut test = match (pp, seqs) {
                (true, _) => format!("pp{n}"),
                (false, 1) => format!("tg{n}"),
                (false, s) => format!("tg{n}x{s}"),
            };
            if depth > 0 {
                test.push_str(&format!(" @ d{depth}"));
            }
            let mut rng = TokenStream(42);
            let xs = pool.install(|| -> anyhow::Result<Vec<f64>> {
                run_test(&model, (pp, n, seqs), depth, &mut rng)?; // warm-up
                (0..args.reps)
                    .map(|_| run_test(&model, (pp, n, seqs), depth, &mut rng))
                    .collect()
            })?;
            let (mean, sd) = mean_stddev(&xs);
            if matches!(args.output, Output::Md) && results.is_empty() {
                println!("| model | size | params | isa | threads | test | t/s |");
                println!("| --- | ---: | ---: | --- | ---: | ---: | ---: |");
            }
            if matches!(args.output, Output::Md) {
                println!(
                    "| {name} | {:.2} MiB | {:.2} M | {isa} | {t} | {test} | {mean:.2} ± {sd:.2} |",
                    size as f64 / (1 << 20) as f64,
                    params as f64 / 1e6
                );
            }
            results.push(
                json!({"test": test, "threads": t, "sequences": seqs, "depth": depth, "tps": mean, "stddev": sd}),
            );
        }
    }
    if matches!(args.output, Output::Json) {
        println!(
            "{}",
            json!({"engine": "woolly", "model": name, "size_bytes": size, "isa": isa, "results": results})
        );
    }
    Ok(())
}
