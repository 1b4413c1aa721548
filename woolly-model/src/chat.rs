//! Chat templates: Hugging Face's Jinja chat templates rendered with minijinja, sandboxed,
//! with the template's text kept apart from the messages' text.
//!
//! # Rendering
//! As `transformers`' `apply_chat_template`: the variables `messages` (maps with `role`
//! and `content`), `add_generation_prompt`, `bos_token` and `eos_token`; the function
//! `raise_exception(message)`; Python string and dict methods (`.strip()`,
//! `.startswith()`, `.items()`...) through `minijinja-contrib`'s pycompat; `trim_blocks`
//! and `lstrip_blocks` on, loop controls (`break`, `continue`) and `tojson` available.
//!
//! # Sandbox
//! A template comes from a downloaded file. The environment has no loader (no `include`,
//! `import` or `extends`), no filesystem or environment access, a recursion limit
//! ([`RECURSION_LIMIT`]) and a fuel budget per render ([`DEFAULT_FUEL`]: every
//! instruction, and every byte a template produces, costs fuel), so a template that loops
//! forever, recurses or writes gigabytes stops with [`ChatError::OutOfFuel`] or
//! [`ChatError::Recursion`].
//!
//! # Template text and user text
//! DECISIONS.md: the template's own markers become special tokens, message contents are
//! always plain text. [`ChatTemplate::render`] renders twice: once with the real contents
//! (the text Hugging Face would produce), once with each non-empty content replaced by a
//! sentinel (private-use characters around the message index). Everything of the sentinel
//! rendering that is not a sentinel is template text. The real rendering is then matched
//! against it piece by piece, a sentinel matching its message's content as it is, or as
//! `.strip()`/`| trim`, `.lstrip()` or `.rstrip()` left it (the transforms templates
//! apply to contents); a successful match gives segments whose text is exactly Hugging
//! Face's ([`RenderedChat::is_exact`]).
//!
//! When the template does anything else with a content (upper-casing it, branching on
//! it, splitting it), the documented fallback rule is: the sentinel rendering with each
//! sentinel replaced by the message's content unchanged, `is_exact` false. The text may
//! then differ from Hugging Face's, but user text still never lands in a template
//! segment. A template that cuts a sentinel apart (slicing a content) cannot be rendered
//! safely and is [`ChatError::ContentTransformed`].
//!
//! Roles are template text (templates compare them): they must be plain names
//! (ASCII letters, digits, `_`, `-`), checked by [`ChatError::InvalidRole`].

use std::ops::Range;

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, Error, ErrorKind, Value};

use crate::gguf::GgufFile;
use crate::tokenizer::{Segment, Tokenizer, TokenizerError};

/// The GGUF metadata key holding a model's chat template.
pub const CHAT_TEMPLATE_KEY: &str = "tokenizer.chat_template";

/// Fuel for one render: about a million instructions, or 64 MiB of produced text.
pub const DEFAULT_FUEL: u64 = 1_000_000;

/// How deep template recursion (macros calling macros, nested loops) may go.
pub const RECURSION_LIMIT: usize = 100;

/// Longest accepted role name, in bytes.
pub const MAX_ROLE_LEN: usize = 64;

/// The ChatML template (`<|im_start|>role\ncontent<|im_end|>\n`), llama.cpp's fallback
/// when a GGUF has no chat template.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}\
{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}\
{% endfor %}\
{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Start and end of a sentinel: private-use characters that no template writes around
/// the message index in decimal, so that case changes (`| upper`) leave it whole.
const SENTINEL_START: char = '\u{F0000}';
const SENTINEL_END: char = '\u{F0001}';

/// One chat message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user`, `assistant`, `tool`...: a plain name.
    pub role: String,
    /// What was said: always tokenized as plain text.
    pub content: String,
}

impl Message {
    /// A message with any role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Message {
        Message::new("system", content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Message {
        Message::new("user", content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Message {
        Message::new("assistant", content)
    }
}

/// Why a template could not be built or rendered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// The template does not parse.
    #[error("chat template: syntax error: {0}")]
    Syntax(String),
    /// The template called `raise_exception`.
    #[error("chat template raised an exception: {0}")]
    Raised(String),
    /// The template ran out of fuel: it loops too long or writes too much.
    #[error("chat template ran out of fuel ({fuel} units: too many steps or too much output)")]
    OutOfFuel {
        /// The budget it had.
        fuel: u64,
    },
    /// The template recursed deeper than [`RECURSION_LIMIT`].
    #[error("chat template recursed deeper than the limit of {limit}")]
    Recursion {
        /// The limit.
        limit: usize,
    },
    /// Any other error while rendering.
    #[error("chat template: {0}")]
    Render(String),
    /// A role is not a plain name.
    #[error(
        "messages[{index}].role {role:?} is not a role name \
         (1 to 64 ASCII letters, digits, '_' or '-')"
    )]
    InvalidRole {
        /// Position of the message.
        index: usize,
        /// The role given.
        role: String,
    },
    /// The template cut a message's content apart, so it cannot be kept out of the
    /// template text.
    #[error(
        "chat template transforms messages[{index}].content in a way that cannot be kept \
         apart from the template text (only strip/trim are understood)"
    )]
    ContentTransformed {
        /// Position of the message.
        index: usize,
    },
    /// The GGUF metadata could not be read.
    #[error("chat template: {key}: {message}")]
    Metadata {
        /// The metadata key.
        key: &'static str,
        /// What went wrong.
        message: String,
    },
}

/// A compiled, sandboxed chat template.
#[derive(Clone, Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    fuel: u64,
    bos_token: String,
    eos_token: String,
}

/// One part of a rendered chat: a byte range of [`RenderedChat::text`], from the
/// template or from a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// Byte range in the rendered text.
    pub range: Range<usize>,
    /// Template text (special-token text becomes special tokens) or, when false, a
    /// message's content (always plain text).
    pub is_template: bool,
}

/// A rendered conversation, split into template text and message text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedChat {
    text: String,
    parts: Vec<Part>,
    exact: bool,
}

impl RenderedChat {
    /// The whole prompt.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The parts, in order, covering [`RenderedChat::text`]; no empty parts.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Whether the text is exactly what Hugging Face's renderer gives (false under the
    /// fallback rule of the module docs).
    pub fn is_exact(&self) -> bool {
        self.exact
    }

    /// The parts as tokenizer segments: template text special, message text plain.
    pub fn segments(&self) -> Vec<Segment<'_>> {
        self.parts
            .iter()
            .map(|p| {
                let text = &self.text[p.range.clone()];
                if p.is_template {
                    Segment::special(text)
                } else {
                    Segment::plain(text)
                }
            })
            .collect()
    }

    /// Tokenizes the prompt segment by segment. Templates usually write the BOS token
    /// themselves (`{{ bos_token }}`), so `add_special` is usually false for them.
    pub fn encode(
        &self,
        tokenizer: &Tokenizer,
        add_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        tokenizer.encode_segments(&self.segments(), add_special)
    }
}

impl ChatTemplate {
    /// Compiles a Hugging Face chat template. `bos_token` and `eos_token` start empty
    /// (see [`ChatTemplate::with_special_tokens`]).
    pub fn new(source: &str) -> Result<ChatTemplate, ChatError> {
        let mut env = Environment::new();
        let mut syntax = SyntaxConfig::builder();
        syntax.trim_blocks(true).lstrip_blocks(true);
        env.set_syntax(
            syntax
                .build()
                .map_err(|e| ChatError::Syntax(e.to_string()))?,
        );
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.set_recursion_limit(RECURSION_LIMIT);
        env.set_fuel(Some(DEFAULT_FUEL));
        env.add_template_owned("chat_template", source.to_owned())
            .map_err(|e| ChatError::Syntax(describe(&e)))?;
        Ok(ChatTemplate {
            env,
            fuel: DEFAULT_FUEL,
            bos_token: String::new(),
            eos_token: String::new(),
        })
    }

    /// The built-in ChatML template ([`CHATML_TEMPLATE`]).
    pub fn chatml() -> ChatTemplate {
        ChatTemplate::new(CHATML_TEMPLATE).expect("the ChatML template compiles")
    }

    /// The model's template (`tokenizer.chat_template`), or ChatML when it has none,
    /// with `bos_token` and `eos_token` set from the tokenizer.
    pub fn from_gguf(file: &GgufFile, tokenizer: &Tokenizer) -> Result<ChatTemplate, ChatError> {
        let source =
            file.metadata()
                .get_str(CHAT_TEMPLATE_KEY)
                .map_err(|e| ChatError::Metadata {
                    key: CHAT_TEMPLATE_KEY,
                    message: e.to_string(),
                })?;
        let template = match source {
            Some(source) => ChatTemplate::new(source)?,
            None => ChatTemplate::chatml(),
        };
        let text = |id: Option<u32>| {
            id.and_then(|id| tokenizer.token_text(id))
                .unwrap_or_default()
                .to_owned()
        };
        Ok(template.with_special_tokens(&text(tokenizer.bos()), &text(tokenizer.eos())))
    }

    /// Sets the texts of the `bos_token` and `eos_token` variables.
    pub fn with_special_tokens(mut self, bos_token: &str, eos_token: &str) -> ChatTemplate {
        self.bos_token = bos_token.to_owned();
        self.eos_token = eos_token.to_owned();
        self
    }

    /// Sets the fuel budget of each render (default [`DEFAULT_FUEL`]).
    pub fn with_fuel(mut self, fuel: u64) -> ChatTemplate {
        self.fuel = fuel;
        self.env.set_fuel(Some(fuel));
        self
    }

    /// The rendered prompt as one string, for display.
    pub fn render_string(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        check_roles(messages)?;
        self.render_with(messages, add_generation_prompt, |m| {
            Value::from(m.content.as_str())
        })
    }

    /// The rendered prompt, split into template text and message text (see the module
    /// docs).
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<RenderedChat, ChatError> {
        let truth = self.render_string(messages, add_generation_prompt)?;
        let mut index = 0;
        let sentinel_text = self.render_with(messages, add_generation_prompt, |m| {
            let v = if m.content.is_empty() {
                Value::from("")
            } else {
                Value::from(sentinel(index))
            };
            index += 1;
            v
        })?;
        let pieces = split_sentinels(&sentinel_text, messages.len())?;
        if let Some(parts) = align(&truth, &pieces, messages) {
            return Ok(RenderedChat {
                text: truth,
                parts,
                exact: true,
            });
        }
        // Fallback rule: the template's text around the unchanged contents.
        let mut text = String::new();
        let mut parts = Vec::new();
        for piece in &pieces {
            let (s, is_template) = match *piece {
                Piece::Template(t) => (t, true),
                Piece::Content(i) => (messages[i].content.as_str(), false),
            };
            push_part(&mut parts, text.len()..text.len() + s.len(), is_template);
            text.push_str(s);
        }
        Ok(RenderedChat {
            text,
            parts,
            exact: false,
        })
    }

    fn render_with(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        mut content: impl FnMut(&Message) -> Value,
    ) -> Result<String, ChatError> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| {
                let map: std::collections::BTreeMap<String, Value> = [
                    ("role".to_owned(), Value::from(m.role.as_str())),
                    ("content".to_owned(), content(m)),
                ]
                .into_iter()
                .collect();
                Value::from(map)
            })
            .collect();
        let ctx: std::collections::BTreeMap<String, Value> = [
            ("messages".to_owned(), Value::from(messages)),
            (
                "add_generation_prompt".to_owned(),
                Value::from(add_generation_prompt),
            ),
            ("bos_token".to_owned(), Value::from(self.bos_token.as_str())),
            ("eos_token".to_owned(), Value::from(self.eos_token.as_str())),
        ]
        .into_iter()
        .collect();
        let template = self
            .env
            .get_template("chat_template")
            .map_err(|e| ChatError::Render(describe(&e)))?;
        template.render(ctx).map_err(|e| self.error(&e))
    }

    fn error(&self, e: &Error) -> ChatError {
        // The first error in the chain that says what went wrong.
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = cur {
            if let Some(me) = err.downcast_ref::<Error>() {
                match me.kind() {
                    ErrorKind::OutOfFuel => return ChatError::OutOfFuel { fuel: self.fuel },
                    _ if me.detail() == Some("recursion limit exceeded") => {
                        return ChatError::Recursion {
                            limit: RECURSION_LIMIT,
                        };
                    }
                    _ => {
                        if let Some(msg) = me.detail().and_then(|d| d.strip_prefix(RAISED)) {
                            return ChatError::Raised(msg.to_owned());
                        }
                    }
                }
            }
            cur = err.source();
        }
        ChatError::Render(describe(e))
    }
}

/// Marks the detail of an error made by `raise_exception`.
const RAISED: &str = "raise_exception: ";

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("{RAISED}{message}"),
    ))
}

/// An error with its chain, on one line.
fn describe(e: &Error) -> String {
    let mut s = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(err) = cur {
        s.push_str(": ");
        s.push_str(&err.to_string());
        cur = err.source();
    }
    s
}

fn check_roles(messages: &[Message]) -> Result<(), ChatError> {
    for (index, m) in messages.iter().enumerate() {
        let ok = !m.role.is_empty()
            && m.role.len() <= MAX_ROLE_LEN
            && m.role
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(ChatError::InvalidRole {
                index,
                role: m.role.clone(),
            });
        }
    }
    Ok(())
}

fn sentinel(index: usize) -> String {
    format!("{SENTINEL_START}{index}{SENTINEL_END}")
}

/// A piece of the sentinel rendering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Piece<'a> {
    /// Template text.
    Template(&'a str),
    /// Where message `i`'s content went.
    Content(usize),
}

/// Splits the sentinel rendering into template text and content slots. A broken
/// sentinel (a sentinel character left over) means the template cut a content apart.
fn split_sentinels(text: &str, n_messages: usize) -> Result<Vec<Piece<'_>>, ChatError> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find([SENTINEL_START, SENTINEL_END]) {
        let index = parse_sentinel(&rest[start..]);
        let Some((index, len)) = index.filter(|&(i, _)| i < n_messages) else {
            return Err(ChatError::ContentTransformed {
                index: broken_index(&rest[start..]).min(n_messages.saturating_sub(1)),
            });
        };
        if start > 0 {
            pieces.push(Piece::Template(&rest[..start]));
        }
        pieces.push(Piece::Content(index));
        rest = &rest[start + len..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Template(rest));
    }
    Ok(pieces)
}

/// The message index and byte length of a whole sentinel at the start of `s`.
fn parse_sentinel(s: &str) -> Option<(usize, usize)> {
    let body = s.strip_prefix(SENTINEL_START)?;
    let digits = body.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || !body[digits..].starts_with(SENTINEL_END) {
        return None;
    }
    let index = body[..digits].parse().ok()?;
    let len = SENTINEL_START.len_utf8() + digits + SENTINEL_END.len_utf8();
    Some((index, len))
}

/// Best guess of which message a broken sentinel came from, for the error message.
fn broken_index(s: &str) -> usize {
    let digits: String = s
        .trim_start_matches(SENTINEL_START)
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap_or(0)
}

/// Matches the real rendering against the sentinel pieces; `None` when the template did
/// more to a content than strip it, or rendered differently around it.
fn align(truth: &str, pieces: &[Piece<'_>], messages: &[Message]) -> Option<Vec<Part>> {
    let mut parts = Vec::new();
    let mut pos = 0;
    for (k, piece) in pieces.iter().enumerate() {
        match *piece {
            Piece::Template(t) => {
                if !truth[pos..].starts_with(t) {
                    return None;
                }
                push_part(&mut parts, pos..pos + t.len(), true);
                pos += t.len();
            }
            Piece::Content(i) => {
                let next = match pieces.get(k + 1) {
                    Some(Piece::Template(t)) => t,
                    _ => "",
                };
                let c = messages[i].content.as_str();
                let found = [c, c.trim(), c.trim_start(), c.trim_end()]
                    .into_iter()
                    .find(|cand| {
                        truth[pos..].starts_with(cand)
                            && truth[pos + cand.len()..].starts_with(next)
                    })?;
                push_part(&mut parts, pos..pos + found.len(), false);
                pos += found.len();
            }
        }
    }
    (pos == truth.len()).then_some(parts)
}

/// Appends a part, skipping empty ones and merging with a neighbour of the same kind.
fn push_part(parts: &mut Vec<Part>, range: Range<usize>, is_template: bool) {
    if range.is_empty() {
        return;
    }
    if let Some(last) = parts.last_mut()
        && last.is_template == is_template
        && last.range.end == range.start
    {
        last.range.end = range.end;
        return;
    }
    parts.push(Part { range, is_template });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_renders() {
        let t = ChatTemplate::chatml();
        let msgs = [Message::system("Be brief."), Message::user("Hi")];
        let r = t.render(&msgs, true).unwrap();
        assert_eq!(
            r.text(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(r.is_exact());
        let plain: Vec<&str> = r
            .segments()
            .iter()
            .filter(|s| !s.parse_special)
            .map(|s| s.text)
            .collect();
        assert_eq!(plain, ["Be brief.", "Hi"]);
    }

    #[test]
    fn sentinels_round_trip() {
        let s = format!("a{}b{}", sentinel(0), sentinel(12));
        assert_eq!(
            split_sentinels(&s, 13).unwrap(),
            [
                Piece::Template("a"),
                Piece::Content(0),
                Piece::Template("b"),
                Piece::Content(12)
            ]
        );
        let broken = &s[..s.len() - 1 - SENTINEL_END.len_utf8()];
        assert!(split_sentinels(broken, 13).is_err());
        assert!(split_sentinels(&sentinel(13), 13).is_err());
    }

    #[test]
    fn roles_must_be_names() {
        let t = ChatTemplate::chatml();
        for bad in ["", "user<|im_start|>", "a b", &"x".repeat(65)] {
            let err = t.render(&[Message::new(bad, "hi")], false).unwrap_err();
            assert!(
                matches!(err, ChatError::InvalidRole { index: 0, .. }),
                "{err}"
            );
        }
    }
}
