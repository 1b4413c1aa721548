//! `woolly-run tokenize`: print the token ids of a text.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use woolly_model::gguf::GgufFile;
use woolly_model::tokenizer::Tokenizer;

use super::generate::read_prompt;
use crate::model_arg;

/// Arguments of `woolly-run tokenize`.
#[derive(Args)]
pub struct TokenizeArgs {
    /// The GGUF file; a vocabulary-only file is enough.
    #[arg(short, long, value_name = "MODEL")]
    model: Option<PathBuf>,
    /// The text; `-` reads it from stdin.
    #[arg(short, long, value_name = "TEXT", conflicts_with = "file")]
    prompt: Option<String>,
    /// Read the text from FILE, byte for byte.
    #[arg(short, long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Do not add the BOS token even if the model asks for it.
    #[arg(long)]
    no_bos: bool,
    /// Parse special-token text (e.g. `<|im_start|>`) as special tokens.
    #[arg(long)]
    special: bool,
}

/// Runs `woolly-run tokenize`.
pub fn run(args: TokenizeArgs) -> anyhow::Result<()> {
    let text = read_prompt(&args.prompt, &args.file)?;
    let path = model_arg::resolve(args.model)?;
    let file = GgufFile::open(&path).with_context(|| format!("{}", path.display()))?;
    let tokenizer = Tokenizer::from_gguf(&file).with_context(|| format!("{}", path.display()))?;
    let ids = tokenizer.encode(&text, !args.no_bos, args.special)?;
    let line: Vec<String> = ids.iter().map(u32::to_string).collect();
    println!("{}", line.join(" "));
    Ok(())
}
