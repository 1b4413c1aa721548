//! Sampling one token from a SmolLM2-sized row of logits (49,152), with llama.cpp's
//! default chain (top-k 40, top-p 0.95, min-p 0.05, temperature 0.8) and greedily: the
//! server samples a row per stream per step, on one thread, between forward passes.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use woolly_model::sampling::{Sampler, SamplingParams};

const VOCAB: usize = 49_152;

fn bench(c: &mut Criterion) {
    // Logits spread like a real row's: a few tens of units, no ties to speak of.
    let mut x = 0x2545_f491_u32;
    let logits: Vec<f32> = (0..VOCAB)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as f32 / (1u32 << 24) as f32 * 30.0 - 15.0
        })
        .collect();
    let history: Vec<u32> = (0..64).collect();
    let mut group = c.benchmark_group("sample");
    for (name, params) in [
        ("default-chain", SamplingParams::default()),
        ("greedy", SamplingParams::greedy()),
        (
            "default-chain-repeat-penalty",
            SamplingParams {
                repeat_penalty: 1.1,
                ..SamplingParams::default()
            },
        ),
    ] {
        let mut sampler = Sampler::new(params);
        group.bench_function(BenchmarkId::new(name, VOCAB), |b| {
            b.iter(|| sampler.sample(&logits, &history).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
