//! `woolly-run chat`: an interactive conversation, rendered with the model's own chat
//! template, reusing the KV cache across turns.
//!
//! Each turn re-renders the whole conversation; the session keeps the tokens it already
//! evaluated, so only what is new (the user's message and the template's markers) is
//! evaluated. Ctrl-C stops the current answer; Ctrl-D (end of input) or `/exit` leaves.

use std::io::{BufRead, IsTerminal, Write};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Args;
use woolly_model::Session;
use woolly_model::chat::{ChatTemplate, Message};
use woolly_model::generate::{GenerateOptions, generate};
use woolly_model::sampling::Sampler;

use super::common::{self, RunArgs, SamplingArgs};

/// Arguments of `woolly-run chat`.
#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// A system prompt for the conversation.
    #[arg(long, value_name = "TEXT")]
    system: Option<String>,
    /// Most tokens per answer.
    #[arg(
        short = 'n',
        long = "n-predict",
        value_name = "N",
        default_value_t = 512
    )]
    n_predict: usize,
}

/// Runs `woolly-run chat`.
pub fn run(args: ChatArgs) -> anyhow::Result<()> {
    let params = args.sampling.params()?;
    let loaded = common::load(&args.run)?;
    let model = &loaded.model;
    let tokenizer = model.tokenizer();
    let template = ChatTemplate::from_gguf(model.gguf(), tokenizer)?;
    let opts = common::session_options(&args.run, model)?;
    let mut session = Session::new(model, opts)?;
    let mut sampler = Sampler::new(params);

    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = Arc::clone(&cancel);
        let _ = ctrlc::set_handler(move || cancel.store(true, Ordering::SeqCst));
    }

    let mut messages: Vec<Message> = Vec::new();
    if let Some(system) = &args.system {
        messages.push(Message::system(system.clone()));
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "woolly-run chat: type a message and press Enter; Ctrl-C stops an answer, Ctrl-D or /exit leaves."
        );
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!("> ");
            let _ = std::io::stderr().flush();
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        let line = line.trim_end_matches('\r');
        if line == "/exit" {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        messages.push(Message::user(line.to_owned()));
        let rendered = template.render(&messages, true)?;
        let prompt = rendered.encode(tokenizer, true)?;
        if prompt.len() >= session.n_ctx() {
            eprintln!(
                "woolly-run: the conversation is {} tokens, the context holds {}: start a new chat or use a larger --ctx",
                prompt.len(),
                session.n_ctx()
            );
            messages.pop();
            continue;
        }
        cancel.store(false, Ordering::SeqCst);
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let gen_opts = GenerateOptions {
            max_tokens: args.n_predict.min(session.n_ctx() - prompt.len()),
            stop: Vec::new(),
            ignore_eos: false,
        };
        let generation = generate(
            &mut session,
            &prompt,
            &mut sampler,
            &gen_opts,
            |_, _| {},
            |piece| {
                if cancel.load(Ordering::SeqCst)
                    || out.write_all(piece.as_bytes()).is_err()
                    || out.flush().is_err()
                {
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            },
        )?;
        let _ = writeln!(out);
        let _ = out.flush();
        messages.push(Message::assistant(generation.text.clone()));
    }
    Ok(())
}
