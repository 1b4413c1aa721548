//! The routes: generation (JSON or server-sent events), models, health and metrics.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use woolly_model::batching::{Event, EventSink, Request, SubmitError, Summary, TokenLogprobs};
use woolly_model::tokenizer::Tokenizer;

use super::error::ApiError;
use super::request::{self, Options, Prompt};
use super::{AppState, Ready};

type Shared = Arc<AppState>;

/// The server's routes.
pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .fallback(not_found)
        .with_state(state)
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn health(State(st): State<Shared>) -> Response {
    let resp = if st.ready.get().is_some() && !st.stopping.load(Ordering::SeqCst) {
        (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
    } else if st.stopping.load(Ordering::SeqCst) {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down",
        )
        .into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "model_loading",
            "the model is loading",
        )
        .into_response()
    };
    st.metrics.request("health", resp.status().as_u16());
    resp
}

async fn metrics(State(st): State<Shared>) -> Response {
    let text = st.metrics.render(st.ready.get().map(|r| &r.sched));
    st.metrics.request("metrics", 200);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        text,
    )
        .into_response()
}

async fn models(State(st): State<Shared>, headers: HeaderMap) -> Response {
    let resp = match authorize(&st, &headers) {
        Ok(()) => axum::Json(json!({
            "object": "list",
            "data": [{
                "id": st.model_id,
                "object": "model",
                "created": st.started,
                "owned_by": "woolly",
            }],
        }))
        .into_response(),
        Err(e) => e.into_response(),
    };
    st.metrics.request("models", resp.status().as_u16());
    resp
}

async fn not_found(State(st): State<Shared>) -> Response {
    st.metrics.request("other", 404);
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route").into_response()
}

async fn chat(State(st): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    generation(st, headers, body, Kind::Chat).await
}

async fn completions(State(st): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    generation(st, headers, body, Kind::Completion).await
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Completion,
}

impl Kind {
    fn endpoint(self) -> &'static str {
        match self {
            Kind::Chat => "chat_completions",
            Kind::Completion => "completions",
        }
    }
}

/// The prompt as parsed, before tokenizing.
enum Input {
    Chat(Vec<woolly_model::chat::Message>),
    Completion(Prompt),
}

/// A request accepted by the scheduler.
struct Accepted {
    ready: Arc<Ready>,
    options: Options,
    rx: mpsc::UnboundedReceiver<Event>,
    id: String,
}

async fn generation(st: Shared, headers: HeaderMap, body: Body, kind: Kind) -> Response {
    let t0 = Instant::now();
    let resp = match accept(&st, &headers, body, kind).await {
        Ok(acc) if acc.options.stream => stream(Arc::clone(&st), acc, kind, t0),
        Ok(acc) => collect(&st, acc, kind, t0).await,
        Err(e) => e.into_response(),
    };
    st.metrics.request(kind.endpoint(), resp.status().as_u16());
    resp
}

fn authorize(st: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &st.api_key else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    // Compare every byte, whatever the first difference, so timing tells nothing.
    let ok = given.is_some_and(|g| {
        g.len() == key.len()
            && g.bytes()
                .zip(key.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if ok {
        Ok(())
    } else {
        let message = if given.is_none() {
            "missing API key: send Authorization: Bearer KEY"
        } else {
            "incorrect API key"
        };
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            message,
        ))
    }
}

/// Most bytes read (and thrown away) from a body over the limit before answering 413:
/// clients that send the whole body before reading the answer then see the 413 rather
/// than a reset connection.
const DRAIN_LIMIT: usize = 64 << 20;

async fn read_body(st: &AppState, headers: &HeaderMap, body: Body) -> Result<Vec<u8>, ApiError> {
    use futures_util::StreamExt;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!(
                "the request body is larger than the limit of {} bytes (--max-body)",
                st.max_body
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        return Err(too_large());
    }
    let mut out = Vec::with_capacity(declared.map_or(0, |n| n.min(st.max_body as u64) as usize));
    let mut seen = 0usize;
    let mut frames = body.into_data_stream();
    while let Some(frame) = frames.next().await {
        let Ok(bytes) = frame else {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                "the request body could not be read",
            ));
        };
        seen = seen.saturating_add(bytes.len());
        if seen <= st.max_body {
            out.extend_from_slice(&bytes);
        } else if seen > DRAIN_LIMIT {
            break;
        }
    }
    if seen > st.max_body {
        return Err(too_large());
    }
    Ok(out)
}

/// Checks, parses, tokenizes and submits a generation request.
async fn accept(
    st: &Shared,
    headers: &HeaderMap,
    body: Body,
    kind: Kind,
) -> Result<Accepted, ApiError> {
    authorize(st, headers)?;
    let body = read_body(st, headers, body).await?;
    let (input, options) = match kind {
        Kind::Chat => {
            let r = request::parse_chat(&body)?;
            (Input::Chat(r.messages), r.options)
        }
        Kind::Completion => {
            let r = request::parse_completion(&body)?;
            (Input::Completion(r.prompt), r.options)
        }
    };
    if let Some(model) = &options.model
        && model != &st.model_id
    {
        return Err(ApiError {
            param: Some("model".into()),
            ..ApiError::new(
                StatusCode::NOT_FOUND,
                "model_not_found",
                format!(
                    "model: {model:?} does not exist; this server serves {:?}",
                    st.model_id
                ),
            )
        });
    }
    if st.stopping.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down",
        ));
    }
    let Some(ready) = st.ready.get().cloned() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "model_loading",
            "the model is loading; retry when /health answers 200",
        ));
    };
    let prompt_field = if kind == Kind::Chat {
        "messages"
    } else {
        "prompt"
    };
    // Tokenizing a megabyte takes a while: off the async threads.
    let prompt = {
        let ready = Arc::clone(&ready);
        tokio::task::spawn_blocking(move || tokenize(&ready, input))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "tokenizing panicked",
                )
            })?
            .map_err(|message| ApiError {
                param: Some(prompt_field.into()),
                ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_value", message)
            })?
    };
    let n_ctx = ready.sched.options().n_ctx;
    let (tx, rx) = mpsc::unbounded_channel();
    let req = Request {
        max_tokens: options
            .max_tokens
            .unwrap_or_else(|| n_ctx.saturating_sub(prompt.len()).max(1)),
        params: woolly_model::sampling::SamplingParams {
            seed: options.seed.unwrap_or_else(random_seed),
            ..options.sampling
        },
        prompt,
        stop: options.stop.clone(),
        ignore_eos: options.ignore_eos,
        logprobs: options.logprobs,
        sink: Box::new(Sink(tx)),
    };
    ready
        .sched
        .submit(req)
        .map_err(|e| submit_error(e, prompt_field))?;
    let prefix = if kind == Kind::Chat {
        "chatcmpl"
    } else {
        "cmpl"
    };
    let id = format!(
        "{prefix}-{:x}{:06x}",
        st.started,
        st.next_id.fetch_add(1, Ordering::Relaxed)
    );
    Ok(Accepted {
        ready,
        options,
        rx,
        id,
    })
}

fn tokenize(ready: &Ready, input: Input) -> Result<Vec<u32>, String> {
    let tokenizer = ready.model.tokenizer();
    match input {
        // Template markers become special tokens; message text stays text.
        Input::Chat(messages) => ready
            .template
            .render(&messages, true)
            .map_err(|e| e.to_string())?
            .encode(tokenizer, true)
            .map_err(|e| format!("messages: {e}")),
        Input::Completion(Prompt::Text(text)) => tokenizer
            .encode(&text, true, false)
            .map_err(|e| format!("prompt: {e}")),
        Input::Completion(Prompt::Tokens(ids)) => Ok(ids),
    }
}

fn submit_error(e: SubmitError, prompt_field: &str) -> ApiError {
    let message = e.to_string();
    let (status, code, param) = match e {
        SubmitError::QueueFull { .. } => (StatusCode::SERVICE_UNAVAILABLE, "queue_full", None),
        SubmitError::Stopped => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down", None),
        SubmitError::PromptTooLong { .. } => (
            StatusCode::BAD_REQUEST,
            "context_length_exceeded",
            Some(prompt_field),
        ),
        SubmitError::EmptyPrompt | SubmitError::BadToken { .. } => {
            (StatusCode::BAD_REQUEST, "invalid_value", Some(prompt_field))
        }
        SubmitError::NoTokens => (StatusCode::BAD_REQUEST, "invalid_value", Some("max_tokens")),
    };
    let message = match param {
        Some(p) if !message.starts_with(p) => format!("{p}: {message}"),
        _ => message,
    };
    ApiError {
        param: param.map(str::to_owned),
        ..ApiError::new(status, code, message)
    }
}

/// A seed for a request that gave none.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// The scheduler's events into a tokio channel; closed when the client goes away.
struct Sink(mpsc::UnboundedSender<Event>);

impl EventSink for Sink {
    fn send(&mut self, event: Event) -> bool {
        self.0.send(event).is_ok()
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// Latency bookkeeping of one request.
struct Timer {
    t0: Instant,
    last: Option<Instant>,
}

impl Timer {
    fn token(&mut self, st: &AppState) {
        let now = Instant::now();
        match self.last {
            None => st.metrics.time_to_first_token(now - self.t0),
            Some(last) => st.metrics.inter_token(now - last),
        }
        self.last = Some(now);
    }
}

fn usage(s: &Summary) -> Value {
    json!({
        "prompt_tokens": s.prompt_tokens,
        "completion_tokens": s.completion_tokens,
        "total_tokens": s.prompt_tokens + s.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": s.cached_tokens},
    })
}

fn token_text(tok: &Tokenizer, id: u32) -> (String, Vec<u8>) {
    let bytes = tok.piece(id, true).unwrap_or_default().to_vec();
    (String::from_utf8_lossy(&bytes).into_owned(), bytes)
}

/// One token's entry in a chat `logprobs.content` array.
fn chat_logprob(tok: &Tokenizer, lp: &TokenLogprobs) -> Value {
    let entry = |id: u32, logprob: f32| {
        let (text, bytes) = token_text(tok, id);
        json!({"token": text, "logprob": logprob, "bytes": bytes})
    };
    let mut v = entry(lp.token, lp.logprob);
    v["top_logprobs"] = lp.top.iter().map(|&(id, l)| entry(id, l)).collect();
    v
}

/// Completion-style logprobs of some tokens, `offset` being the output length before
/// the first.
fn completion_logprobs(tok: &Tokenizer, lps: &[(usize, TokenLogprobs)]) -> Value {
    let mut tokens = Vec::new();
    let mut token_logprobs = Vec::new();
    let mut top = Vec::new();
    let mut offsets = Vec::new();
    for (offset, lp) in lps {
        tokens.push(token_text(tok, lp.token).0);
        token_logprobs.push(lp.logprob);
        let alternatives: serde_json::Map<String, Value> = lp
            .top
            .iter()
            .map(|&(id, l)| (token_text(tok, id).0, json!(l)))
            .collect();
        top.push(Value::Object(alternatives));
        offsets.push(*offset);
    }
    json!({
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top,
        "text_offset": offsets,
    })
}

fn internal(message: &str) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        message.to_owned(),
    )
}

/// Waits for the whole completion and answers one JSON object.
async fn collect(st: &AppState, mut acc: Accepted, kind: Kind, t0: Instant) -> Response {
    let mut timer = Timer { t0, last: None };
    let mut text = String::new();
    let mut lps: Vec<(usize, TokenLogprobs)> = Vec::new();
    let summary = loop {
        match acc.rx.recv().await {
            Some(Event::Delta {
                text: t,
                token,
                logprobs,
            }) => {
                if token.is_some() {
                    timer.token(st);
                }
                if let Some(lp) = logprobs {
                    lps.push((text.len(), lp));
                }
                text.push_str(&t);
            }
            Some(Event::Done(s)) => break s,
            Some(Event::Error(e)) => return internal(&e).into_response(),
            None => return internal("the scheduler stopped").into_response(),
        }
    };
    st.metrics.duration(t0.elapsed());
    let tok = acc.ready.model.tokenizer();
    let want_lp = acc.options.logprobs.is_some();
    let choice = match kind {
        Kind::Chat => json!({
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": if want_lp {
                json!({"content": lps.iter().map(|(_, lp)| chat_logprob(tok, lp)).collect::<Vec<_>>()})
            } else {
                Value::Null
            },
            "finish_reason": summary.finish.as_str(),
        }),
        Kind::Completion => json!({
            "index": 0,
            "text": text,
            "logprobs": if want_lp { completion_logprobs(tok, &lps) } else { Value::Null },
            "finish_reason": summary.finish.as_str(),
        }),
    };
    axum::Json(json!({
        "id": acc.id,
        "object": if kind == Kind::Chat { "chat.completion" } else { "text_completion" },
        "created": unix_now(),
        "model": st.model_id,
        "system_fingerprint": "woolly",
        "choices": [choice],
        "usage": usage(&summary),
    }))
    .into_response()
}

/// The state of one server-sent event stream.
struct Streamer {
    st: Shared,
    acc: Accepted,
    kind: Kind,
    created: u64,
    timer: Timer,
    /// Output length so far (completion logprobs' offsets).
    out_len: usize,
    done: bool,
}

impl Streamer {
    fn chunk(&self, delta_or_text: Value, logprobs: Value, finish: Option<&str>) -> String {
        let choice = match self.kind {
            Kind::Chat => json!({
                "index": 0, "delta": delta_or_text, "logprobs": logprobs, "finish_reason": finish,
            }),
            Kind::Completion => json!({
                "index": 0, "text": delta_or_text, "logprobs": logprobs, "finish_reason": finish,
            }),
        };
        self.event(json!({
            "id": self.acc.id,
            "object": if self.kind == Kind::Chat { "chat.completion.chunk" } else { "text_completion" },
            "created": self.created,
            "model": self.st.model_id,
            "system_fingerprint": "woolly",
            "choices": [choice],
        }))
    }

    fn event(&self, v: Value) -> String {
        format!("data: {v}\n\n")
    }

    fn text_value(&self, text: &str) -> Value {
        match self.kind {
            Kind::Chat => json!({"content": text}),
            Kind::Completion => json!(text),
        }
    }

    /// The next piece of the body, or None at the end.
    async fn next(&mut self) -> Option<String> {
        if self.done {
            return None;
        }
        loop {
            let event = self.acc.rx.recv().await;
            match event {
                Some(Event::Delta {
                    text,
                    token,
                    logprobs,
                }) => {
                    if token.is_some() {
                        self.timer.token(&self.st);
                    }
                    if text.is_empty() && logprobs.is_none() {
                        continue;
                    }
                    let tok = self.acc.ready.model.tokenizer();
                    let lp = match (&logprobs, self.kind) {
                        (None, _) => Value::Null,
                        (Some(lp), Kind::Chat) => json!({"content": [chat_logprob(tok, lp)]}),
                        (Some(lp), Kind::Completion) => {
                            completion_logprobs(tok, &[(self.out_len, lp.clone())])
                        }
                    };
                    self.out_len += text.len();
                    return Some(self.chunk(self.text_value(&text), lp, None));
                }
                Some(Event::Done(summary)) => {
                    self.done = true;
                    self.st.metrics.duration(self.timer.t0.elapsed());
                    let empty = match self.kind {
                        Kind::Chat => json!({}),
                        Kind::Completion => json!(""),
                    };
                    let mut out = self.chunk(empty, Value::Null, Some(summary.finish.as_str()));
                    if self.acc.options.include_usage {
                        out += &self.event(json!({
                            "id": self.acc.id,
                            "object": if self.kind == Kind::Chat { "chat.completion.chunk" } else { "text_completion" },
                            "created": self.created,
                            "model": self.st.model_id,
                            "system_fingerprint": "woolly",
                            "choices": [],
                            "usage": usage(&summary),
                        }));
                    }
                    out += "data: [DONE]\n\n";
                    return Some(out);
                }
                Some(Event::Error(e)) => {
                    self.done = true;
                    return Some(self.event(internal(&e).body()) + "data: [DONE]\n\n");
                }
                None => {
                    self.done = true;
                    return Some(
                        self.event(internal("the scheduler stopped").body()) + "data: [DONE]\n\n",
                    );
                }
            }
        }
    }
}

/// Answers with server-sent events as tokens come. Dropping the body (the client went
/// away) drops the receiver, and the scheduler frees the slot on its next step.
fn stream(st: Shared, acc: Accepted, kind: Kind, t0: Instant) -> Response {
    let created = unix_now();
    let streamer = Streamer {
        st,
        acc,
        kind,
        created,
        timer: Timer { t0, last: None },
        out_len: 0,
        done: false,
    };
    let first = (kind == Kind::Chat).then(|| {
        streamer.chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
            None,
        )
    });
    let body = futures_util::stream::unfold((streamer, first), |(mut s, first)| async move {
        if let Some(first) = first {
            return Some((Ok::<_, Infallible>(first), (s, None)));
        }
        let piece = s.next().await?;
        Some((Ok(piece), (s, None)))
    });
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Body::from_stream(body),
    )
        .into_response()
}
