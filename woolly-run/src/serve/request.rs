//! Parsing OpenAI request bodies into checked requests, with errors that name the field.
//!
//! This module depends only on `serde_json` and `woolly-model` (no HTTP types), so a fuzz
//! target can include it alone. Fields Woolly does not support are refused by name, never
//! silently ignored: `n` other than 1, `tools`, `tool_choice`, `functions`,
//! `function_call`, a non-empty `logit_bias`, non-zero `presence_penalty` or
//! `frequency_penalty`, a `response_format` other than text, `best_of` over 1, `echo`,
//! `suffix`. Unknown fields are ignored, as OpenAI does. `null` is the same as absent.
//!
//! Sampling defaults are llama.cpp's (and `woolly-run generate`'s): temperature 0.8,
//! top_k 40, top_p 0.95, min_p 0.05, so a request and `generate` with the same options
//! give the same text. `top_k`, `min_p`, `repeat_penalty`, `repeat_last_n` and
//! `ignore_eos` are accepted as extensions (llama-server's names).

use serde_json::{Map, Value};
use woolly_model::chat::Message;
use woolly_model::sampling::{MAX_TOP_LOGPROBS, SamplingParams};

/// Most stop strings in one request.
pub const MAX_STOP: usize = 16;

/// A request field that is wrong, or that Woolly does not support.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FieldError {
    /// The field at fault (`messages[1].content`, `temperature`), or empty for the body.
    pub field: String,
    /// What is wrong, naming the field.
    pub message: String,
    /// Whether the field is valid OpenAI but unsupported here.
    pub unsupported: bool,
}

impl FieldError {
    fn invalid(field: impl Into<String>, what: impl std::fmt::Display) -> FieldError {
        let field = field.into();
        FieldError {
            message: format!("{field}: {what}"),
            field,
            unsupported: false,
        }
    }

    fn unsupported(field: &str, what: &str) -> FieldError {
        FieldError {
            field: field.to_owned(),
            message: format!("{field}: {what} is not supported by this server"),
            unsupported: true,
        }
    }
}

/// The prompt of a completion request.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    /// Text, tokenized with the model's BOS and special-token text kept as text.
    Text(String),
    /// Token ids, used as given.
    Tokens(Vec<u32>),
}

/// Options common to chat and completion requests.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// The `model` field, when given.
    pub model: Option<String>,
    /// `max_completion_tokens`, else `max_tokens`; None: until the slot is full.
    pub max_tokens: Option<usize>,
    /// Sampling options; `seed` is None when the request gave none.
    pub sampling: SamplingParams,
    /// The request's `seed`.
    pub seed: Option<u64>,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Stream server-sent events.
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with the usage.
    pub include_usage: bool,
    /// Keep generating past end-of-generation tokens (extension).
    pub ignore_eos: bool,
    /// `Some(n)`: log-probabilities with `n` alternatives per token.
    pub logprobs: Option<usize>,
}

/// `POST /v1/chat/completions`.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatRequest {
    /// The conversation.
    pub messages: Vec<Message>,
    /// Everything else.
    pub options: Options,
}

/// `POST /v1/completions`.
#[derive(Clone, Debug, PartialEq)]
pub struct CompletionRequest {
    /// The text to continue.
    pub prompt: Prompt,
    /// Everything else.
    pub options: Options,
}

/// Parses a chat completion body.
pub fn parse_chat(body: &[u8]) -> Result<ChatRequest, FieldError> {
    let obj = parse_object(body)?;
    refuse_unsupported(&obj)?;
    let messages = match get(&obj, "messages") {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, m)| parse_message(i, m))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(FieldError::invalid("messages", "must be an array")),
        None => return Err(FieldError::invalid("messages", "is required")),
    };
    if messages.is_empty() {
        return Err(FieldError::invalid("messages", "must not be empty"));
    }
    let logprobs = opt_bool(&obj, "logprobs")?.unwrap_or(false);
    let top = opt_uint(&obj, "top_logprobs")?;
    if let Some(n) = top {
        if n > MAX_TOP_LOGPROBS as u64 {
            return Err(FieldError::invalid(
                "top_logprobs",
                format!("must be at most {MAX_TOP_LOGPROBS}, got {n}"),
            ));
        }
        if !logprobs {
            return Err(FieldError::invalid(
                "top_logprobs",
                "requires logprobs to be true",
            ));
        }
    }
    let logprobs = logprobs.then(|| top.unwrap_or(0) as usize);
    let options = parse_options(&obj, logprobs)?;
    Ok(ChatRequest { messages, options })
}

/// Parses a completion body.
pub fn parse_completion(body: &[u8]) -> Result<CompletionRequest, FieldError> {
    let obj = parse_object(body)?;
    refuse_unsupported(&obj)?;
    if opt_bool(&obj, "echo")? == Some(true) {
        return Err(FieldError::unsupported("echo", "echo"));
    }
    if opt_str(&obj, "suffix")?.is_some_and(|s| !s.is_empty()) {
        return Err(FieldError::unsupported("suffix", "suffix"));
    }
    if opt_uint(&obj, "best_of")?.is_some_and(|n| n > 1) {
        return Err(FieldError::unsupported("best_of", "best_of other than 1"));
    }
    let prompt = match get(&obj, "prompt") {
        None => return Err(FieldError::invalid("prompt", "is required")),
        Some(Value::String(s)) => Prompt::Text(s.clone()),
        Some(Value::Array(items)) => parse_prompt_array(items)?,
        Some(_) => {
            return Err(FieldError::invalid(
                "prompt",
                "must be a string, an array of one string, or an array of token ids",
            ));
        }
    };
    let logprobs = match opt_uint(&obj, "logprobs")? {
        Some(n) if n > MAX_TOP_LOGPROBS as u64 => {
            return Err(FieldError::invalid(
                "logprobs",
                format!("must be at most {MAX_TOP_LOGPROBS}, got {n}"),
            ));
        }
        n => n.map(|n| n as usize),
    };
    let options = parse_options(&obj, logprobs)?;
    Ok(CompletionRequest { prompt, options })
}

fn parse_prompt_array(items: &[Value]) -> Result<Prompt, FieldError> {
    match items {
        [Value::String(s)] => Ok(Prompt::Text(s.clone())),
        [_, _, ..] if items.iter().all(Value::is_string) => Err(FieldError::unsupported(
            "prompt",
            "more than one prompt per request",
        )),
        _ => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_u64()
                    .and_then(|t| u32::try_from(t).ok())
                    .ok_or_else(|| {
                        FieldError::invalid(format!("prompt[{i}]"), "must be a token id")
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Prompt::Tokens),
    }
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, FieldError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| FieldError {
        field: String::new(),
        message: format!("the body is not valid JSON: {e}"),
        unsupported: false,
    })?;
    match value {
        Value::Object(obj) => Ok(obj),
        _ => Err(FieldError {
            field: String::new(),
            message: "the body must be a JSON object".into(),
            unsupported: false,
        }),
    }
}

/// A field's value; `null` counts as absent.
fn get<'a>(obj: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    obj.get(field).filter(|v| !v.is_null())
}

fn refuse_unsupported(obj: &Map<String, Value>) -> Result<(), FieldError> {
    if let Some(n) = opt_uint(obj, "n")?
        && n != 1
    {
        return Err(FieldError::unsupported("n", "n other than 1"));
    }
    for field in ["tools", "tool_choice", "functions", "function_call"] {
        let present = match get(obj, field) {
            None => false,
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::String(s)) => s != "none",
            Some(_) => true,
        };
        if present {
            return Err(FieldError::unsupported(field, "tool and function calling"));
        }
    }
    if let Some(bias) = get(obj, "logit_bias")
        && bias.as_object().is_none_or(|m| !m.is_empty())
    {
        return Err(FieldError::unsupported("logit_bias", "logit_bias"));
    }
    for field in ["presence_penalty", "frequency_penalty"] {
        if opt_f32(obj, field)?.is_some_and(|p| p != 0.0) {
            return Err(FieldError::unsupported(field, "a non-zero penalty"));
        }
    }
    if let Some(format) = get(obj, "response_format") {
        let ty = format.get("type").and_then(Value::as_str);
        if ty != Some("text") {
            return Err(FieldError::unsupported(
                "response_format",
                "a response_format other than text",
            ));
        }
    }
    Ok(())
}

fn parse_options(obj: &Map<String, Value>, logprobs: Option<usize>) -> Result<Options, FieldError> {
    let model = opt_str(obj, "model")?.map(str::to_owned);
    let max_tokens = match opt_uint(obj, "max_completion_tokens")? {
        Some(n) => Some(("max_completion_tokens", n)),
        None => opt_uint(obj, "max_tokens")?.map(|n| ("max_tokens", n)),
    };
    if let Some((field, 0)) = max_tokens {
        return Err(FieldError::invalid(field, "must be at least 1"));
    }
    let max_tokens = max_tokens.map(|(_, n)| usize::try_from(n).unwrap_or(usize::MAX));
    let mut sampling = SamplingParams::default();
    if let Some(t) = opt_f32(obj, "temperature")? {
        sampling.temperature = t;
    }
    if let Some(p) = opt_f32(obj, "top_p")? {
        sampling.top_p = p;
    }
    if let Some(p) = opt_f32(obj, "min_p")? {
        sampling.min_p = p;
    }
    if let Some(k) = opt_uint(obj, "top_k")? {
        sampling.top_k = usize::try_from(k).unwrap_or(usize::MAX);
    }
    if let Some(r) = opt_f32(obj, "repeat_penalty")? {
        sampling.repeat_penalty = r;
    }
    if let Some(n) = opt_uint(obj, "repeat_last_n")? {
        sampling.repeat_last_n = usize::try_from(n).unwrap_or(usize::MAX);
    }
    sampling.validate().map_err(|e| {
        FieldError::invalid(
            e.field,
            format!("must be {}, got {}", e.requirement, e.value),
        )
    })?;
    let seed = match get(obj, "seed") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .or_else(|| v.as_i64().map(|s| s as u64))
                .ok_or_else(|| FieldError::invalid("seed", "must be an integer"))?,
        ),
    };
    let stop = match get(obj, "stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            if items.len() > MAX_STOP {
                return Err(FieldError::invalid(
                    "stop",
                    format!("at most {MAX_STOP} stop strings, got {}", items.len()),
                ));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        FieldError::invalid(format!("stop[{i}]"), "must be a string")
                    })
                })
                .collect::<Result<_, _>>()?
        }
        Some(_) => {
            return Err(FieldError::invalid(
                "stop",
                "must be a string or an array of strings",
            ));
        }
    };
    let stream = opt_bool(obj, "stream")?.unwrap_or(false);
    let include_usage = match get(obj, "stream_options") {
        None => false,
        Some(Value::Object(o)) => opt_bool(o, "include_usage")
            .map_err(|e| FieldError::invalid("stream_options.include_usage", strip(&e)))?
            .unwrap_or(false),
        Some(_) => return Err(FieldError::invalid("stream_options", "must be an object")),
    };
    let ignore_eos = opt_bool(obj, "ignore_eos")?.unwrap_or(false);
    Ok(Options {
        model,
        max_tokens,
        sampling,
        seed,
        stop,
        stream,
        include_usage,
        ignore_eos,
        logprobs,
    })
}

/// The message of a field error without its `field: ` prefix.
fn strip(e: &FieldError) -> String {
    e.message
        .strip_prefix(&format!("{}: ", e.field))
        .unwrap_or(&e.message)
        .to_owned()
}

fn parse_message(i: usize, m: &Value) -> Result<Message, FieldError> {
    let at = |f: &str| format!("messages[{i}].{f}");
    let Some(obj) = m.as_object() else {
        return Err(FieldError::invalid(
            format!("messages[{i}]"),
            "must be an object",
        ));
    };
    let role = match get(obj, "role") {
        Some(Value::String(r)) => r.clone(),
        Some(_) => return Err(FieldError::invalid(at("role"), "must be a string")),
        None => return Err(FieldError::invalid(at("role"), "is required")),
    };
    if get(obj, "tool_calls").is_some() || get(obj, "function_call").is_some() {
        return Err(FieldError::unsupported(&at("tool_calls"), "tool calling"));
    }
    let content = match get(obj, "content") {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (k, part) in parts.iter().enumerate() {
                let ty = part.get("type").and_then(Value::as_str);
                match (ty, part.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    (Some("text"), None) => {
                        return Err(FieldError::invalid(
                            format!("messages[{i}].content[{k}].text"),
                            "must be a string",
                        ));
                    }
                    _ => {
                        return Err(FieldError::unsupported(
                            &format!("messages[{i}].content[{k}].type"),
                            "a content part other than text",
                        ));
                    }
                }
            }
            text
        }
        Some(_) => {
            return Err(FieldError::invalid(
                at("content"),
                "must be a string or an array of text parts",
            ));
        }
    };
    Ok(Message::new(role, content))
}

fn type_error(field: &str, what: &str, got: &Value) -> FieldError {
    let kind = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    FieldError::invalid(field, format!("must be {what}, got {kind}"))
}

fn opt_bool(obj: &Map<String, Value>, field: &str) -> Result<Option<bool>, FieldError> {
    get(obj, field)
        .map(|v| v.as_bool().ok_or_else(|| type_error(field, "a boolean", v)))
        .transpose()
}

fn opt_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, FieldError> {
    get(obj, field)
        .map(|v| v.as_str().ok_or_else(|| type_error(field, "a string", v)))
        .transpose()
}

fn opt_uint(obj: &Map<String, Value>, field: &str) -> Result<Option<u64>, FieldError> {
    get(obj, field)
        .map(|v| {
            v.as_u64()
                .ok_or_else(|| type_error(field, "a non-negative integer", v))
        })
        .transpose()
}

fn opt_f32(obj: &Map<String, Value>, field: &str) -> Result<Option<f32>, FieldError> {
    get(obj, field)
        .map(|v| {
            v.as_f64()
                .map(|f| f as f32)
                .ok_or_else(|| type_error(field, "a number", v))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat_err(body: &str) -> FieldError {
        parse_chat(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn a_full_chat_request_parses() {
        let r = parse_chat(
            br#"{"model":"m","messages":[{"role":"system","content":"s"},
                {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
                "max_tokens":5,"temperature":0,"top_p":0.5,"seed":-1,"stop":"x","stream":true,
                "stream_options":{"include_usage":true},"logprobs":true,"top_logprobs":3,"n":1,
                "tools":[],"user":"me"}"#,
        )
        .unwrap();
        assert_eq!(r.messages, vec![Message::system("s"), Message::user("ab")]);
        let o = r.options;
        assert_eq!(o.max_tokens, Some(5));
        assert_eq!(o.sampling.temperature, 0.0);
        assert_eq!(o.seed, Some(u64::MAX));
        assert_eq!(o.stop, vec!["x"]);
        assert!(o.stream && o.include_usage);
        assert_eq!(o.logprobs, Some(3));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                r#"{"messages":[{"role":"user","content":"a"}],"temperature":"hot"}"#,
                "temperature",
            ),
            (r#"{"messages":[{"role":"user","content":"a"}],"n":2}"#, "n"),
            (
                r#"{"messages":[{"role":"user","content":"a"}],"tools":[{"type":"function"}]}"#,
                "tools",
            ),
            (
                r#"{"messages":[{"role":"user","content":5}]}"#,
                "messages[0].content",
            ),
            (r#"{"messages":[{"content":"a"}]}"#, "messages[0].role"),
            (
                r#"{"messages":[{"role":"user","content":"a"}],"top_logprobs":21,"logprobs":true}"#,
                "top_logprobs",
            ),
            (
                r#"{"messages":[{"role":"user","content":"a"}],"max_tokens":0}"#,
                "max_tokens",
            ),
            (
                r#"{"messages":[{"role":"user","content":"a"}],"stop":[1]}"#,
                "stop[0]",
            ),
            (
                r#"{"messages":[{"role":"user","content":"a"}],"top_p":0}"#,
                "top_p",
            ),
            (r#"{"messages":[]}"#, "messages"),
        ];
        for (body, field) in cases {
            let e = chat_err(body);
            assert_eq!(e.field, field, "{body}: {e}");
            assert!(e.message.starts_with(field), "{}", e.message);
        }
        assert_eq!(chat_err("{not json").field, "");
        assert_eq!(chat_err("[1]").field, "");
    }

    #[test]
    fn completion_prompts() {
        let p = |s: &str| parse_completion(s.as_bytes()).map(|r| r.prompt);
        assert_eq!(p(r#"{"prompt":"hi"}"#), Ok(Prompt::Text("hi".into())));
        assert_eq!(p(r#"{"prompt":["hi"]}"#), Ok(Prompt::Text("hi".into())));
        assert_eq!(p(r#"{"prompt":[1,2]}"#), Ok(Prompt::Tokens(vec![1, 2])));
        assert_eq!(p(r#"{"prompt":["a","b"]}"#).unwrap_err().field, "prompt");
        assert_eq!(p(r#"{"prompt":[1,-2]}"#).unwrap_err().field, "prompt[1]");
        assert_eq!(
            p(r#"{"prompt":"a","echo":true}"#).unwrap_err().field,
            "echo"
        );
        assert_eq!(
            p(r#"{"prompt":"a","logprobs":21}"#).unwrap_err().field,
            "logprobs"
        );
    }
}
