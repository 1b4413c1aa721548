//! `woolly-run`: generate text with GGUF models, and inspect them.
//!
//! Results go to stdout; notices, progress and errors to stderr. Every error is one line
//! and a non-zero exit.

use clap::{Parser, Subcommand};

mod commands;
mod model_arg;
mod serve;

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
    /// Continue a prompt, streaming the generated text to stdout.
    Generate(commands::generate::GenerateArgs),
    /// Chat with a model, turn by turn, using its own chat template.
    Chat(commands::chat::ChatArgs),
    /// Describe a GGUF model: architecture, dimensions, vocabulary, tensor types.
    Info(commands::info::InfoArgs),
    /// Print the token ids of a text.
    Tokenize(commands::tokenize::TokenizeArgs),
    /// Measure prompt processing and generation speed, as llama-bench does.
    Bench(commands::bench::BenchArgs),
    /// Serve an OpenAI-compatible HTTP API, batching concurrent requests.
    Serve(serve::ServeArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(args) => commands::generate::run(args),
        Command::Chat(args) => commands::chat::run(args),
        Command::Info(args) => commands::info::run(args),
        Command::Tokenize(args) => commands::tokenize::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Serve(args) => serve::run(args),
    };
    if let Err(e) = result {
        eprintln!("woolly-run: error: {e:#}");
        std::process::exit(1);
    }
}
