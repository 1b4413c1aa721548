//! A session keeps what it evaluated: a longer prompt that extends the cached tokens
//! evaluates only the new ones, and gives the same logits as evaluating from scratch.

use woolly_model::paths::conformance_file;
use woolly_model::{Model, Session, SessionOptions};

#[test]
fn extending_a_prompt_evaluates_only_the_new_tokens() {
    let model = Model::load(conformance_file("models/tiny-q4km.gguf")).unwrap();
    let opts = SessionOptions {
        n_ctx: 64,
        n_batch: 8,
        ..SessionOptions::default()
    };
    let first: Vec<u32> = vec![1, 450, 7483, 310, 3444, 338];
    let mut longer = first.clone();
    longer.extend([3681, 29889, 450]);

    let mut session = Session::new(&model, opts).unwrap();
    session.set_tokens(&first, |_, _| {}).unwrap();
    let mut evaluated = 0;
    let reused = session
        .set_tokens(&longer, |done, _| evaluated = done)
        .unwrap()
        .to_vec();
    assert_eq!(evaluated, 3, "only the three new tokens are evaluated");

    let mut fresh = Session::new(&model, opts).unwrap();
    let scratch_logits = fresh.set_tokens(&longer, |_, _| {}).unwrap().to_vec();
    assert_eq!(reused, scratch_logits, "same logits, bit for bit");

    // A prompt that diverges keeps only the common prefix.
    let mut other = first.clone();
    other[5] = 100;
    session
        .set_tokens(&other, |done, _| evaluated = done)
        .unwrap();
    assert_eq!(evaluated, 1);
    assert_eq!(session.tokens(), &other[..]);
}

#[test]
fn a_prompt_longer_than_the_context_is_an_error() {
    let model = Model::load(conformance_file("models/tiny-q4km.gguf")).unwrap();
    let opts = SessionOptions {
        n_ctx: 4,
        n_batch: 8,
        ..SessionOptions::default()
    };
    let mut session = Session::new(&model, opts).unwrap();
    let err = session
        .set_tokens(&[1, 2, 3, 4, 5], |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("5 tokens do not fit in the context of 4"),
        "{err}"
    );
}
