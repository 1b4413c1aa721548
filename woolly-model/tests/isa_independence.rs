//! The forward pass gives the same bits on every ISA the machine has as with the scalar
//! kernels (`WOOLLY_ISA=scalar`): every kernel it calls is either exact against its
//! scalar reference or computes the same operations in the same order on every ISA.
//! Both golden models' formats: Q4_K/Q6_K (tiny) here; SmolLM2's Q4_1/Q8_0 in the
//! conformance test's scalar run.

use std::sync::Arc;

use woolly_kernels::Isa;
use woolly_model::gguf::GgufFile;
use woolly_model::paths::conformance_file;
use woolly_model::{Model, Session, SessionOptions};

/// Logits after a prompt (evaluated in one batch) and after each of a few greedy steps.
fn logits_on(isa: Isa) -> Vec<Vec<f32>> {
    let file = Arc::new(GgufFile::open(conformance_file("models/tiny-q4km.gguf")).unwrap());
    let model = Model::from_gguf_with_isa(file, isa).unwrap();
    let opts = SessionOptions {
        n_ctx: 64,
        n_batch: 16,
        ..SessionOptions::default()
    };
    let mut session = Session::new(&model, opts).unwrap();
    let mut tokens: Vec<u32> = vec![1, 450, 7483, 310, 3444, 338, 3681, 29889, 450, 7483];
    let mut all = Vec::new();
    for _ in 0..4 {
        let logits = session.set_tokens(&tokens, |_, _| {}).unwrap().to_vec();
        let next = (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap();
        tokens.push(next as u32);
        all.push(logits);
    }
    all
}

#[test]
fn every_isa_gives_the_scalar_bits() {
    let want = logits_on(Isa::Scalar);
    for isa in Isa::available() {
        let got = logits_on(isa);
        for (step, (g, w)) in got.iter().zip(&want).enumerate() {
            let differ = g
                .iter()
                .zip(w)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(
                differ, 0,
                "{isa}: {differ} logits differ from scalar at step {step}"
            );
        }
    }
}
