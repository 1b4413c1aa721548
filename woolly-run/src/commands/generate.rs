//! `woolly-run generate`: continue a prompt, streaming tokens to stdout.

use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;
use woolly_model::generate::{FinishReason, GenerateOptions, generate};
use woolly_model::sampling::Sampler;
use woolly_model::{Session, SessionError};

use super::common::{self, RunArgs, SamplingArgs};

/// Arguments of `woolly-run generate`.
#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// The prompt; `-` reads it from stdin.
    #[arg(short, long, value_name = "TEXT", conflicts_with = "file")]
    prompt: Option<String>,
    /// Read the prompt from FILE, byte for byte.
    #[arg(short, long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Tokens to generate.
    #[arg(
        short = 'n',
        long = "n-predict",
        value_name = "N",
        default_value_t = 128
    )]
    n_predict: usize,
    /// Stop when this text is generated (repeatable); it is not printed.
    #[arg(long, value_name = "TEXT")]
    stop: Vec<String>,
    /// Keep generating past the end-of-generation token.
    #[arg(long)]
    ignore_eos: bool,
    /// Parse special-token text in the prompt (e.g. `<|im_start|>`) as special tokens.
    #[arg(long)]
    special: bool,
    /// Do not add the BOS token even if the model asks for it.
    #[arg(long)]
    no_bos: bool,
    /// Print one JSON object at the end instead of streaming.
    #[arg(long)]
    json: bool,
}

/// The prompt text: `-p`, `-p -` (stdin) or `-f FILE`, exactly as given.
pub fn read_prompt(prompt: &Option<String>, file: &Option<PathBuf>) -> anyhow::Result<String> {
    match (prompt, file) {
        (Some(p), _) if p == "-" => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("reading the prompt from stdin")?;
            String::from_utf8(bytes).context("the prompt on stdin is not UTF-8")
        }
        (Some(p), _) => Ok(p.clone()),
        (None, Some(f)) => {
            let bytes = std::fs::read(f)
                .with_context(|| format!("cannot read prompt file {}", f.display()))?;
            String::from_utf8(bytes)
                .with_context(|| format!("prompt file {} is not UTF-8", f.display()))
        }
        (None, None) => bail!("no prompt: give -p TEXT, -p - (stdin) or -f FILE"),
    }
}

/// Runs `woolly-run generate`.
pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let params = args.sampling.params()?;
    let text = read_prompt(&args.prompt, &args.file)?;
    let loaded = common::load(&args.run)?;
    let model = &loaded.model;
    let tokenizer = model.tokenizer();
    let mut prompt = tokenizer.encode(&text, !args.no_bos, args.special)?;
    if args.no_bos && prompt.first() == tokenizer.bos().as_ref() {
        prompt.remove(0);
    }
    if prompt.is_empty() {
        bail!("the prompt is empty and the model adds no BOS token: nothing to continue");
    }
    let opts = common::session_options(&args.run, model)?;
    if prompt.len() >= opts.n_ctx {
        bail!(
            "the prompt is {} tokens, longer than the context of {} (use a larger --ctx)",
            prompt.len(),
            opts.n_ctx
        );
    }
    let mut session = Session::new(model, opts)?;
    let mut sampler = Sampler::new(params);

    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = Arc::clone(&cancel);
        // A second Ctrl-C while the handler is set falls back to the default (exit).
        let _ = ctrlc::set_handler(move || cancel.store(true, Ordering::SeqCst));
    }
    let bar = common::progress_bar(prompt.len(), "prompt");
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut pipe_closed = false;
    let gen_opts = GenerateOptions {
        max_tokens: args.n_predict,
        stop: args.stop.clone(),
        ignore_eos: args.ignore_eos,
    };
    let result = generate(
        &mut session,
        &prompt,
        &mut sampler,
        &gen_opts,
        |done, total| {
            if let Some(bar) = &bar {
                bar.set_position(done as u64);
                if done == total {
                    bar.finish_and_clear();
                }
            }
        },
        |piece| {
            if cancel.load(Ordering::SeqCst) {
                return ControlFlow::Break(());
            }
            if !args.json && (out.write_all(piece.as_bytes()).is_err() || out.flush().is_err()) {
                // A closed pipe (`| head`): stop quietly.
                pipe_closed = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        },
    );
    let generation = match result {
        Ok(g) => g,
        Err(woolly_model::generate::GenerateError::Session(SessionError::ContextFull {
            needed,
            n_ctx,
        })) => {
            bail!("{needed} tokens do not fit in the context of {n_ctx} (use a larger --ctx)")
        }
        Err(e) => return Err(e.into()),
    };
    if pipe_closed {
        return Ok(());
    }
    let prompt_tps =
        generation.prompt_evaluated as f64 / generation.prompt_time.as_secs_f64().max(1e-9);
    let gen_tps = generation.tokens.len() as f64 / generation.gen_time.as_secs_f64().max(1e-9);
    let isa = model.isa().as_str();
    if args.json {
        let obj = json!({
            "text": generation.text,
            "prompt_tokens": prompt,
            "generated_tokens": generation.tokens,
            "finish_reason": generation.finish.as_str(),
            "load_ms": loaded.load_ms,
            "prompt_ms": generation.prompt_time.as_secs_f64() * 1e3,
            "gen_ms": generation.gen_time.as_secs_f64() * 1e3,
            "prompt_tps": prompt_tps,
            "gen_tps": gen_tps,
            "isa": isa,
            "threads": loaded.threads,
        });
        let _ = writeln!(out, "{obj}");
        return Ok(());
    }
    let _ = writeln!(out);
    let _ = out.flush();
    eprintln!(
        "\nwoolly-run: load {:.0} ms | prompt {} tokens, {:.1} t/s | generated {} tokens, {:.1} t/s | isa {isa} | threads {}",
        loaded.load_ms,
        prompt.len(),
        prompt_tps,
        generation.tokens.len(),
        gen_tps,
        loaded.threads
    );
    // Fewer tokens than asked, and no end token or stop string: the context ran out.
    if generation.finish == FinishReason::Length && generation.tokens.len() < args.n_predict {
        eprintln!(
            "woolly-run: stopped at the end of the context ({} positions; a larger --ctx allows more)",
            session.n_ctx()
        );
    }
    Ok(())
}
