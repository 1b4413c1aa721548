//! The `-m/--model` argument shared by every subcommand, and the default model.

use std::path::PathBuf;

use anyhow::Context;
use woolly_model::fetch;

/// The model to use: the given path, or the default model (SmolLM2-135M-Instruct)
/// from the cache, fetched on first use with a one-line notice.
pub fn resolve(path: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match path {
        Some(path) => Ok(path),
        None => fetch::fetch(&fetch::SMOLLM2, |msg| eprintln!("woolly-run: {msg}"))
            .context("no -m/--model given and the default model could not be fetched"),
    }
}
