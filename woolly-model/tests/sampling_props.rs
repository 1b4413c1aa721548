//! Property tests of the sampler against a naive reading of llama.cpp's chain.

use proptest::prelude::*;
use woolly_model::sampling::{Sampler, SamplingParams};

/// Token ids by logit descending, then id ascending.
fn sorted_ids(logits: &[f32]) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    ids.sort_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    ids
}

/// The argmax, lowest id on ties.
fn argmax(logits: &[f32]) -> u32 {
    sorted_ids(logits)[0]
}

/// The tokens that top-k, then top-p (with `slack` added to p, so that summation order
/// cannot make the reference smaller), then min-p (likewise) leave.
fn allowed(logits: &[f32], p: &SamplingParams, slack: f32) -> Vec<u32> {
    let mut ids = sorted_ids(logits);
    if p.top_k > 0 {
        ids.truncate(p.top_k);
    }
    let max = logits[ids[0] as usize];
    if p.top_p < 1.0 {
        let norm: f64 = ids
            .iter()
            .map(|&i| f64::from(logits[i as usize] - max).exp())
            .sum();
        let mut cum = 0.0;
        let mut keep = ids.len();
        for (n, &i) in ids.iter().enumerate() {
            cum += f64::from(logits[i as usize] - max).exp() / norm;
            if cum >= f64::from(p.top_p + slack) {
                keep = n + 1;
                break;
            }
        }
        ids.truncate(keep);
    }
    if p.min_p > 0.0 {
        let threshold = max + p.min_p.ln() - slack;
        ids.retain(|&i| logits[i as usize] >= threshold);
    }
    ids
}

fn logits_strategy() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-20.0f32..20.0, 1..300)
        .prop_filter("not all zero", |v| v.iter().any(|&x| x != 0.0))
}

/// Logits drawn from a few values, so that ties are common.
fn tied_logits_strategy() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(prop::sample::select(vec![-1.0f32, 0.5, 2.0, 3.0]), 1..100)
        .prop_filter("not all zero", |v| v.iter().any(|&x| x != 0.0))
}

fn params_strategy() -> impl Strategy<Value = SamplingParams> {
    (
        0.05f32..2.0,
        0usize..50,
        0.05f32..=1.0,
        0.0f32..0.5,
        any::<u64>(),
    )
        .prop_map(|(temperature, top_k, top_p, min_p, seed)| SamplingParams {
            temperature,
            top_k,
            top_p,
            min_p,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed,
        })
}

proptest! {
    #[test]
    fn sampled_tokens_pass_every_cut(logits in logits_strategy(), params in params_strategy()) {
        let ok = allowed(&logits, &params, 1e-4);
        let mut sampler = Sampler::new(params);
        for _ in 0..20 {
            let t = sampler.sample(&logits, &[]).unwrap();
            prop_assert!(ok.contains(&t), "token {} not in {:?}", t, ok);
        }
    }

    #[test]
    fn sampled_tokens_pass_every_cut_with_ties(logits in tied_logits_strategy(), params in params_strategy()) {
        let ok = allowed(&logits, &params, 1e-4);
        let mut sampler = Sampler::new(params);
        for _ in 0..20 {
            let t = sampler.sample(&logits, &[]).unwrap();
            prop_assert!(ok.contains(&t), "token {} not in {:?}", t, ok);
        }
    }

    #[test]
    fn temperature_zero_is_argmax(logits in tied_logits_strategy(), params in params_strategy()) {
        let mut sampler = Sampler::new(SamplingParams { temperature: 0.0, ..params });
        prop_assert_eq!(sampler.sample(&logits, &[]).unwrap(), argmax(&logits));
    }

    #[test]
    fn temperature_zero_is_argmax_after_the_penalty(
        logits in logits_strategy(),
        history in prop::collection::vec(0u32..300, 0..100),
        penalty in 0.5f32..2.0,
        last_n in 0usize..80,
    ) {
        let history: Vec<u32> = history.into_iter().filter(|&t| (t as usize) < logits.len()).collect();
        let mut penalized = logits.clone();
        let recent = &history[history.len().saturating_sub(last_n)..];
        let mut seen = vec![false; logits.len()];
        for &t in recent {
            let t = t as usize;
            if !seen[t] {
                seen[t] = true;
                let l = &mut penalized[t];
                *l = if *l <= 0.0 { *l * penalty } else { *l / penalty };
            }
        }
        let params = SamplingParams { repeat_penalty: penalty, repeat_last_n: last_n, ..SamplingParams::greedy() };
        let mut sampler = Sampler::new(params);
        prop_assert_eq!(sampler.sample(&logits, &history).unwrap(), argmax(&penalized));
    }

    #[test]
    fn same_seed_same_tokens(logits in logits_strategy(), params in params_strategy()) {
        let mut a = Sampler::new(params);
        let mut b = Sampler::new(params);
        for i in 0..10 {
            // A changing sequence of logits.
            let step: Vec<f32> = logits.iter().map(|&l| l + (i as f32 * 0.37).sin()).collect();
            prop_assert_eq!(a.sample(&step, &[]).unwrap(), b.sample(&step, &[]).unwrap());
        }
    }
}

#[test]
fn a_likely_token_is_drawn_most_of_the_time() {
    // Token 3 has probability 81 / (81 + 9) = 0.9; the nine others 0.0111 each.
    let mut logits = [0.0f32; 10];
    logits[3] = 81f32.ln();
    let params = SamplingParams {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repeat_penalty: 1.0,
        repeat_last_n: 64,
        seed: 42,
    };
    let mut sampler = Sampler::new(params);
    let mut counts = [0usize; 10];
    for _ in 0..1000 {
        counts[sampler.sample(&logits, &[]).unwrap() as usize] += 1;
    }
    assert!((870..=930).contains(&counts[3]), "{counts:?}");
    // Every other token shows up (expected about 11 times each).
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
}

#[test]
fn temperature_sharpens_and_flattens() {
    let logits = [0.0f32, 1.0];
    let count = |temperature| {
        let params = SamplingParams {
            temperature,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 7,
            ..SamplingParams::default()
        };
        let mut s = Sampler::new(params);
        (0..2000)
            .filter(|_| s.sample(&logits, &[]).unwrap() == 1)
            .count()
    };
    // p(1) = 0.73 at T=1, 0.98 at T=0.25, 0.56 at T=4.
    let (cold, warm, hot) = (count(0.25), count(1.0), count(4.0));
    assert!(cold > 1900, "{cold}");
    assert!((1370..1560).contains(&warm), "{warm}");
    assert!((1000..1250).contains(&hot), "{hot}");
}

#[test]
fn seeds_give_stable_streams() {
    // Same seed: same tokens; reseeding restarts the stream.
    let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.7).sin()).collect();
    let params = SamplingParams {
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        seed: 1234,
        ..SamplingParams::default()
    };
    let mut s = Sampler::new(params);
    let first: Vec<u32> = (0..32).map(|_| s.sample(&logits, &[]).unwrap()).collect();
    s.reseed(1234);
    let again: Vec<u32> = (0..32).map(|_| s.sample(&logits, &[]).unwrap()).collect();
    assert_eq!(first, again);
    s.reseed(1235);
    let other: Vec<u32> = (0..32).map(|_| s.sample(&logits, &[]).unwrap()).collect();
    assert_ne!(first, other);
}
