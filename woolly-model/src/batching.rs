//! Continuous batching: many requests share one model, one KV cache and one forward
//! pass per step (the scheduler behind `woolly-run serve`).
//!
//! # How memory is shared
//! The [`Scheduler`] owns one [`KvCache`] of `parallel` slots of `n_ctx` positions each
//! (layout `(n_layer, parallel, n_ctx, kv_dim)` for keys and again for values, see
//! [`crate::kv_cache`]). The cache is allocated whole at start-up, so its size is
//! `2 * elem * n_layer * parallel * n_ctx * kv_dim` bytes ([`cache_bytes`]), whatever
//! the load. A request holds one slot from its first prompt token to its last generated
//! token: its prompt plus its completion must fit in `n_ctx`, and a prompt that does not
//! is refused ([`SubmitError::PromptTooLong`]), never truncated. Requests beyond
//! `parallel` wait in a queue of at most `max_queue`; beyond that, they are refused
//! ([`SubmitError::QueueFull`]). One [`Scratch`] sized for `max_batch_tokens` serves
//! every step.
//!
//! # A step
//! 1. New requests are taken from the channel and given free slots (first come, first
//!    served); a request whose receiver is gone (client disconnect) is dropped and its
//!    slot freed at once.
//! 2. Every request that is generating contributes its last sampled token; requests
//!    still reading their prompt contribute a chunk of at most `prefill_chunk` prompt
//!    tokens each, in turn, up to `max_batch_tokens` in all (chunked prefill: a long
//!    prompt never stalls the others for more than a chunk). Every chunk but a prompt's
//!    last holds whole groups of four tokens, so that the prompt's tokens compute as in
//!    one batch (`forward::q4k_orders`).
//! 3. One [`Model::forward`] over that batch: each weight is read once per step for every
//!    sequence.
//! 4. Each request whose logits came out samples its next token with its own
//!    [`Sampler`], decodes it, holds back text that may start a stop string, and sends
//!    the final text over its own channel ([`Event`]).
//!
//! The per-request logic is that of [`crate::generate::generate`] (same sampler, same
//! history, same stop handling and the same end-of-stream flush), and the forward pass
//! computes each row the same whatever else is in the batch, so a request gives exactly
//! the text `woolly-run generate` gives for the same prompt, seed and options.
//!
//! # Prefix reuse
//! A slot keeps the tokens in its cache after its request ends. A new request is given
//! the free slot whose tokens share the longest prefix with its prompt (ties: the least
//! recently used) and evaluates only the rest (llama-server's `cache_prompt`); a chat
//! that extends an earlier conversation thus reads only the new turn.
//!
//! The scheduler runs on a thread of its own ([`spawn`]); the forward pass uses rayon's
//! pool. It knows nothing of HTTP: events go to an [`EventSink`], which the server
//! implements over its async channels and tests over `std::sync::mpsc`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use woolly_kernels::team;

use crate::forward::{BatchToken, Scratch};
use crate::generate::{FinishReason, StopMatcher};
use crate::kv_cache::{KvCache, KvCacheError, KvType};
use crate::model::Model;
use crate::sampling::{SampleError, Sampler, SamplingParams, top_logprobs};
use crate::tokenizer::StreamDecoder;

/// How the scheduler shares the machine.
#[derive(Clone, Copy, Debug)]
pub struct SchedulerOptions {
    /// Requests served at once: KV-cache slots.
    pub parallel: usize,
    /// Positions per slot: the most tokens (prompt and completion) one request may hold.
    pub n_ctx: usize,
    /// Most tokens in one forward call (decode tokens and prompt chunks together).
    pub max_batch_tokens: usize,
    /// Most prompt tokens one request contributes to a step.
    pub prefill_chunk: usize,
    /// Requests that may wait for a slot; more are refused.
    pub max_queue: usize,
    /// Element type of the KV cache.
    pub kv_type: KvType,
    /// Refuse a cache larger than this many bytes.
    pub kv_limit_bytes: u128,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            parallel: 4,
            n_ctx: 4096,
            max_batch_tokens: 512,
            prefill_chunk: 128,
            max_queue: 64,
            kv_type: KvType::F16,
            kv_limit_bytes: u128::MAX,
        }
    }
}

/// Bytes of the KV cache the scheduler allocates for `model` under `opts`.
pub fn cache_bytes(model: &Model, opts: &SchedulerOptions) -> u128 {
    let c = model.config();
    KvCache::bytes_needed(
        c.n_layer,
        opts.parallel,
        opts.n_ctx,
        c.kv_dim(),
        opts.kv_type,
    )
}

/// One generation request.
pub struct Request {
    /// Prompt token ids (BOS included when the model wants it); not empty.
    pub prompt: Vec<u32>,
    /// Sampling options, seed included.
    pub params: SamplingParams,
    /// Most tokens to generate (generation also ends when the slot is full).
    pub max_tokens: usize,
    /// Strings that end generation; they are not part of the output.
    pub stop: Vec<String>,
    /// Keep generating past end-of-generation tokens.
    pub ignore_eos: bool,
    /// `Some(n)`: report each sampled token's log-probability and the `n` (at most 20)
    /// most likely alternatives.
    pub logprobs: Option<usize>,
    /// Where the events go.
    pub sink: Box<dyn EventSink>,
}

/// A sampled token's log-probability and the most likely alternatives, from the raw
/// logits (log-softmax, before any sampling option).
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprobs {
    /// The sampled token.
    pub token: u32,
    /// Its log-probability.
    pub logprob: f32,
    /// The most likely tokens and their log-probabilities, most likely first.
    pub top: Vec<(u32, f32)>,
}

/// What a finished request did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Why generation ended.
    pub finish: FinishReason,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens found in the slot's cache and not evaluated again.
    pub cached_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Time waiting for a slot.
    pub queue_time: Duration,
    /// Time from getting a slot to the first sampled token.
    pub prompt_time: Duration,
    /// Time from the first sampled token to the end.
    pub gen_time: Duration,
}

/// What the scheduler tells a request's client.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Text now final (possibly empty when the token's text is held back), sent once
    /// per generated token and once more, with `token` None, for text flushed at the end.
    Delta {
        /// Text to append to the output.
        text: String,
        /// The token generated; None for the flush at the end.
        token: Option<u32>,
        /// The token's log-probabilities, when asked for.
        logprobs: Option<TokenLogprobs>,
    },
    /// The request ended; always the last event unless [`Event::Error`] came.
    Done(Summary),
    /// The request failed (a forward or sampling error); the last event.
    Error(String),
}

/// Where a request's events go: a channel to the client.
pub trait EventSink: Send {
    /// Delivers an event; false when the receiver is gone (the request is then stopped).
    fn send(&mut self, event: Event) -> bool;
    /// Whether the receiver is gone; checked every step, so a client that disconnects
    /// while its prompt is being read frees its slot too.
    fn is_closed(&self) -> bool;
}

impl EventSink for mpsc::Sender<Event> {
    fn send(&mut self, event: Event) -> bool {
        mpsc::Sender::send(self, event).is_ok()
    }

    fn is_closed(&self) -> bool {
        false
    }
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Every slot is busy and the queue is full.
    #[error("the server is busy: {busy} requests in progress or waiting (at most {capacity})")]
    QueueFull {
        /// Requests admitted now.
        busy: usize,
        /// Slots plus queue places.
        capacity: usize,
    },
    /// The prompt leaves no room to generate in a slot.
    #[error(
        "the prompt is {n_prompt} tokens, the context holds {n_ctx} per request: \
         shorten the prompt or start the server with a larger --ctx"
    )]
    PromptTooLong {
        /// Prompt tokens.
        n_prompt: usize,
        /// Positions per slot.
        n_ctx: usize,
    },
    /// An empty prompt.
    #[error("prompt: the prompt is empty and the model adds no BOS token")]
    EmptyPrompt,
    /// A prompt token outside the vocabulary.
    #[error("prompt: token id {token} is outside the vocabulary of {n_vocab}")]
    BadToken {
        /// The token id.
        token: u32,
        /// Vocabulary size.
        n_vocab: usize,
    },
    /// `max_tokens` of 0.
    #[error("max_tokens must be at least 1")]
    NoTokens,
    /// The scheduler has stopped (the server is shutting down).
    #[error("the server is shutting down")]
    Stopped,
}

/// Counters and gauges of the scheduler, read by `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests admitted (slot or queue).
    pub admitted: AtomicUsize,
    /// Requests holding a slot.
    pub active: AtomicUsize,
    /// Requests finished with a `Done` event.
    pub completed: AtomicU64,
    /// Requests stopped because their client went away.
    pub cancelled: AtomicU64,
    /// Requests that failed.
    pub failed: AtomicU64,
    /// Prompt tokens evaluated.
    pub prompt_tokens: AtomicU64,
    /// Prompt tokens reused from a slot's cache.
    pub cached_prompt_tokens: AtomicU64,
    /// Tokens generated.
    pub generated_tokens: AtomicU64,
    /// Forward calls.
    pub steps: AtomicU64,
    /// Tokens evaluated over all forward calls.
    pub batch_tokens: AtomicU64,
}

impl Stats {
    /// Requests waiting for a slot.
    pub fn queue_depth(&self) -> usize {
        self.admitted
            .load(Ordering::Relaxed)
            .saturating_sub(self.active.load(Ordering::Relaxed))
    }
}

enum Command {
    Submit(Request, Instant),
    Shutdown,
}

/// The client side of a running scheduler: cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct SchedulerHandle {
    tx: mpsc::Sender<Command>,
    stats: Arc<Stats>,
    opts: SchedulerOptions,
    n_vocab: usize,
}

impl SchedulerHandle {
    /// Queues a request, or refuses it at once (full, prompt too long, stopped).
    pub fn submit(&self, req: Request) -> Result<(), SubmitError> {
        check_request(&req, self.opts.n_ctx, self.n_vocab)?;
        let capacity = self.opts.parallel + self.opts.max_queue;
        let admitted = self
            .stats
            .admitted
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < capacity).then_some(n + 1)
            });
        if let Err(busy) = admitted {
            return Err(SubmitError::QueueFull { busy, capacity });
        }
        if self.tx.send(Command::Submit(req, Instant::now())).is_err() {
            self.stats.admitted.fetch_sub(1, Ordering::SeqCst);
            return Err(SubmitError::Stopped);
        }
        Ok(())
    }

    /// Asks the scheduler to end every request (each gets its `Done` event, finish
    /// reason `Cancelled`) and stop. Requests submitted afterwards are refused.
    pub fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown);
    }

    /// The scheduler's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The options it runs with.
    pub fn options(&self) -> &SchedulerOptions {
        &self.opts
    }
}

fn check_request(req: &Request, n_ctx: usize, n_vocab: usize) -> Result<(), SubmitError> {
    if req.prompt.is_empty() {
        return Err(SubmitError::EmptyPrompt);
    }
    if req.max_tokens == 0 {
        return Err(SubmitError::NoTokens);
    }
    // As `woolly-run generate`: at least one position left to generate into.
    if req.prompt.len() >= n_ctx {
        return Err(SubmitError::PromptTooLong {
            n_prompt: req.prompt.len(),
            n_ctx,
        });
    }
    if let Some(&token) = req.prompt.iter().find(|&&t| t as usize >= n_vocab) {
        return Err(SubmitError::BadToken { token, n_vocab });
    }
    Ok(())
}

/// A request holding a slot.
struct Job {
    req: Request,
    sampler: Sampler,
    /// Prompt and generated tokens, for the repetition penalty. (n_prompt + generated,)
    history: Vec<u32>,
    decoder: StreamDecoder,
    stop: StopMatcher,
    generated: usize,
    /// The last sampled token, to evaluate next step; None while reading the prompt.
    next: Option<u32>,
    /// This step's sampled token, between the parallel sampling and the streaming.
    sampled: Option<Result<u32, SampleError>>,
    cached: usize,
    queue_time: Duration,
    t_slot: Instant,
    t_first: Option<Instant>,
}

/// A KV-cache slot and the tokens its cache holds.
struct Slot {
    /// Tokens whose keys and values are in the slot, in order. (len(seq),)
    tokens: Vec<u32>,
    /// When the slot was last given out, on the scheduler's clock (least-recently-used ties).
    last_used: u64,
    job: Option<Job>,
}

/// The scheduler: the model, the KV cache, the slots and the queue.
pub struct Scheduler {
    model: Arc<Model>,
    opts: SchedulerOptions,
    kv: KvCache,
    scratch: Scratch,
    slots: Vec<Slot>,
    queue: VecDeque<(Request, Instant)>,
    rx: mpsc::Receiver<Command>,
    stats: Arc<Stats>,
    /// (max_batch_tokens,) the batch of the current step.
    batch: Vec<BatchToken>,
    /// Slot of each batch token that asked for logits, in batch order.
    logit_slots: Vec<usize>,
    /// Row of each slot's logits this step, if it has any. (slots,)
    row_of_slot: Vec<Option<usize>>,
    /// Counts slot assignments: the clock of `Slot::last_used`.
    clock: u64,
    /// Slot where the next round of prompt chunks starts (fairness between prompts).
    prefill_turn: usize,
    stopping: bool,
}

/// Starts a scheduler over `model` on a thread of its own. Fails when the KV cache would
/// exceed `opts.kv_limit_bytes`.
pub fn spawn(
    model: Arc<Model>,
    opts: SchedulerOptions,
) -> Result<(SchedulerHandle, JoinHandle<()>), KvCacheError> {
    let (handle, scheduler) = Scheduler::new(model, opts)?;
    let thread = std::thread::Builder::new()
        .name("woolly-scheduler".into())
        .spawn(move || scheduler.run())
        .expect("spawning the scheduler thread");
    Ok((handle, thread))
}

impl Scheduler {
    /// A scheduler and its handle; [`Scheduler::run`] it on a thread (see [`spawn`]).
    pub fn new(
        model: Arc<Model>,
        mut opts: SchedulerOptions,
    ) -> Result<(SchedulerHandle, Scheduler), KvCacheError> {
        opts.parallel = opts.parallel.max(1);
        opts.n_ctx = opts.n_ctx.max(2);
        // Every generating request puts one token in each step, and a prompt's chunks
        // hold whole groups of four tokens (see `build_batch`): room for a group beside
        // every other request's token.
        opts.max_batch_tokens = opts.max_batch_tokens.max(opts.parallel + 3);
        opts.prefill_chunk = opts.prefill_chunk.clamp(4, opts.max_batch_tokens);
        let kv = model.new_cache(opts.parallel, opts.n_ctx, opts.kv_type, opts.kv_limit_bytes)?;
        let scratch = model.new_scratch(opts.max_batch_tokens, opts.n_ctx);
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(Stats::default());
        let handle = SchedulerHandle {
            tx,
            stats: Arc::clone(&stats),
            opts,
            n_vocab: model.config().n_vocab,
        };
        let slots = (0..opts.parallel)
            .map(|_| Slot {
                tokens: Vec::new(),
                last_used: 0,
                job: None,
            })
            .collect();
        let scheduler = Scheduler {
            model,
            opts,
            kv,
            scratch,
            slots,
            queue: VecDeque::new(),
            rx,
            stats,
            batch: Vec::with_capacity(opts.max_batch_tokens),
            logit_slots: Vec::new(),
            row_of_slot: Vec::new(),
            clock: 0,
            prefill_turn: 0,
            stopping: false,
        };
        Ok((handle, scheduler))
    }

    /// Serves requests until shut down (or until every handle is dropped and the work
    /// is done).
    pub fn run(mut self) {
        loop {
            let idle = self.queue.is_empty() && self.slots.iter().all(|s| s.job.is_none());
            if idle {
                if self.stopping {
                    return;
                }
                // Nothing to do: block until a request comes.
                match self.rx.recv() {
                    Ok(cmd) => self.command(cmd),
                    Err(_) => return,
                }
            }
            while let Ok(cmd) = self.rx.try_recv() {
                self.command(cmd);
            }
            self.drop_disconnected();
            self.assign_slots();
            if !self.build_batch() {
                continue;
            }
            self.forward_and_sample();
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Submit(req, at) if self.stopping => self.refuse_queued(req, at),
            Command::Submit(req, at) => self.queue.push_back((req, at)),
            Command::Shutdown => {
                self.stopping = true;
                for i in 0..self.slots.len() {
                    if self.slots[i].job.is_some() {
                        self.finish(i, FinishReason::Cancelled);
                    }
                }
                while let Some((req, at)) = self.queue.pop_front() {
                    self.refuse_queued(req, at);
                }
            }
        }
    }

    /// Ends a queued request at shutdown with an empty completion.
    fn refuse_queued(&mut self, mut req: Request, at: Instant) {
        self.stats.admitted.fetch_sub(1, Ordering::SeqCst);
        self.stats.completed.fetch_add(1, Ordering::Relaxed);
        req.sink.send(Event::Done(Summary {
            finish: FinishReason::Cancelled,
            prompt_tokens: req.prompt.len(),
            cached_tokens: 0,
            completion_tokens: 0,
            queue_time: at.elapsed(),
            prompt_time: Duration::ZERO,
            gen_time: Duration::ZERO,
        }));
    }

    /// Stops the requests whose client went away and frees their slots.
    fn drop_disconnected(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i]
                .job
                .as_ref()
                .is_some_and(|j| j.req.sink.is_closed())
            {
                self.cancel(i);
            }
        }
        let before = self.queue.len();
        self.queue.retain(|(r, _)| !r.sink.is_closed());
        let gone = before - self.queue.len();
        if gone > 0 {
            self.stats.admitted.fetch_sub(gone, Ordering::SeqCst);
            self.stats
                .cancelled
                .fetch_add(gone as u64, Ordering::Relaxed);
        }
    }

    /// Gives queued requests free slots: the one sharing the longest prefix with the
    /// prompt, ties to the least recently used.
    fn assign_slots(&mut self) {
        while !self.queue.is_empty() {
            let Some((req, at)) = self.queue.front() else {
                break;
            };
            let prompt = &req.prompt;
            let best = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.job.is_none())
                .map(|(i, s)| (common_prefix(&s.tokens, prompt), i))
                .max_by(|a, b| {
                    a.0.cmp(&b.0)
                        .then(self.slots[b.1].last_used.cmp(&self.slots[a.1].last_used))
                });
            let Some((common, i)) = best else { break };
            let queue_time = at.elapsed();
            let (req, _) = self.queue.pop_front().expect("front exists");
            // At least the last prompt token is evaluated again, for its logits.
            let keep = common.min(req.prompt.len() - 1);
            let slot = &mut self.slots[i];
            slot.tokens.truncate(keep);
            self.kv.truncate(i, keep);
            self.clock += 1;
            slot.last_used = self.clock;
            self.stats.active.fetch_add(1, Ordering::SeqCst);
            self.stats
                .cached_prompt_tokens
                .fetch_add(keep as u64, Ordering::Relaxed);
            slot.job = Some(Job {
                sampler: Sampler::new(req.params),
                history: req.prompt.clone(),
                decoder: StreamDecoder::new(),
                stop: StopMatcher::new(&req.stop),
                generated: 0,
                next: None,
                sampled: None,
                cached: keep,
                queue_time,
                t_slot: Instant::now(),
                t_first: None,
                req,
            });
        }
    }

    /// Fills `self.batch` for this step; false when there is nothing to evaluate.
    fn build_batch(&mut self) -> bool {
        self.batch.clear();
        self.logit_slots.clear();
        // Decode: one token per generating request.
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some(token) = slot.job.as_ref().and_then(|j| j.next) {
                self.batch.push(BatchToken {
                    token,
                    pos: slot.tokens.len(),
                    seq: i,
                    logits: true,
                });
                self.logit_slots.push(i);
            }
        }
        // Prefill: a chunk per prompt, in turn, within the step's budget.
        let n = self.slots.len();
        let start = self.prefill_turn;
        self.prefill_turn = (self.prefill_turn + 1) % n;
        for k in 0..n {
            let i = (start + k) % n;
            let budget = self.opts.max_batch_tokens - self.batch.len();
            if budget == 0 {
                break;
            }
            let slot = &self.slots[i];
            let Some(job) = slot.job.as_ref().filter(|j| j.next.is_none()) else {
                continue;
            };
            let done = slot.tokens.len();
            let rest = &job.req.prompt[done..];
            let mut take = rest.len().min(self.opts.prefill_chunk).min(budget);
            if take < rest.len() {
                // Whole groups of four before the prompt's last chunk, so that its tokens
                // take the Q4_K orders they take in one batch (`forward::q4k_orders`),
                // whatever the load: the text `generate` gives.
                take -= take % 4;
                if take == 0 {
                    continue;
                }
            }
            for (k, &token) in rest[..take].iter().enumerate() {
                let last = done + k + 1 == job.req.prompt.len();
                self.batch.push(BatchToken {
                    token,
                    pos: done + k,
                    seq: i,
                    logits: last,
                });
                if last {
                    self.logit_slots.push(i);
                }
            }
        }
        !self.batch.is_empty()
    }

    fn forward_and_sample(&mut self) {
        let result = self
            .model
            .forward(&self.batch, &mut self.kv, &mut self.scratch);
        self.stats.steps.fetch_add(1, Ordering::Relaxed);
        self.stats
            .batch_tokens
            .fetch_add(self.batch.len() as u64, Ordering::Relaxed);
        if let Err(e) = result {
            // Every request in the batch fails; their slots start afresh.
            let mut seen: Vec<usize> = self.batch.iter().map(|t| t.seq).collect();
            seen.dedup();
            for i in seen {
                self.fail(i, &format!("forward pass: {e}"));
            }
            return;
        }
        let mut prompt_evaluated = 0u64;
        for t in &self.batch {
            let slot = &mut self.slots[t.seq];
            slot.tokens.push(t.token);
            if slot.job.as_ref().is_some_and(|j| j.next.is_none()) {
                prompt_evaluated += 1;
            }
        }
        self.stats
            .prompt_tokens
            .fetch_add(prompt_evaluated, Ordering::Relaxed);
        self.sample_all();
        for row in 0..self.logit_slots.len() {
            let i = self.logit_slots[row];
            self.sample(i, row);
        }
    }

    /// Samples the next token of every slot with logits this step, into its job's
    /// `sampled`: on the thread team when there are several (each slot has its own
    /// sampler and logits row, so the split changes no token).
    fn sample_all(&mut self) {
        self.row_of_slot.clear();
        self.row_of_slot.resize(self.slots.len(), None);
        for (row, &i) in self.logit_slots.iter().enumerate() {
            self.row_of_slot[i] = Some(row);
        }
        let (rows, scratch) = (&self.row_of_slot, &self.scratch);
        let sample = |i: usize, slot: &mut [Slot]| {
            if let (Some(row), Some(job)) = (rows[i], slot[0].job.as_mut()) {
                job.sampled = Some(job.sampler.sample(scratch.logits_row(row), &job.history));
            }
        };
        if self.logit_slots.len() < 2 {
            for (i, slot) in self.slots.chunks_mut(1).enumerate() {
                sample(i, slot);
            }
        } else {
            team::for_each_chunk(&mut self.slots, 1, sample);
        }
    }

    /// Samples slot `i`'s next token from logits row `row` and streams its text: the
    /// body of [`crate::generate::generate`]'s loop.
    fn sample(&mut self, i: usize, row: usize) {
        let tokenizer = self.model.tokenizer();
        let n_ctx = self.opts.n_ctx;
        let logits = self.scratch.logits_row(row);
        let slot = &mut self.slots[i];
        let Some(job) = slot.job.as_mut() else { return };
        let sampled = job
            .sampled
            .take()
            .expect("sample_all sampled every logits row");
        let token = match sampled {
            Ok(t) => t,
            Err(e) => return self.fail(i, &format!("sampling: {e}")),
        };
        job.t_first.get_or_insert_with(Instant::now);
        if !job.req.ignore_eos && tokenizer.is_eog(token) {
            return self.finish(i, FinishReason::Stop);
        }
        let logprobs = job.req.logprobs.map(|n| TokenLogprobs {
            token,
            logprob: logprob_of(logits, token),
            top: top_logprobs(logits, n),
        });
        job.generated += 1;
        job.history.push(token);
        self.stats.generated_tokens.fetch_add(1, Ordering::Relaxed);
        let piece = match job.decoder.push(tokenizer, token) {
            Ok(p) => p,
            Err(e) => return self.fail(i, &format!("decoding token {token}: {e}")),
        };
        let (text, stopped) = job.stop.push(&piece);
        let delta = Event::Delta {
            text,
            token: Some(token),
            logprobs,
        };
        if !job.req.sink.send(delta) {
            return self.cancel(i);
        }
        if stopped {
            return self.finish(i, FinishReason::Stop);
        }
        if job.generated >= job.req.max_tokens || slot.tokens.len() >= n_ctx {
            return self.finish(i, FinishReason::Length);
        }
        job.next = Some(token);
    }

    /// Ends slot `i`'s request: flushes held-back text as `generate` does, sends `Done`
    /// and frees the slot (its tokens stay for prefix reuse).
    fn finish(&mut self, i: usize, finish: FinishReason) {
        let Some(mut job) = self.slots[i].job.take() else {
            return;
        };
        let rest = if finish == FinishReason::Stop {
            // `generate` drops text held back for a stop string that never completed
            // when an end-of-generation token comes; so does the server.
            if job.stop.finish().is_empty() {
                job.decoder.finish()
            } else {
                String::new()
            }
        } else {
            let rest = job.decoder.finish();
            let (text, _) = job.stop.push(&rest);
            text + &job.stop.finish()
        };
        let now = Instant::now();
        let t_first = job.t_first.unwrap_or(now);
        let summary = Summary {
            finish,
            prompt_tokens: job.req.prompt.len(),
            cached_tokens: job.cached,
            completion_tokens: job.generated,
            queue_time: job.queue_time,
            prompt_time: t_first - job.t_slot,
            gen_time: now - t_first,
        };
        let sink = &mut job.req.sink;
        if !rest.is_empty() {
            sink.send(Event::Delta {
                text: rest,
                token: None,
                logprobs: None,
            });
        }
        sink.send(Event::Done(summary));
        self.release(i);
        self.stats.completed.fetch_add(1, Ordering::Relaxed);
    }

    /// Stops slot `i`'s request without a word: its client is gone.
    fn cancel(&mut self, i: usize) {
        if self.slots[i].job.take().is_some() {
            self.release(i);
            self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Fails slot `i`'s request and forgets the slot's cache.
    fn fail(&mut self, i: usize, message: &str) {
        let slot = &mut self.slots[i];
        slot.tokens.clear();
        self.kv.truncate(i, 0);
        if let Some(mut job) = slot.job.take() {
            job.req.sink.send(Event::Error(message.to_owned()));
            self.release(i);
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn release(&mut self, i: usize) {
        // The cache holds exactly the evaluated tokens (a prompt cut short keeps its
        // evaluated prefix).
        debug_assert_eq!(self.kv.len(i), self.slots[i].tokens.len());
        self.stats.active.fetch_sub(1, Ordering::SeqCst);
        self.stats.admitted.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Length of the common prefix of `a` and `b`.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// log-softmax of `logits` at `token`, computed as [`top_logprobs`] does.
fn logprob_of(logits: &[f32], token: u32) -> f32 {
    let max = logits
        .iter()
        .filter(|l| l.is_finite())
        .fold(f32::NEG_INFINITY, |m, &l| m.max(l));
    let log_norm = logits
        .iter()
        .filter(|l| l.is_finite())
        .map(|&l| f64::from(l - max).exp())
        .sum::<f64>()
        .ln() as f32;
    logits[token as usize] - max - log_norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Session;
    use crate::SessionOptions;
    use crate::generate::{GenerateOptions, generate};
    use std::ops::ControlFlow;

    fn tiny() -> Arc<Model> {
        let path = crate::paths::conformance_file("models/tiny-q4km.gguf");
        Arc::new(Model::load(path).expect("tiny model loads"))
    }

    struct Outcome {
        text: String,
        summary: Summary,
        n_logprobs: usize,
    }

    fn collect(rx: mpsc::Receiver<Event>) -> Outcome {
        let mut text = String::new();
        let mut n_logprobs = 0;
        for ev in rx {
            match ev {
                Event::Delta {
                    text: t, logprobs, ..
                } => {
                    text.push_str(&t);
                    n_logprobs += usize::from(logprobs.is_some());
                }
                Event::Done(summary) => {
                    return Outcome {
                        text,
                        summary,
                        n_logprobs,
                    };
                }
                Event::Error(e) => panic!("request failed: {e}"),
            }
        }
        panic!("the channel closed without Done");
    }

    fn request(prompt: Vec<u32>, seed: u64, max_tokens: usize) -> (Request, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel();
        let req = Request {
            prompt,
            params: SamplingParams {
                seed,
                ..SamplingParams::default()
            },
            max_tokens,
            stop: vec![],
            ignore_eos: false,
            logprobs: Some(2),
            sink: Box::new(tx),
        };
        (req, rx)
    }

    fn reference(model: &Model, prompt: &[u32], seed: u64, max_tokens: usize) -> String {
        let mut session = Session::new(
            model,
            SessionOptions {
                n_ctx: 256,
                ..SessionOptions::default()
            },
        )
        .unwrap();
        let mut sampler = Sampler::new(SamplingParams {
            seed,
            ..SamplingParams::default()
        });
        let opts = GenerateOptions {
            max_tokens,
            ..GenerateOptions::default()
        };
        generate(
            &mut session,
            prompt,
            &mut sampler,
            &opts,
            |_, _| {},
            |_| ControlFlow::Continue(()),
        )
        .unwrap()
        .text
    }

    #[test]
    fn batched_requests_give_the_same_text_as_generate() {
        let model = tiny();
        let tok = model.tokenizer();
        let prompts = [
            "Once upon a time",
            "The quick brown fox jumps over the lazy dog, and then",
            "1, 2, 3,",
        ];
        let opts = SchedulerOptions {
            parallel: 2,
            n_ctx: 256,
            prefill_chunk: 5,
            max_batch_tokens: 8,
            ..SchedulerOptions::default()
        };
        let (handle, thread) = spawn(Arc::clone(&model), opts).unwrap();
        let mut rxs = Vec::new();
        for (k, p) in prompts.iter().enumerate() {
            let prompt = tok.encode(p, true, false).unwrap();
            let (req, rx) = request(prompt.clone(), 7 + k as u64, 24);
            handle.submit(req).unwrap();
            rxs.push((prompt, 7 + k as u64, rx));
        }
        for (prompt, seed, rx) in rxs {
            let got = collect(rx);
            assert_eq!(got.text, reference(&model, &prompt, seed, 24));
            assert_eq!(got.summary.prompt_tokens, prompt.len());
            assert_eq!(got.n_logprobs, got.summary.completion_tokens);
        }
        handle.shutdown();
        thread.join().unwrap();
        assert_eq!(handle.stats().admitted.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_slot_keeps_its_prefix_for_the_next_request() {
        let model = tiny();
        let prompt = model
            .tokenizer()
            .encode("Hello there, how are you", true, false)
            .unwrap();
        let (handle, thread) = spawn(
            Arc::clone(&model),
            SchedulerOptions {
                parallel: 2,
                n_ctx: 128,
                ..SchedulerOptions::default()
            },
        )
        .unwrap();
        let (req, rx) = request(prompt.clone(), 1, 4);
        handle.submit(req).unwrap();
        let first = collect(rx);
        assert_eq!(first.summary.cached_tokens, 0);
        let mut longer = prompt.clone();
        longer.extend_from_slice(&prompt[1..]);
        let (req, rx) = request(longer, 1, 4);
        handle.submit(req).unwrap();
        let second = collect(rx);
        assert_eq!(second.summary.cached_tokens, prompt.len());
        handle.shutdown();
        thread.join().unwrap();
    }

    #[test]
    fn refusals_name_the_problem() {
        let model = tiny();
        let (handle, _sched) = Scheduler::new(
            Arc::clone(&model),
            SchedulerOptions {
                parallel: 1,
                max_queue: 0,
                n_ctx: 16,
                ..SchedulerOptions::default()
            },
        )
        .unwrap();
        let (req, _rx) = request(vec![1; 16], 0, 4);
        assert!(matches!(
            handle.submit(req),
            Err(SubmitError::PromptTooLong {
                n_prompt: 16,
                n_ctx: 16
            })
        ));
        let (req, _rx) = request(vec![], 0, 4);
        assert_eq!(handle.submit(req), Err(SubmitError::EmptyPrompt));
        let (req, _rx1) = request(vec![1, 2], 0, 4);
        handle.submit(req).unwrap();
        let (req, _rx2) = request(vec![1, 2], 0, 4);
        assert!(matches!(
            handle.submit(req),
            Err(SubmitError::QueueFull { capacity: 1, .. })
        ));
    }
}
