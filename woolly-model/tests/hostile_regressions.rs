//! Inputs found by the fuzz targets under `fuzz/`, replayed on stable with the ordinary
//! tests, and the committed seed corpora run through the same entry points.
//!
//! When `cargo xtask fuzz` reports a crash, add its input here (inline bytes, or a file
//! under `fuzz/regressions/<target>/`, which [`regression_files_replay`] picks up) with
//! the check the target made; mark it `#[ignore = "fails until <fix> lands"]` until the
//! fix is in. No fuzz run so far (five targets, 60 s and more each) has found a crash.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use woolly_model::Model;
use woolly_model::chat::{ChatTemplate, Message};
use woolly_model::gguf::GgufFile;

/// `fuzz/<sub>/<target>/`, from this crate's folder.
fn fuzz_dir(sub: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(sub)
        .join(target)
}

/// The files of a folder, sorted; none when it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map_while(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// What the `gguf_load` target does with one input, on stable.
fn gguf_load(data: &[u8]) -> Result<(), String> {
    let file = GgufFile::from_bytes(data.to_vec()).map_err(|e| e.to_string())?;
    for t in file.tensors() {
        assert_eq!(file.tensor_data(t).len() as u64, t.n_bytes, "{}", t.name);
    }
    let model = Model::from_gguf(Arc::new(file)).map_err(|e| e.to_string())?;
    let ids = model
        .tokenizer()
        .encode("Hello world", true, true)
        .map_err(|e| e.to_string())?;
    model.tokenizer().decode(&ids).map_err(|e| e.to_string())?;
    Ok(())
}

/// What the `chat_template` target does with one input: NUL-separated template, then
/// role and content pairs (a one-byte role below 32 picks a known role).
fn chat_template(data: &[u8]) {
    const ROLES: &[&str] = &["system", "user", "assistant", "tool", "ipython", "x-y_1"];
    let parts: Vec<&[u8]> = data.splitn(130, |&b| b == 0).collect();
    let Some((source, rest)) = parts.split_first() else {
        return;
    };
    let Ok(template) = ChatTemplate::new(&String::from_utf8_lossy(source)) else {
        return;
    };
    let messages: Vec<Message> = rest
        .chunks(2)
        .map(|pair| {
            let role = match pair[0] {
                [b] if *b < 32 => ROLES[*b as usize % ROLES.len()].to_owned(),
                r => String::from_utf8_lossy(r).into_owned(),
            };
            let content = pair.get(1).map(|c| String::from_utf8_lossy(c).into_owned());
            Message::new(role, content.unwrap_or_default())
        })
        .collect();
    for add_generation_prompt in [true, false] {
        if let Ok(chat) = template.render(&messages, add_generation_prompt) {
            let covered: usize = chat.parts().iter().map(|p| p.range.len()).sum();
            assert_eq!(covered, chat.text().len());
        }
    }
}

/// The tiny models of the `gguf_load` seeds load; every other seed is refused or loads,
/// without a panic.
#[test]
fn gguf_load_seeds_replay() {
    let seeds = files(&fuzz_dir("seeds", "gguf_load"));
    assert!(
        seeds.len() >= 4,
        "seed corpus missing: regenerate it with the gen_seeds example (fuzz/README.md)"
    );
    for path in seeds {
        let data = std::fs::read(&path).unwrap();
        let result = gguf_load(&data);
        let name = path.file_name().unwrap().to_string_lossy();
        if name.starts_with("tiny-") {
            result.unwrap_or_else(|e| panic!("{name} does not load: {e}"));
        }
    }
}

/// The chat-template seeds (real templates, a loop and a deep recursion) render or stop
/// with an error, without a panic.
#[test]
fn chat_template_seeds_replay() {
    let seeds = files(&fuzz_dir("seeds", "chat_template"));
    assert!(!seeds.is_empty(), "seed corpus missing");
    for path in seeds {
        chat_template(&std::fs::read(&path).unwrap());
    }
}

/// Inputs kept from fuzz findings (`fuzz/regressions/<target>/`), for the targets whose
/// checks run here.
#[test]
fn regression_files_replay() {
    for path in files(&fuzz_dir("regressions", "gguf_load")) {
        let _ = gguf_load(&std::fs::read(&path).unwrap());
    }
    for path in files(&fuzz_dir("regressions", "chat_template")) {
        chat_template(&std::fs::read(&path).unwrap());
    }
}
