//! The errors a GGUF file can raise. Every message names the field, key or tensor at
//! fault and what is wrong with it, in one line.

use std::path::PathBuf;

/// Why a GGUF file was refused.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened, read or mapped.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: magic is {found:02x?}, expected \"GGUF\" (47 47 55 46)")]
    BadMagic { found: Vec<u8> },
    /// A version other than 2 or 3.
    #[error("unsupported GGUF version {0} (Woolly reads versions 2 and 3)")]
    UnsupportedVersion(u32),
    /// A field runs past the end of the file.
    #[error("{field}: needs {needed} bytes at offset {offset:#x}, but the file ends at {size:#x}")]
    Truncated {
        field: String,
        offset: u64,
        needed: u64,
        size: u64,
    },
    /// A count or length that cannot be right for a file of this size.
    #[error(
        "{field}: {count} is impossible, the {remaining} bytes left in the file hold at most {max}"
    )]
    ImpossibleCount {
        field: String,
        count: u64,
        remaining: u64,
        max: u64,
    },
    /// Any other malformed field, with a message saying what is wrong.
    #[error("{field}: {problem}")]
    Malformed { field: String, problem: String },
    /// A metadata key that appears twice.
    #[error("metadata key {0:?} appears more than once")]
    DuplicateKey(String),
    /// A tensor name that appears twice.
    #[error("tensor {0:?} appears more than once")]
    DuplicateTensor(String),
    /// A metadata value of another type than the key requires.
    #[error("metadata key {key:?}: expected {expected}, found {found}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },
    /// An integer metadata value outside the range the key allows.
    #[error("metadata key {key:?}: value {value} is out of range, expected {expected}")]
    OutOfRange {
        key: String,
        value: String,
        expected: &'static str,
    },
}

impl GgufError {
    pub(crate) fn malformed(field: impl Into<String>, problem: impl Into<String>) -> Self {
        GgufError::Malformed {
            field: field.into(),
            problem: problem.into(),
        }
    }
}
