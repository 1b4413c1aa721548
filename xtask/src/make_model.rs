//! `cargo xtask make-model`: a Llama GGUF with seeded random weights at a real shape.

use std::path::Path;

use anyhow::{Context, bail};
use woolly_model::gguf::GgufFile;
use woolly_model::synthetic::{self, Recipe};

/// Writes the model and prints its path.
pub fn run(shape: &str, ty: &str, vocab_from: &Path, out: &Path, seed: u64) -> anyhow::Result<()> {
    let Some(shape) = synthetic::SHAPES.iter().find(|s| s.name == shape) else {
        let names: Vec<_> = synthetic::SHAPES.iter().map(|s| s.name).collect();
        bail!("unknown --shape {shape:?}; known: {}", names.join(", "));
    };
    let Some(recipe) = Recipe::parse(ty) else {
        bail!("unknown --type {ty:?}; known: q4_k_m, q8_0, f16");
    };
    let vocab = GgufFile::open(vocab_from)
        .with_context(|| format!("--vocab-from {}", vocab_from.display()))?;
    let t0 = std::time::Instant::now();
    synthetic::write_model(shape, recipe, &vocab, seed, out)
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "wrote {} ({} shape, {ty}) in {:.1} s",
        out.display(),
        shape.name,
        t0.elapsed().as_secs_f64()
    );
    println!("{}", out.display());
    Ok(())
}
