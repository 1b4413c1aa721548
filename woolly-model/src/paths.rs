//! Where Woolly finds things: its cache and the conformance pack.

use std::path::PathBuf;

/// The cache directory: `$WOOLLY_CACHE_DIR`, else `$XDG_CACHE_HOME/woolly`, else
/// `~/.cache/woolly`.
pub fn cache_dir() -> PathBuf {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty("WOOLLY_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = non_empty("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("woolly");
    }
    let home = non_empty("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("woolly")
}

/// The workspace root this crate was built in (used to find `../shared`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The conformance pack: `$WOOLLY_CONFORMANCE_DIR`, else `../shared/conformance` from
/// the workspace root.
pub fn conformance_dir() -> PathBuf {
    match std::env::var_os("WOOLLY_CONFORMANCE_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("../shared/conformance"),
    }
}

/// A file of the conformance pack, or a panic that says where it looked: for tests,
/// where a missing pack must fail, never pass.
pub fn conformance_file(relative: &str) -> PathBuf {
    let path = conformance_dir().join(relative);
    assert!(
        path.exists(),
        "conformance file {} not found (set WOOLLY_CONFORMANCE_DIR; looked in {})",
        relative,
        path.display()
    );
    path
}
