//! A GGUF reader that trusts nothing in the file, and a small writer.
//!
//! GGUF (versions 2 and 3, little-endian) is laid out as: magic `GGUF`, version (u32),
//! tensor count (u64), metadata count (u64), the metadata pairs, the tensor infos
//! (name, dimensions, type, offset), padding to `general.alignment` (default 32), then
//! the data section that tensor offsets are relative to.
//!
//! [`GgufFile::open`] maps the file with memmap2 and checks every count, length, offset,
//! dimension and type id before use; tensor data are zero-copy views into the map.

mod error;
mod reader;
mod value;
pub mod writer;

use std::collections::HashMap;
use std::path::Path;

use woolly_kernels::GgmlType;

pub use error::GgufError;
pub use reader::{MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS};
pub use value::{Array, Metadata, Value};

use reader::Cursor;

/// Alignment of the data section and of every tensor when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Largest `general.alignment` accepted (ggml uses 32; anything past a huge page is a lie).
pub const MAX_ALIGNMENT: u64 = 1 << 21;

/// One tensor's description from the tensor table, checked against the file.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// The tensor's name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the length of a row (the contiguous axis).
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    /// Number of elements (product of `dims`).
    pub n_elements: u64,
    /// Number of bytes of data.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Number of rows (elements of every dimension after the first, multiplied).
    pub fn n_rows(&self) -> u64 {
        self.dims[1..].iter().product()
    }

    /// Length of one row (`dims[0]`).
    pub fn row_len(&self) -> u64 {
        self.dims[0]
    }
}

/// Where the file's bytes live: a read-only memory map or, for tests and fuzzing, a
/// buffer in memory.
enum Storage {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// A parsed, validated GGUF file.
pub struct GgufFile {
    storage: Storage,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("size", &self.size())
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Maps and parses the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let io_err = |source| GgufError::Io {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        if len == 0 {
            // mmap of an empty file fails on some platforms; answer like any short file.
            return Self::from_bytes(Vec::new());
        }
        // SAFETY: the map is read-only and private to this process. Soundness needs the
        // file not to be truncated or changed while mapped; as every mmap-based loader,
        // Woolly documents that model files must not be modified while in use.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err)?;
        Self::parse(Storage::Mapped(map))
    }

    /// Parses a GGUF image held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        Self::parse(Storage::Owned(bytes))
    }

    fn parse(storage: Storage) -> Result<GgufFile, GgufError> {
        let bytes = storage.bytes();
        let size = bytes.len() as u64;
        let mut cur = Cursor::new(bytes);

        if bytes.len() < 4 || bytes[..4] != MAGIC {
            return Err(GgufError::BadMagic {
                found: bytes[..bytes.len().min(4)].to_vec(),
            });
        }
        cur.u32(&|| "header: magic".to_owned())?;
        let version = cur.u32(&|| "header: version".to_owned())?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let tensor_count = cur.u64(&|| "header: tensor count".to_owned())?;
        let kv_count = cur.u64(&|| "header: metadata count".to_owned())?;

        let metadata = reader::read_metadata(&mut cur, kv_count)?;
        let alignment = match metadata.get(writer::ALIGNMENT_KEY) {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) => u64::from(*a),
            Some(other) => {
                return Err(GgufError::WrongType {
                    key: writer::ALIGNMENT_KEY.to_owned(),
                    expected: "u32",
                    found: other.type_name(),
                });
            }
        };
        if alignment == 0 || !alignment.is_power_of_two() || alignment > MAX_ALIGNMENT {
            return Err(GgufError::malformed(
                format!("metadata key {:?}", writer::ALIGNMENT_KEY),
                format!("{alignment} is not a power of two in 1..={MAX_ALIGNMENT}"),
            ));
        }

        // A tensor info takes at least 8 (name length) + 1 (name) + 4 (n_dims) + 8 (one
        // dimension) + 4 (type) + 8 (offset) bytes.
        let n = cur.check_count(tensor_count, 33, &|| "header: tensor count".to_owned())?;
        let mut tensors = Vec::with_capacity(n);
        let mut tensor_index = HashMap::with_capacity(n);
        for i in 0..n {
            let info = read_tensor_info(&mut cur, i, alignment)?;
            if tensor_index.insert(info.name.clone(), i).is_some() {
                return Err(GgufError::DuplicateTensor(info.name));
            }
            tensors.push(info);
        }

        let data_offset = cur.pos().next_multiple_of(alignment);
        check_tensor_ranges(&tensors, data_offset, size)?;

        Ok(GgufFile {
            storage,
            version,
            alignment,
            data_offset,
            metadata,
            tensors,
            tensor_index,
        })
    }

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The alignment of the data section and of each tensor's data.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.storage.bytes().len() as u64
    }

    /// Offset of the data section from the start of the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The whole file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }

    /// Drops the pages of `len` bytes at `offset` from this process's resident memory,
    /// for data that a repacked copy now serves. A later read faults them back in from
    /// the file, unchanged. A hint: errors are ignored; a no-op for in-memory files.
    pub fn release(&self, offset: usize, len: usize) {
        if let Storage::Mapped(map) = &self.storage
            && offset.checked_add(len).is_some_and(|end| end <= map.len())
        {
            // SAFETY: MADV_DONTNEED on a read-only private file mapping only discards
            // pages; the next access re-reads them from the file, so every `&[u8]`
            // borrowed from the map keeps seeing the same bytes (the same assumption as
            // mapping the file at all: nobody rewrites it while it is open). The range
            // lies inside the map (checked).
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len)
            };
        }
    }

    /// Forgets the metadata pairs of `keys` (those present), for arrays another structure
    /// has copied, and drops the pages of the file's header from resident memory: every
    /// pair was copied out of them when the file was parsed.
    pub(crate) fn forget_metadata(&mut self, keys: &[&str]) {
        for key in keys {
            self.metadata.remove(key);
        }
        self.release(0, self.data_offset as usize);
    }

    /// The metadata pairs.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Every tensor, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of a tensor of this file, a view into the map (no copy).
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        // Ranges were checked against the file size at parse time; `get` keeps this
        // safe even for a `TensorInfo` that did not come from this file.
        let start = self.data_offset.saturating_add(info.offset);
        let end = start.saturating_add(info.n_bytes);
        self.storage
            .bytes()
            .get(start as usize..end as usize)
            .unwrap_or(&[])
    }
}

fn read_tensor_info(
    cur: &mut Cursor<'_>,
    i: usize,
    alignment: u64,
) -> Result<TensorInfo, GgufError> {
    let name = cur.string(&|| format!("tensor {i} (name)"))?;
    let field = |what: &str| format!("tensor {name:?}: {what}");
    let n_dims = cur.u32(&|| field("n_dims"))?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(GgufError::malformed(
            field("n_dims"),
            format!("{n_dims} dimensions, expected 1..={MAX_DIMS}"),
        ));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for d in 0..n_dims {
        let dim = cur.u64(&|| field(&format!("dimension {d}")))?;
        if dim == 0 {
            return Err(GgufError::malformed(
                field(&format!("dimension {d}")),
                "is 0",
            ));
        }
        dims.push(dim);
    }
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(|| {
            GgufError::malformed(
                field("dimensions"),
                format!("{dims:?} has more than 2^63 elements"),
            )
        })?;
    let type_id = cur.u32(&|| field("type"))?;
    let ty = GgmlType::from_id(type_id).ok_or_else(|| {
        GgufError::malformed(
            field("type"),
            format!("unknown or unsupported type id {type_id}"),
        )
    })?;
    if dims[0] % ty.block_len() as u64 != 0 {
        return Err(GgufError::malformed(
            field("dimension 0"),
            format!(
                "row length {} is not a multiple of the {ty} block size {}",
                dims[0],
                ty.block_len()
            ),
        ));
    }
    let row_bytes = ty.row_bytes(dims[0]).ok_or_else(|| {
        GgufError::malformed(
            field("dimensions"),
            format!("{dims:?} of {ty} overflows a byte size"),
        )
    })?;
    let n_bytes = row_bytes.checked_mul(n_elements / dims[0]).ok_or_else(|| {
        GgufError::malformed(
            field("dimensions"),
            format!("{dims:?} of {ty} overflows a byte size"),
        )
    })?;
    let offset = cur.u64(&|| field("offset"))?;
    if offset % alignment != 0 {
        return Err(GgufError::malformed(
            field("offset"),
            format!("data offset {offset:#x} is not a multiple of the alignment {alignment}"),
        ));
    }
    Ok(TensorInfo {
        name,
        dims,
        ty,
        offset,
        n_elements,
        n_bytes,
    })
}

/// Checks every tensor's data lies inside the file and no two overlap.
fn check_tensor_ranges(
    tensors: &[TensorInfo],
    data_offset: u64,
    size: u64,
) -> Result<(), GgufError> {
    let mut ranges = Vec::with_capacity(tensors.len());
    for t in tensors {
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes));
        match (start, end) {
            (Some(start), Some(end)) if end <= size => ranges.push((start, end, &t.name)),
            _ => {
                return Err(GgufError::malformed(
                    format!("tensor {:?}", t.name),
                    format!(
                        "data range {:#x}+{:#x}+{:#x} ends past end of file (size {size:#x})",
                        data_offset, t.offset, t.n_bytes
                    ),
                ));
            }
        }
    }
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if b.0 < a.1 {
            return Err(GgufError::malformed(
                format!("tensor {:?}", b.2),
                format!(
                    "data {:#x}..{:#x} overlaps tensor {:?} at {:#x}..{:#x}",
                    b.0, b.1, a.2, a.0, a.1
                ),
            ));
        }
    }
    Ok(())
}
