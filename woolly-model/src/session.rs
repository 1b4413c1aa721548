//! A sequence being evaluated: one KV-cache slot, its tokens, and the batching of prompts.
//!
//! `woolly-run generate` and `chat` run one [`Session`]; it remembers the tokens in its
//! cache so a chat turn that extends the conversation only evaluates the new tokens.

use crate::forward::{BatchToken, ForwardError, Scratch};
use crate::kv_cache::{KvCache, KvCacheError, KvType};
use crate::model::Model;

/// Options of a session.
#[derive(Clone, Copy, Debug)]
pub struct SessionOptions {
    /// Context length: positions the cache holds.
    pub n_ctx: usize,
    /// Prompt tokens evaluated per batch.
    pub n_batch: usize,
    /// Element type of the KV cache.
    pub kv_type: KvType,
    /// Refuse a cache larger than this many bytes.
    pub kv_limit_bytes: u128,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            n_ctx: 4096,
            n_batch: 512,
            kv_type: KvType::F16,
            kv_limit_bytes: u128::MAX,
        }
    }
}

/// Why a session could not go on.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The tokens do not fit in the context.
    #[error("{needed} tokens do not fit in the context of {n_ctx} (use a larger --ctx)")]
    ContextFull { needed: usize, n_ctx: usize },
    /// The KV cache could not be made.
    #[error(transparent)]
    Cache(#[from] KvCacheError),
    /// The forward pass refused the batch.
    #[error(transparent)]
    Forward(#[from] ForwardError),
    /// Nothing to evaluate.
    #[error("no tokens to evaluate")]
    Empty,
}

/// One sequence over a model: its cache slot, scratch buffers and the tokens evaluated.
pub struct Session<'m> {
    model: &'m Model,
    kv: KvCache,
    scratch: Scratch,
    n_batch: usize,
    /// Tokens whose keys and values are in the cache, in order.
    tokens: Vec<u32>,
    batch: Vec<BatchToken>,
}

impl<'m> Session<'m> {
    /// A session with an empty cache, refused before allocating when the cache would
    /// exceed `opts.kv_limit_bytes`.
    pub fn new(model: &'m Model, opts: SessionOptions) -> Result<Session<'m>, SessionError> {
        let n_batch = opts.n_batch.clamp(1, opts.n_ctx.max(1));
        let kv = model.new_cache(1, opts.n_ctx, opts.kv_type, opts.kv_limit_bytes)?;
        Ok(Session {
            model,
            kv,
            scratch: model.new_scratch(n_batch, opts.n_ctx),
            n_batch,
            tokens: Vec::with_capacity(opts.n_ctx),
            batch: Vec::with_capacity(n_batch),
        })
    }

    /// The model.
    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// Tokens in the cache.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Context length.
    pub fn n_ctx(&self) -> usize {
        self.kv.n_ctx()
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.tokens.clear();
        self.kv.truncate(0, 0);
    }

    /// Makes the cache hold exactly `tokens`, evaluating only what differs from what it
    /// holds now (the longest common prefix is kept), and returns the logits that follow
    /// the last token. `progress(done, total)` is called after each batch.
    pub fn set_tokens(
        &mut self,
        tokens: &[u32],
        mut progress: impl FnMut(usize, usize),
    ) -> Result<&[f32], SessionError> {
        if tokens.is_empty() {
            return Err(SessionError::Empty);
        }
        if tokens.len() > self.n_ctx() {
            return Err(SessionError::ContextFull {
                needed: tokens.len(),
                n_ctx: self.n_ctx(),
            });
        }
        let common = self
            .tokens
            .iter()
            .zip(tokens)
            .take_while(|(a, b)| a == b)
            .count();
        // At least the last token is evaluated again, to have its logits.
        let keep = common.min(tokens.len() - 1);
        self.tokens.truncate(keep);
        self.kv.truncate(0, keep);
        self.append(&tokens[keep..], &mut progress)
    }

    /// Evaluates `tokens` after those in the cache and returns the logits following the
    /// last one.
    pub fn append(
        &mut self,
        tokens: &[u32],
        mut progress: impl FnMut(usize, usize),
    ) -> Result<&[f32], SessionError> {
        if tokens.is_empty() {
            return Err(SessionError::Empty);
        }
        let start = self.tokens.len();
        if start + tokens.len() > self.n_ctx() {
            return Err(SessionError::ContextFull {
                needed: start + tokens.len(),
                n_ctx: self.n_ctx(),
            });
        }
        let total = tokens.len();
        for (ci, chunk) in tokens.chunks(self.n_batch).enumerate() {
            let first = start + ci * self.n_batch;
            let last_chunk = first + chunk.len() == start + total;
            self.batch.clear();
            self.batch
                .extend(chunk.iter().enumerate().map(|(i, &token)| BatchToken {
                    token,
                    pos: first + i,
                    seq: 0,
                    logits: last_chunk && i + 1 == chunk.len(),
                }));
            if let Err(e) = self
                .model
                .forward(&self.batch, &mut self.kv, &mut self.scratch)
            {
                // Keep the bookkeeping in step with the cache.
                let len = self.kv.len(0);
                self.tokens
                    .extend_from_slice(&tokens[..len.saturating_sub(start).min(total)]);
                return Err(e.into());
            }
            self.tokens.extend_from_slice(chunk);
            progress(ci * self.n_batch + chunk.len(), total);
        }
        Ok(self.scratch.logits_row(0))
    }
}
