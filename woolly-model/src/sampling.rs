//! Token sampling: one sampler for `generate`, `chat` and the server.
//!
//! The chain is llama.cpp's default one (`common/sampling.cpp`, `llama-sampling.cpp`):
//!
//! 1. repetition penalty over the last `repeat_last_n` tokens of the history
//!    (a positive logit is divided by the penalty, a negative one multiplied);
//! 2. top-k, 3. top-p (nucleus), 4. min-p;
//! 5. temperature, 6. softmax, 7. a draw from the seeded stream.
//!
//! Temperature 0 is greedy: the argmax after the penalty, ties going to the lowest id.
//!
//! The random stream is ChaCha8 (`rand_chacha`, whose output is stable across versions)
//! seeded with [`SamplingParams::seed`], so the same seed and the same logits give the
//! same tokens. Candidates are drawn from in a defined order (by id when nothing was
//! cut, else by logit descending, then id), so the result does not depend on how the
//! standard library's selection or sort happens to permute equal elements.
//!
//! A [`Sampler`] keeps its scratch buffers: after the first call for a vocabulary size,
//! sampling does not allocate.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

/// The largest `n` that [`top_logprobs`] returns (OpenAI's limit for `top_logprobs`).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// Sampling options, named and defaulted as llama.cpp's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingParams {
    /// Divides the logits before the softmax; 0 samples greedily.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0: off).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p` (1: off).
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` times the most likely one's (0: off).
    pub min_p: f32,
    /// Penalty for tokens among the last `repeat_last_n` of the history (1: off).
    pub repeat_penalty: f32,
    /// How many of the most recent history tokens the penalty looks at (0: off).
    pub repeat_last_n: usize,
    /// Seed of the random stream.
    pub seed: u64,
}

impl Default for SamplingParams {
    /// llama.cpp's defaults: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, no
    /// repetition penalty (1.0, last 64 tokens), seed 0.
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

/// A sampling option out of range; the message names the option.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
#[error("{field} must be {requirement}, got {value}")]
pub struct ParamError {
    /// The option's name (`temperature`, `top_p`, `min_p`, `repeat_penalty`).
    pub field: &'static str,
    /// What the option must be, e.g. `in (0, 1]`.
    pub requirement: &'static str,
    /// The value given.
    pub value: f32,
}

impl SamplingParams {
    /// Greedy sampling (temperature 0), other options at their defaults.
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Checks every option's range; NaN is refused everywhere.
    pub fn validate(&self) -> Result<(), ParamError> {
        let check = |field, requirement, value: f32, ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(ParamError {
                    field,
                    requirement,
                    value,
                })
            }
        };
        let t = self.temperature;
        check("temperature", ">= 0", t, t >= 0.0 && t.is_finite())?;
        let p = self.top_p;
        check("top_p", "in (0, 1]", p, p > 0.0 && p <= 1.0)?;
        let m = self.min_p;
        check("min_p", "in [0, 1]", m, (0.0..=1.0).contains(&m))?;
        let r = self.repeat_penalty;
        check("repeat_penalty", "> 0", r, r > 0.0 && r.is_finite())?;
        Ok(())
    }
}

/// Why a token could not be sampled.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SampleError {
    /// The sampler's options are out of range.
    #[error(transparent)]
    Params(#[from] ParamError),
    /// No logits were given.
    #[error("logits are empty")]
    EmptyLogits,
    /// A logit is NaN or infinite: the forward pass went wrong, and such a token is
    /// never sampled.
    #[error("logit of token {token} is {value}: logits must be finite")]
    NonFiniteLogit {
        /// The token id (index into the logits).
        token: u32,
        /// The offending value.
        value: f32,
    },
    /// A history token is outside the vocabulary.
    #[error("history token {token} is outside the vocabulary of {vocab_size} tokens")]
    HistoryOutOfRange {
        /// The token id.
        token: u32,
        /// The number of logits.
        vocab_size: usize,
    },
}

/// One token still in the running: its id, and its logit (later its probability).
#[derive(Clone, Copy, Debug)]
struct Candidate {
    id: u32,
    logit: f32,
}

/// Logit descending, then id ascending: a total order on finite logits.
fn by_logit_desc(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// The `k` best tokens of `logits` (finite, more than `k`) by [`by_logit_desc`], sorted
/// so, into `out` (emptied first): the set `select_nth_unstable_by` finds over every
/// token, found in one pass that rejects, with one comparison, each token worse than the
/// `k`-th best seen so far, and that selects among the survivors whenever they reach
/// `TOP_K_BATCH` times `k`.
fn top_k_of(logits: &[f32], k: usize, out: &mut Vec<Candidate>) {
    const TOP_K_BATCH: usize = 4;
    debug_assert!(k > 0 && k < logits.len());
    let cap = (TOP_K_BATCH * k).max(k + 64);
    out.clear();
    // The k-th best so far, once `k` were kept: a token not better than it can never
    // be among the final `k`.
    let mut kth: Option<Candidate> = None;
    for (i, &logit) in logits.iter().enumerate() {
        let c = Candidate {
            id: i as u32,
            logit,
        };
        if let Some(t) = kth {
            // `<` on finite floats implies the total order's `<` (the quick test);
            // ties, and -0.0 against 0.0, take the exact comparison.
            if logit < t.logit || by_logit_desc(&c, &t) != std::cmp::Ordering::Less {
                continue;
            }
        }
        out.push(c);
        if out.len() == cap {
            out.select_nth_unstable_by(k - 1, by_logit_desc);
            out.truncate(k);
            kth = Some(out[k - 1]);
        }
    }
    if out.len() > k {
        out.select_nth_unstable_by(k - 1, by_logit_desc);
        out.truncate(k);
    }
    out.sort_unstable_by(by_logit_desc);
}

/// `out = logits` with llama.cpp's repetition penalty: each distinct token among `recent`
/// once (`seen` is scratch), positive logits divided by `penalty`, negative ones
/// multiplied.
fn penalize(out: &mut Vec<f32>, seen: &mut Vec<u32>, logits: &[f32], recent: &[u32], penalty: f32) {
    out.clear();
    out.extend_from_slice(logits);
    seen.clear();
    for &t in recent {
        if seen.contains(&t) {
            continue;
        }
        seen.push(t);
        let l = &mut out[t as usize];
        *l = if *l <= 0.0 {
            *l * penalty
        } else {
            *l / penalty
        };
    }
}

/// A seeded sampler with its scratch buffers. One per generation stream.
#[derive(Clone, Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    /// Candidates of the current call. (vocab,)
    candidates: Vec<Candidate>,
    /// The logits after the repetition penalty, when it is on. (vocab,)
    penalized: Vec<f32>,
    /// The distinct tokens penalized so far in the current call (at most
    /// `repeat_last_n`).
    seen: Vec<u32>,
}

impl Sampler {
    /// A sampler with its random stream seeded from `params.seed`. Options are checked
    /// by [`Sampler::sample`] (and beforehand by [`SamplingParams::validate`]).
    pub fn new(params: SamplingParams) -> Sampler {
        Sampler {
            params,
            rng: ChaCha8Rng::seed_from_u64(params.seed),
            candidates: Vec::new(),
            penalized: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// The options this sampler was made with.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Restarts the random stream from `seed` (the options keep theirs otherwise).
    pub fn reseed(&mut self, seed: u64) {
        self.params.seed = seed;
        self.rng = ChaCha8Rng::seed_from_u64(seed);
    }

    /// Picks the next token from `logits` (one per vocabulary entry), `history` being
    /// the tokens so far (prompt and generated) for the repetition penalty.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> Result<u32, SampleError> {
        self.params.validate()?;
        if logits.is_empty() {
            return Err(SampleError::EmptyLogits);
        }
        // A pass that vectorizes first; the search only when it failed.
        if !logits.iter().fold(true, |ok, l| ok & l.is_finite())
            && let Some((i, &value)) = logits.iter().enumerate().find(|(_, l)| !l.is_finite())
        {
            return Err(SampleError::NonFiniteLogit {
                token: i as u32,
                value,
            });
        }
        let n = logits.len();
        let recent = &history[history.len().saturating_sub(self.params.repeat_last_n)..];
        if let Some(&token) = recent.iter().find(|&&t| t as usize >= n) {
            return Err(SampleError::HistoryOutOfRange {
                token,
                vocab_size: n,
            });
        }

        let p = self.params;
        // The logits after the repetition penalty: a copy only when it changes some.
        let logits: &[f32] = if p.repeat_penalty != 1.0 && !recent.is_empty() {
            penalize(
                &mut self.penalized,
                &mut self.seen,
                logits,
                recent,
                p.repeat_penalty,
            );
            &self.penalized
        } else {
            logits
        };
        if p.temperature == 0.0 {
            // Greedy: the first maximum is the lowest id among equal logits (a pass for
            // the maximum that vectorizes, then the search for it).
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let best = logits.iter().position(|&l| l == max).unwrap_or(0);
            return Ok(best as u32);
        }

        // Scratch sized for the vocabulary once; `clear` + `extend` then reuse it.
        self.candidates.clear();
        self.candidates.reserve(n);
        let sorted = p.top_k > 0 && p.top_k < n;
        if sorted {
            // Top-k straight from the logits, without a candidate per token.
            top_k_of(logits, p.top_k, &mut self.candidates);
        } else {
            self.candidates
                .extend(logits.iter().enumerate().map(|(i, &logit)| Candidate {
                    id: i as u32,
                    logit,
                }));
        }

        // Top-p then min-p. Both keep a prefix of the candidates sorted by logit, and
        // min-p depends only on the maximum, which top-p keeps: so cut by min-p first (a
        // linear pass), and sort only the survivors for top-p, with the softmax
        // normalizer of the set as it was before min-p (as top-p sees it).
        let max = self
            .candidates
            .iter()
            .fold(f32::NEG_INFINITY, |m, c| m.max(c.logit));
        let top_p_on = p.top_p < 1.0;
        let norm = if top_p_on {
            self.candidates
                .iter()
                .map(|c| f64::from((c.logit - max).exp()))
                .sum::<f64>()
        } else {
            1.0
        };
        if p.min_p > 0.0 {
            // p_i >= min_p * p_max  <=>  logit_i >= max + ln(min_p); the maximum stays.
            let threshold = max + p.min_p.ln();
            self.candidates.retain(|c| c.logit >= threshold);
        }
        if top_p_on {
            if !sorted {
                self.candidates.sort_unstable_by(by_logit_desc);
            }
            // Keep up to and including the token where the cumulative probability
            // reaches top_p (llama.cpp's `llama_sampler_top_p_apply`).
            let mut cum = 0.0f64;
            let mut keep = self.candidates.len();
            for (i, c) in self.candidates.iter().enumerate() {
                cum += f64::from((c.logit - max).exp()) / norm;
                if cum >= f64::from(p.top_p) {
                    keep = i + 1;
                    break;
                }
            }
            self.candidates.truncate(keep);
        }

        // Temperature, softmax, draw. The maximum survived every cut.
        let inv_t = 1.0 / p.temperature;
        let mut sum = 0.0f64;
        for c in &mut self.candidates {
            c.logit = ((c.logit - max) * inv_t).exp();
            sum += f64::from(c.logit);
        }
        let target = self.uniform() * sum;
        let mut cum = 0.0f64;
        for c in &self.candidates {
            cum += f64::from(c.logit);
            if target < cum {
                return Ok(c.id);
            }
        }
        // Rounding left `target` at the very top: the last token with mass.
        let last = self
            .candidates
            .iter()
            .rev()
            .find(|c| c.logit > 0.0)
            .unwrap_or(&self.candidates[0]);
        Ok(last.id)
    }

    /// A uniform f64 in [0, 1) with 53 random bits.
    fn uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The `n` (at most [`MAX_TOP_LOGPROBS`]) most likely tokens of the raw `logits` with
/// their log-probabilities (log-softmax), most likely first, ties by lowest id.
/// Non-finite logits are skipped; NaN never appears in the result.
pub fn top_logprobs(logits: &[f32], n: usize) -> Vec<(u32, f32)> {
    let n = n.min(MAX_TOP_LOGPROBS).min(logits.len());
    if n == 0 {
        return Vec::new();
    }
    let finite = || {
        logits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(i, &l)| (i as u32, l))
    };
    let max = finite().fold(f32::NEG_INFINITY, |m, (_, l)| m.max(l));
    if max == f32::NEG_INFINITY {
        return Vec::new();
    }
    let log_norm = finite()
        .map(|(_, l)| f64::from(l - max).exp())
        .sum::<f64>()
        .ln() as f32;
    // Keep the best n with a small sorted insertion list: n <= 20.
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(n + 1);
    for (id, l) in finite() {
        if best.len() == n && l <= best[n - 1].1 {
            continue;
        }
        let at = best.partition_point(|&(bid, bl)| bl > l || (bl == l && bid < id));
        best.insert(at, (id, l));
        best.truncate(n);
    }
    for (_, l) in &mut best {
        *l = *l - max - log_norm;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_llama_cpp() {
        let p = SamplingParams::default();
        assert_eq!(
            (p.temperature, p.top_k, p.top_p, p.min_p),
            (0.8, 40, 0.95, 0.05)
        );
        assert_eq!((p.repeat_penalty, p.repeat_last_n), (1.0, 64));
        p.validate().unwrap();
    }

    #[test]
    fn validate_names_the_field() {
        let bad = |f: fn(&mut SamplingParams)| {
            let mut p = SamplingParams::default();
            f(&mut p);
            p.validate().unwrap_err().to_string()
        };
        assert_eq!(
            bad(|p| p.temperature = -1.0),
            "temperature must be >= 0, got -1"
        );
        assert_eq!(bad(|p| p.top_p = 1.5), "top_p must be in (0, 1], got 1.5");
        assert_eq!(bad(|p| p.top_p = 0.0), "top_p must be in (0, 1], got 0");
        assert_eq!(
            bad(|p| p.min_p = f32::NAN),
            "min_p must be in [0, 1], got NaN"
        );
        assert_eq!(
            bad(|p| p.temperature = f32::NAN),
            "temperature must be >= 0, got NaN"
        );
        assert_eq!(
            bad(|p| p.temperature = f32::INFINITY),
            "temperature must be >= 0, got inf"
        );
        assert_eq!(
            bad(|p| p.repeat_penalty = 0.0),
            "repeat_penalty must be > 0, got 0"
        );
    }

    #[test]
    fn non_finite_logits_are_errors() {
        let mut s = Sampler::new(SamplingParams::default());
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let err = s.sample(&[1.0, bad, 0.5], &[]).unwrap_err();
            assert!(
                matches!(err, SampleError::NonFiniteLogit { token: 1, .. }),
                "{err}"
            );
        }
        assert_eq!(s.sample(&[], &[]), Err(SampleError::EmptyLogits));
        let mut g = Sampler::new(SamplingParams::greedy());
        assert!(g.sample(&[f32::NAN], &[]).is_err());
    }

    #[test]
    fn greedy_ties_go_to_lowest_id() {
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.sample(&[0.0, 3.0, 1.0, 3.0], &[]).unwrap(), 1);
        assert_eq!(s.sample(&[-5.0, -5.0], &[]).unwrap(), 0);
    }

    #[test]
    fn repeat_penalty_follows_llama_cpp() {
        // Token 0: 2.0 / 2 = 1.0 < 1.5; token 1 is then the argmax.
        let p = SamplingParams {
            repeat_penalty: 2.0,
            repeat_last_n: 2,
            ..SamplingParams::greedy()
        };
        let mut s = Sampler::new(p);
        assert_eq!(s.sample(&[2.0, 1.5, -1.0], &[0]).unwrap(), 1);
        // Penalized once however often the token repeats.
        assert_eq!(s.sample(&[2.0, 1.5, -1.0], &[0, 0]).unwrap(), 1);
        // Outside the last 2 tokens: no penalty.
        assert_eq!(s.sample(&[2.0, 1.5, -1.0], &[0, 2, 2]).unwrap(), 0);
        // A negative logit is multiplied: -0.1 * 2 = -0.2 < -0.15.
        assert_eq!(s.sample(&[-0.1, -0.15], &[0]).unwrap(), 1);
        // History ids past the vocabulary are an error.
        assert!(matches!(
            s.sample(&[0.0, 1.0], &[7]),
            Err(SampleError::HistoryOutOfRange { token: 7, .. })
        ));
    }

    #[test]
    fn top_k_one_is_greedy() {
        let p = SamplingParams {
            top_k: 1,
            ..SamplingParams::default()
        };
        let mut s = Sampler::new(p);
        for _ in 0..50 {
            assert_eq!(s.sample(&[0.0, 0.9, 1.0, 0.95], &[]).unwrap(), 2);
        }
    }

    #[test]
    fn top_logprobs_is_log_softmax() {
        let logits = [1.0f32, 3.0, 2.0, 3.0, f32::NAN];
        let got = top_logprobs(&logits, 3);
        let ids: Vec<u32> = got.iter().map(|&(i, _)| i).collect();
        assert_eq!(ids, [1, 3, 2]);
        let norm: f32 = [1.0f32, 3.0, 2.0, 3.0].iter().map(|l| l.exp()).sum();
        assert!((got[0].1 - (3.0 - norm.ln())).abs() < 1e-5);
        assert!((got[2].1 - (2.0 - norm.ln())).abs() < 1e-5);
        assert_eq!(top_logprobs(&logits, 100).len(), 4);
        assert!(top_logprobs(&[0.0; 50], 100).len() == MAX_TOP_LOGPROBS);
        assert!(top_logprobs(&[], 3).is_empty());
    }

    proptest::proptest! {
        /// The one-pass top-k keeps what a full selection over every token keeps, in the
        /// same order, ties (and -0.0 against 0.0) included.
        #[test]
        fn top_k_of_matches_a_full_sort(
            pool in proptest::collection::vec(-30.0f32..30.0, 1..12),
            picks in proptest::collection::vec(0usize..1000, 2..3000),
            k_seed in 0usize..10_000,
        ) {
            // Values from a small pool, so that ties are common; -0.0 and 0.0 too.
            let mut pool = pool;
            pool.extend([0.0, -0.0]);
            let logits: Vec<f32> = picks.iter().map(|&i| pool[i % pool.len()]).collect();
            let k = 1 + k_seed % (logits.len() - 1);
            let mut all: Vec<Candidate> = logits
                .iter()
                .enumerate()
                .map(|(i, &logit)| Candidate { id: i as u32, logit })
                .collect();
            all.sort_unstable_by(by_logit_desc);
            let mut got = Vec::new();
            top_k_of(&logits, k, &mut got);
            let key = |c: &Candidate| (c.id, c.logit.to_bits());
            let want: Vec<_> = all[..k].iter().map(key).collect();
            let got: Vec<_> = got.iter().map(key).collect();
            proptest::prop_assert_eq!(got, want);
        }
    }
}
