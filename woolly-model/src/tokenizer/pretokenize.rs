//! Pre-tokenizers for byte-level BPE: the regexes that cut text into words before
//! merging, chosen by `tokenizer.ggml.pre`.
//!
//! The name-to-regex table follows `llm_tokenizer_bpe` in llama.cpp's
//! `src/llama-vocab.cpp`, and the splitting follows `unicode_regex_split` in
//! `src/unicode.cpp`: the regexes apply in turn, each one cutting every piece left by the
//! previous ones, and both the matches and the text between matches become pieces.
//! (`smollm`, for instance, first cuts out every digit with `\p{N}`, then applies GPT-2's
//! regex to what remains, so numbers are tokenized digit by digit.)
//!
//! # The `\s+(?!\S)` lookahead
//!
//! The GPT-2, Llama 3 and Qwen 2 regexes end in `\s+(?!\S)|\s+` ("a run of whitespace,
//! less its last character when a non-space follows"), a lookahead the linear-time
//! `regex` crate lacks. Woolly compiles the pattern with a plain `\s+` in its place and
//! then applies the lookahead by hand: when a match consists of whitespace that came
//! from that final alternative, has at least two characters and is followed by more text
//! (necessarily a non-space, as `\s+` is greedy), its last character is given back and
//! matching resumes there. This reproduces the backtracking semantics exactly (a run of
//! r spaces before a word yields r-1 spaces, then the last space joins the word), and
//! stays linear on any input, where a backtracking engine could take quadratic time on
//! long whitespace runs. A whitespace-only match came from that alternative when the
//! pattern has no `\s*[\r\n]+` alternative (GPT-2) or, when it has one (Llama 3, Qwen 2),
//! when the match does not end in `\r` or `\n`: the earlier alternative always takes a
//! run containing a line break up to its last one.
//!
//! Character classes are the `regex` crate's Unicode ones (`\p{L}`, `\p{N}`, `\s` as
//! White_Space); llama.cpp uses its own tables, so the two may disagree on code points
//! whose category changed between Unicode versions.

use regex::Regex;

use super::TokenizerError;

/// GPT-2's pattern, with `\s+(?!\S)` replaced by `\s+` (see the module docs).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+";

/// Llama 3's pattern, with `\s+(?!\S)|\s+` replaced by `\s+`.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+";

/// Qwen 2's pattern: Llama 3's with single digits.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+";

/// How a stage's whitespace-only matches are trimmed (the `\s+(?!\S)` lookahead).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lookahead {
    /// The pattern has no lookahead.
    None,
    /// Every whitespace-only match comes from the final `\s+` (GPT-2).
    AllWhitespace,
    /// Whitespace-only matches not ending in `\r`/`\n` come from the final `\s+`
    /// (patterns with a `\s*[\r\n]+` alternative before it).
    NoTrailingNewline,
}

/// The pre-tokenizer families Woolly implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Default,
    Gpt2,
    Llama3,
    Smollm,
    Qwen2,
    Falcon,
}

/// What `tokenizer.ggml.pre` selects: the regex family and two flags llama.cpp ties to
/// the name.
#[derive(Clone, Copy, Debug)]
struct Entry {
    family: Family,
    /// Look a whole word up in the vocabulary before merging.
    ignore_merges: bool,
    /// Add BOS by default (`tokenizer.ggml.add_bos_token` still overrides).
    add_bos: bool,
}

fn entry(name: &str) -> Option<Entry> {
    let e = |family, ignore_merges, add_bos| Entry {
        family,
        ignore_merges,
        add_bos,
    };
    Some(match name {
        "default" => e(Family::Default, false, false),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" => e(Family::Llama3, true, true),
        "dbrx" | "smaug-bpe" => e(Family::Llama3, false, false),
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
        | "a.x-4.0" | "mellum" | "modern-bert" | "mpt" | "olmo" | "jais" | "trillion"
        | "granite-docling" | "exaone4" => e(Family::Gpt2, false, false),
        "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone" | "minerva-7b"
        | "mellum2" => e(Family::Smollm, false, false),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "stablelm2" | "hunyuan"
        | "solar-open" | "megrez" => e(Family::Qwen2, false, false),
        "falcon" => e(Family::Falcon, false, false),
        _ => return None,
    })
}

/// Whether llama.cpp adds BOS by default for this pre-tokenizer (the Llama 3 family).
pub(crate) fn adds_bos_by_default(name: &str) -> bool {
    entry(name).is_some_and(|e| e.add_bos)
}

/// One regex and how its whitespace matches are trimmed.
#[derive(Clone, Debug)]
struct Stage {
    regex: Regex,
    lookahead: Lookahead,
}

/// A compiled pre-tokenizer.
#[derive(Clone, Debug)]
pub(crate) struct PreTokenizer {
    name: String,
    stages: Vec<Stage>,
    /// Look a whole word up in the vocabulary before merging.
    pub ignore_merges: bool,
}

impl PreTokenizer {
    /// The pre-tokenizer `tokenizer.ggml.pre` names (`"default"` when absent).
    pub fn from_name(name: Option<&str>) -> Result<PreTokenizer, TokenizerError> {
        let name = name.unwrap_or("default");
        let e =
            entry(name).ok_or_else(|| TokenizerError::UnsupportedPreTokenizer(name.to_owned()))?;
        use Lookahead::*;
        let stages: &[(&str, Lookahead)] = match e.family {
            Family::Default => &[
                (r"[\p{P}\$\+<=>\^~\|]+", None),
                (GPT2, AllWhitespace),
                (r"\p{N}+", None),
                (r"[0-9][0-9][0-9]", None),
            ],
            Family::Gpt2 => &[(GPT2, AllWhitespace)],
            Family::Llama3 => &[(LLAMA3, NoTrailingNewline)],
            Family::Smollm => &[(r"\p{N}", None), (GPT2, AllWhitespace)],
            Family::Qwen2 => &[(QWEN2, NoTrailingNewline)],
            Family::Falcon => &[
                (r"[\p{P}\$\+<=>\^~\|`]+", None),
                (GPT2, AllWhitespace),
                (r"[0-9][0-9][0-9]", None),
            ],
        };
        let stages = stages
            .iter()
            .map(|&(pattern, lookahead)| {
                Regex::new(pattern)
                    .map(|regex| Stage { regex, lookahead })
                    .map_err(|err| TokenizerError::Pattern {
                        name: name.to_owned(),
                        message: err.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PreTokenizer {
            name: name.to_owned(),
            stages,
            ignore_merges: e.ignore_merges,
        })
    }

    /// The name it was built from.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Cuts `text` into words (non-empty, in order, covering all of `text`).
    pub fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut pieces: Vec<&'t str> = vec![text];
        let mut next = Vec::new();
        for stage in &self.stages {
            next.clear();
            for &piece in &pieces {
                stage.split_into(piece, &mut next);
            }
            std::mem::swap(&mut pieces, &mut next);
        }
        pieces.retain(|p| !p.is_empty());
        pieces
    }
}

impl Stage {
    /// Appends the matches of this stage in `text`, and the text between them.
    fn split_into<'t>(&self, text: &'t str, out: &mut Vec<&'t str>) {
        let mut pos = 0;
        while pos < text.len() {
            let Some(m) = self.regex.find_at(text, pos) else {
                out.push(&text[pos..]);
                return;
            };
            if m.start() > pos {
                out.push(&text[pos..m.start()]);
            }
            let mut end = m.end();
            if m.start() == end {
                // An empty match (no pattern here has one): step over a character.
                let Some(c) = text[end..].chars().next() else {
                    return;
                };
                end += c.len_utf8();
                out.push(&text[m.start()..end]);
                pos = end;
                continue;
            }
            if end < text.len() && self.gives_back_last(m.as_str()) {
                let last = m.as_str().chars().next_back().map_or(0, char::len_utf8);
                end -= last;
            }
            out.push(&text[m.start()..end]);
            pos = end;
        }
    }

    /// Whether a match followed by more text loses its last character to `(?!\S)`.
    fn gives_back_last(&self, m: &str) -> bool {
        let mut chars = m.chars();
        let (Some(_), Some(last)) = (chars.next(), chars.next_back()) else {
            return false; // fewer than two characters
        };
        if !m.chars().all(char::is_whitespace) {
            return false;
        }
        match self.lookahead {
            Lookahead::None => false,
            Lookahead::AllWhitespace => true,
            Lookahead::NoTrailingNewline => last != '\r' && last != '\n',
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(name: &str, text: &str) -> Vec<String> {
        PreTokenizer::from_name(Some(name))
            .unwrap()
            .split(text)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn llama3_whitespace_lookahead() {
        assert_eq!(split("llama-bpe", "   Hello"), ["  ", " Hello"]);
        assert_eq!(split("llama-bpe", "a   "), ["a", "   "]);
        assert_eq!(split("llama-bpe", "a \n\n b"), ["a", " \n\n", " b"]);
        assert_eq!(split("llama-bpe", "\n =",), ["\n", " ="]);
        assert_eq!(split("llama-bpe", "3333333"), ["333", "333", "3"]);
        assert_eq!(split("llama-bpe", "I'VE don't"), ["I", "'VE", " don", "'t"]);
        assert_eq!(split("llama-bpe", "\tHi  \t x"), ["\tHi", "  \t", " x"]);
    }

    #[test]
    fn gpt2_and_smollm() {
        assert_eq!(
            split("gpt-2", "Hello  world 123"),
            ["Hello", " ", " world", " 123"]
        );
        assert_eq!(split("gpt-2", "a \n\n b"), ["a", " \n\n", " b"]);
        assert_eq!(split("gpt-2", "I'VE"), ["I", "'", "VE"]);
        assert_eq!(
            split("smollm", "is 12 times"),
            ["is", " ", "1", "2", " times"]
        );
    }

    #[test]
    fn default_cuts_punctuation_and_digits() {
        assert_eq!(
            split("default", "a, b!! 12345"),
            ["a", ",", " b", "!!", " ", "123", "45"]
        );
    }

    #[test]
    fn unknown_name_is_an_error() {
        let err = PreTokenizer::from_name(Some("no-such-pre")).unwrap_err();
        assert!(err.to_string().contains("no-such-pre"), "{err}");
    }
}
