//! The generation loop shared by `woolly-run generate`, `chat` and the server: evaluate
//! the prompt, then sample, stream and stop.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use crate::sampling::{SampleError, Sampler};
use crate::session::{Session, SessionError};
use crate::tokenizer::{StreamDecoder, TokenizerError};

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// The token limit or the end of the context.
    Length,
    /// The caller asked to stop (Ctrl-C, a closed connection).
    Cancelled,
}

impl FinishReason {
    /// The name OpenAI's API uses (`stop`, `length`).
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop | FinishReason::Cancelled => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// What to generate.
#[derive(Clone, Debug, Default)]
pub struct GenerateOptions {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Strings that end generation; they are not part of the output.
    pub stop: Vec<String>,
    /// Keep going past end-of-generation tokens.
    pub ignore_eos: bool,
}

/// What a generation produced.
#[derive(Clone, Debug)]
pub struct Generation {
    /// Generated token ids (the token that ended generation excluded).
    pub tokens: Vec<u32>,
    /// The text streamed out (stop string excluded).
    pub text: String,
    /// Why it ended.
    pub finish: FinishReason,
    /// Prompt tokens evaluated (those reused from the cache not counted).
    pub prompt_evaluated: usize,
    /// Time spent evaluating the prompt.
    pub prompt_time: Duration,
    /// Time spent generating (sampling and evaluating each new token).
    pub gen_time: Duration,
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// Evaluating failed (context full, bad token).
    #[error(transparent)]
    Session(#[from] SessionError),
    /// Sampling failed (non-finite logits).
    #[error(transparent)]
    Sample(#[from] SampleError),
    /// A sampled token could not be decoded.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
}

/// Holds back text that may be the start of a stop string, so a stop string that spans
/// tokens is never streamed and then taken back.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

impl StopMatcher {
    /// A matcher for `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> StopMatcher {
        StopMatcher {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            pending: String::new(),
        }
    }

    /// Adds text; returns the text safe to emit now and whether a stop string matched
    /// (text from the stop string on is dropped).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        self.pending.push_str(text);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min()
        {
            let out = self.pending[..at].to_owned();
            self.pending.clear();
            return (out, true);
        }
        // Keep the longest suffix that is a proper prefix of some stop string.
        let mut keep = 0;
        for s in &self.stops {
            for (i, _) in s.char_indices().skip(1) {
                if self.pending.ends_with(&s[..i]) {
                    keep = keep.max(i);
                }
            }
        }
        let emit_to = self.pending.len() - keep;
        let out = self.pending[..emit_to].to_owned();
        self.pending.drain(..emit_to);
        (out, false)
    }

    /// Text still held back (emitted when generation ends without a stop string).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

/// Evaluates `prompt` (reusing what the session's cache already holds) and generates
/// up to `opts.max_tokens` tokens, calling `on_text` with each piece of text as soon as
/// it is final. `on_text` returning `Break` cancels.
pub fn generate(
    session: &mut Session<'_>,
    prompt: &[u32],
    sampler: &mut Sampler,
    opts: &GenerateOptions,
    mut on_prompt_progress: impl FnMut(usize, usize),
    mut on_text: impl FnMut(&str) -> ControlFlow<()>,
) -> Result<Generation, GenerateError> {
    let model = session.model();
    let tokenizer = model.tokenizer();
    let reused = session
        .tokens()
        .iter()
        .zip(prompt)
        .take_while(|(a, b)| a == b)
        .count();
    let t0 = Instant::now();
    let mut logits_ready = session
        .set_tokens(prompt, &mut on_prompt_progress)?
        .to_vec();
    let prompt_time = t0.elapsed();
    let prompt_evaluated = prompt.len() - reused.min(prompt.len() - 1);

    let t1 = Instant::now();
    let mut decoder = StreamDecoder::new();
    let mut stop = StopMatcher::new(&opts.stop);
    let mut history: Vec<u32> = prompt.to_vec();
    let mut out = Generation {
        tokens: Vec::new(),
        text: String::new(),
        finish: FinishReason::Length,
        prompt_evaluated,
        prompt_time,
        gen_time: Duration::ZERO,
    };
    let mut emit = |text: &str, out: &mut Generation| -> ControlFlow<()> {
        if text.is_empty() {
            return ControlFlow::Continue(());
        }
        out.text.push_str(text);
        on_text(text)
    };
    while out.tokens.len() < opts.max_tokens {
        let token = sampler.sample(&logits_ready, &history)?;
        if !opts.ignore_eos && tokenizer.is_eog(token) {
            out.finish = FinishReason::Stop;
            break;
        }
        out.tokens.push(token);
        history.push(token);
        let piece = decoder.push(tokenizer, token)?;
        let (text, stopped) = stop.push(&piece);
        if emit(&text, &mut out).is_break() {
            out.finish = FinishReason::Cancelled;
            break;
        }
        if stopped {
            out.finish = FinishReason::Stop;
            break;
        }
        if out.tokens.len() == opts.max_tokens {
            break;
        }
        if session.tokens().len() >= session.n_ctx() {
            out.finish = FinishReason::Length;
            break;
        }
        logits_ready.clear();
        logits_ready.extend_from_slice(session.append(&[token], |_, _| {})?);
    }
    if out.finish != FinishReason::Stop || stop.pending.is_empty() {
        let mut rest = decoder.finish();
        if out.finish != FinishReason::Stop {
            let (text, _) = stop.push(&rest);
            rest = text + &stop.finish();
        }
        let _ = emit(&rest, &mut out);
    }
    out.gen_time = t1.elapsed();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::StopMatcher;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops);
        let mut out = String::new();
        for p in pieces {
            let (t, stopped) = m.push(p);
            out.push_str(&t);
            if stopped {
                return (out, true);
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn stop_string_spanning_pieces_is_never_emitted() {
        let stops = vec!["\nUser:".to_string()];
        let mut m = StopMatcher::new(&stops);
        assert_eq!(m.push("Hello"), ("Hello".into(), false));
        assert_eq!(m.push(" world\nUs"), (" world".into(), false));
        assert_eq!(m.push("er: hi"), ("".into(), true));
    }

    #[test]
    fn held_back_text_is_released_when_it_cannot_match() {
        assert_eq!(run(&["STOP"], &["a S", "T", "x"]), ("a STx".into(), false));
        assert_eq!(run(&["STOP"], &["a S", "TO", "P!"]), ("a ".into(), true));
        assert_eq!(run(&["ab", "b"], &["xab"]), ("x".into(), true));
        assert_eq!(run(&[], &["plain"]), ("plain".into(), false));
        assert_eq!(run(&["é!"], &["café", "?"]), ("café?".into(), false));
    }
}
