//! Woolly's project automation, run as `cargo xtask <command>`.
//!
//! - `ci`: every test suite, ending with one summary line (passed, failed, skipped).
//! - `fetch-model NAME`: download a known model into the cache (`smollm2`).

mod ci;

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
    /// Download a known model into the cache (sha256-checked).
    FetchModel {
        /// The model's short name: smollm2.
        name: String,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Ci => ci::run(),
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
