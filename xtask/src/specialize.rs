//! `cargo xtask gen --model M.gguf`: extends `woolly-kernels/specialize.toml` with a
//! model's dimensions (hidden size, head size, FFN size), so the next build specializes
//! the kernels for that model. Comments and the other lists stay as they are; a value
//! already listed is left alone, so running it twice changes nothing.

use std::path::Path;

use anyhow::{Context, bail};
use woolly_model::config::LlamaConfig;
use woolly_model::gguf::GgufFile;

/// The `specialize.toml` keys a model fills, with its value for each.
fn model_dims(cfg: &LlamaConfig) -> [(&'static str, usize); 3] {
    [
        ("hidden", cfg.n_embd),
        ("head_dim", cfg.head_dim),
        ("ffn", cfg.n_ff),
    ]
}

/// `text` with each `(key, value)` added to the list `key = [...]` (kept sorted), and
/// the additions made, as `key = value`. A key with no list gets a new line at the end.
///
/// # Errors
/// A line for `key` that is not `key = [n, ...]` with unsigned integers.
pub fn extend_lists(text: &str, dims: &[(&str, usize)]) -> anyhow::Result<(String, Vec<String>)> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut added = Vec::new();
    for &(key, value) in dims {
        let found = lines.iter().position(|l| {
            l.split_once('=')
                .is_some_and(|(k, _)| k.trim() == key && !l.trim_start().starts_with('#'))
        });
        let Some(i) = found else {
            lines.push(format!("{key} = [{value}]"));
            added.push(format!("{key} = {value}"));
            continue;
        };
        let (_, list) = lines[i].split_once('=').expect("found by '='");
        let inner = list
            .trim()
            .strip_prefix('[')
            .and_then(|l| l.strip_suffix(']'))
            .with_context(|| format!("specialize.toml: `{key}` is not a list: {}", lines[i]))?;
        let mut values = Vec::new();
        for v in inner.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            match v.parse::<usize>() {
                Ok(n) => values.push(n),
                Err(_) => bail!("specialize.toml: `{key}` holds {v:?}, not a size"),
            }
        }
        if values.contains(&value) {
            continue;
        }
        values.push(value);
        values.sort_unstable();
        let list: Vec<String> = values.iter().map(usize::to_string).collect();
        lines[i] = format!("{key} = [{}]", list.join(", "));
        added.push(format!("{key} = {value}"));
    }
    let mut out = lines.join("\n");
    out.push('\n');
    Ok((out, added))
}

/// Reads `model`'s hyper-parameters and extends `toml` with them.
pub fn run(model: &Path, toml: &Path) -> anyhow::Result<()> {
    let file = GgufFile::open(model).with_context(|| format!("{}", model.display()))?;
    let cfg = LlamaConfig::from_metadata(file.metadata())
        .with_context(|| format!("{}", model.display()))?;
    let text = std::fs::read_to_string(toml).with_context(|| format!("{}", toml.display()))?;
    let (out, added) = extend_lists(&text, &model_dims(&cfg))?;
    if added.is_empty() {
        println!(
            "{} already lists every dimension of {}",
            toml.display(),
            model.display()
        );
        return Ok(());
    }
    std::fs::write(toml, out).with_context(|| format!("{}", toml.display()))?;
    println!(
        "{}: added {} (rebuild to compile the specialized kernels)",
        toml.display(),
        added.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = "# comment = [1]\nhidden = [576, 4096]\n\n# head\nhead_dim = [64]\n";

    #[test]
    fn adds_new_values_in_order_and_keeps_comments() {
        let (out, added) = extend_lists(TOML, &[("hidden", 2048), ("head_dim", 64)]).unwrap();
        assert_eq!(
            out,
            "# comment = [1]\nhidden = [576, 2048, 4096]\n\n# head\nhead_dim = [64]\n"
        );
        assert_eq!(added, ["hidden = 2048"]);
        let (again, none) = extend_lists(&out, &[("hidden", 2048)]).unwrap();
        assert_eq!(again, out);
        assert!(none.is_empty());
    }

    #[test]
    fn a_missing_key_gets_a_line_and_a_bad_list_an_error() {
        let (out, added) = extend_lists(TOML, &[("ffn", 5632)]).unwrap();
        assert!(out.ends_with("head_dim = [64]\nffn = [5632]\n"), "{out}");
        assert_eq!(added, ["ffn = 5632"]);
        let err = extend_lists("hidden = 576\n", &[("hidden", 1)]).unwrap_err();
        assert!(err.to_string().contains("not a list"), "{err}");
        let err = extend_lists("hidden = [a]\n", &[("hidden", 1)]).unwrap_err();
        assert!(err.to_string().contains("not a size"), "{err}");
    }

    /// The checked-in file parses, and already lists SmolLM2's dimensions.
    #[test]
    fn the_checked_in_file_lists_smollm2() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../woolly-kernels/specialize.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let (_, added) =
            extend_lists(&text, &[("hidden", 576), ("head_dim", 64), ("ffn", 1536)]).unwrap();
        assert!(added.is_empty(), "{added:?}");
    }
}
