//! Options shared by the subcommands that run a model: the model itself, threads,
//! context and batch sizes, and sampling.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use woolly_model::sampling::SamplingParams;
use woolly_model::{KvType, Model, SessionOptions};

use crate::model_arg;

/// Which model, and how to run it.
#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// The GGUF model (default: SmolLM2-135M-Instruct, fetched into the cache).
    #[arg(short, long, value_name = "MODEL")]
    pub model: Option<PathBuf>,
    /// Context length in tokens (default: the model's, at most 4096).
    #[arg(short = 'c', long = "ctx", value_name = "N")]
    pub ctx: Option<usize>,
    /// Prompt tokens evaluated per batch.
    #[arg(short = 'b', long = "batch", value_name = "N", default_value_t = 512)]
    pub batch: usize,
    /// Worker threads (default: the number of physical cores).
    #[arg(short, long, value_name = "N")]
    pub threads: Option<usize>,
    /// Store the KV cache in f32 instead of f16.
    #[arg(long)]
    pub kv_f32: bool,
}

/// Sampling options, as llama.cpp names them.
#[derive(Args, Clone, Debug)]
pub struct SamplingArgs {
    /// Temperature; 0 samples greedily.
    #[arg(
        long = "temp",
        value_name = "T",
        default_value_t = 0.8,
        allow_negative_numbers = true
    )]
    pub temperature: f32,
    /// Keep the K most likely tokens (0: all).
    #[arg(long, value_name = "K", default_value_t = 40)]
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches P.
    #[arg(
        long,
        value_name = "P",
        default_value_t = 0.95,
        allow_negative_numbers = true
    )]
    pub top_p: f32,
    /// Drop tokens less likely than P times the most likely one.
    #[arg(
        long,
        value_name = "P",
        default_value_t = 0.05,
        allow_negative_numbers = true
    )]
    pub min_p: f32,
    /// Penalize tokens seen in the last --repeat-last-n tokens (1: off).
    #[arg(
        long,
        value_name = "X",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    pub repeat_penalty: f32,
    /// How many recent tokens the repeat penalty looks at.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Random seed (same seed, same output).
    #[arg(short = 's', long, value_name = "N")]
    pub seed: Option<u64>,
}

impl SamplingArgs {
    /// Checked sampling parameters.
    pub fn params(&self) -> anyhow::Result<SamplingParams> {
        let params = SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            seed: self.seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64)
            }),
        };
        params.validate()?;
        Ok(params)
    }
}

/// A loaded model and how long loading took.
pub struct Loaded {
    pub model: Model,
    pub load_ms: f64,
    pub threads: usize,
}

/// Sets up the thread pool and loads the model.
pub fn load(args: &RunArgs) -> anyhow::Result<Loaded> {
    let threads = args.threads.unwrap_or_else(num_cpus::get_physical).max(1);
    if args.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    // The first build wins; later calls in the same process keep it.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
    // Check a forced ISA before anything else, so the error names it.
    woolly_kernels::Isa::from_env()?;
    let path = model_arg::resolve(args.model.clone())?;
    let t0 = Instant::now();
    let spinner = std::io::stderr().is_terminal().then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.set_message(format!("loading {}", path.display()));
        s.enable_steady_tick(std::time::Duration::from_millis(100));
        s
    });
    let model = Model::load(&path).with_context(|| format!("{}", path.display()));
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    let model = model?;
    Ok(Loaded {
        model,
        load_ms: t0.elapsed().as_secs_f64() * 1e3,
        threads,
    })
}

/// Memory the machine can give: MemAvailable from /proc/meminfo, or unlimited.
pub(crate) fn available_memory() -> u128 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u128>().ok())
        })
        .map_or(u128::MAX, |kb| kb * 1024)
}

/// Session options from the command line, with the context checked against the model.
pub fn session_options(args: &RunArgs, model: &Model) -> anyhow::Result<SessionOptions> {
    let trained = model.config().n_ctx_train;
    let n_ctx = args.ctx.unwrap_or(trained.min(4096));
    if n_ctx == 0 {
        bail!("--ctx must be at least 1");
    }
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if n_ctx > trained {
        eprintln!(
            "woolly-run: warning: --ctx {n_ctx} is larger than the {trained} tokens the model was trained on"
        );
    }
    Ok(SessionOptions {
        n_ctx,
        n_batch: args.batch,
        kv_type: if args.kv_f32 {
            KvType::F32
        } else {
            KvType::F16
        },
        kv_limit_bytes: available_memory(),
    })
}

/// A progress bar on stderr when it is a terminal and the work is long enough to watch.
pub fn progress_bar(total: usize, what: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() || total < 64 {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} tokens")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    Some(bar)
}
