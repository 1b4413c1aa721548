//! `woolly-run`: inspect GGUF models (and, as Woolly grows, generate, chat, bench, serve).
//!
//! Results go to stdout; notices, progress and errors to stderr. Every error is one line
//! and a non-zero exit.

use clap::{Parser, Subcommand};

mod commands;
mod model_arg;

#[derive(Parser)]
#[command(
    name = "woolly-run",
    version,
    about = "Run GGUF language models on the CPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Describe a GGUF model: architecture, dimensions, vocabulary, tensor types.
    Info(commands::info::InfoArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(args) => commands::info::run(args),
    };
    if let Err(e) = result {
        eprintln!("woolly-run: error: {e:#}");
        std::process::exit(1);
    }
}
