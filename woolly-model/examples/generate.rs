//! Generate text with woolly-model as a library.
//!
//! ```sh
//! cargo run --release -p woolly-model --example generate -- MODEL.gguf "The capital of France is"
//! ```

use std::io::Write;
use std::ops::ControlFlow;

use woolly_model::generate::{GenerateOptions, generate};
use woolly_model::sampling::{Sampler, SamplingParams};
use woolly_model::{Model, Session, SessionOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(prompt)) = (args.next(), args.next()) else {
        eprintln!("usage: generate MODEL.gguf PROMPT");
        std::process::exit(2);
    };

    // Load: the weights stay in the memory map.
    let model = Model::load(&path)?;
    // Tokenize: BOS added if the model wants it; special-token text stays plain text.
    let tokens = model.tokenizer().encode(&prompt, true, false)?;
    // One sequence with its KV cache, and a seeded sampler.
    let mut session = Session::new(
        &model,
        SessionOptions {
            n_ctx: 1024,
            ..Default::default()
        },
    )?;
    let mut sampler = Sampler::new(SamplingParams {
        seed: 42,
        ..Default::default()
    });
    let opts = GenerateOptions {
        max_tokens: 64,
        ..Default::default()
    };

    // Evaluate the prompt, then sample and stream token by token.
    let result = generate(
        &mut session,
        &tokens,
        &mut sampler,
        &opts,
        |_, _| {},
        |piece| {
            print!("{piece}");
            let _ = std::io::stdout().flush();
            ControlFlow::Continue(())
        },
    )?;
    println!();
    eprintln!("{} tokens, {:?}", result.tokens.len(), result.finish);
    Ok(())
}
