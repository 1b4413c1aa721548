//! The bounds-checked parser of a GGUF header, metadata and tensor table.
//!
//! Every read checks the bytes left; every count is compared with what the rest of the
//! file could possibly hold before anything is allocated from it; all arithmetic on
//! sizes and offsets is checked. A malformed file is an error naming the field.

use super::value::{Array, Value, type_id};
use super::{GgufError, Metadata};

/// GGUF files begin with these four bytes.
pub const MAGIC: [u8; 4] = *b"GGUF";

/// Arrays nested deeper than this are refused (real files nest at most one level).
pub const MAX_ARRAY_DEPTH: usize = 4;

/// Longest metadata key accepted, in bytes (the GGUF spec caps keys at 65535).
pub const MAX_KEY_LEN: u64 = 65_535;

/// Most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;

/// A cursor over the file's bytes that refuses to read past the end.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    pub(crate) fn pos(&self) -> u64 {
        self.pos as u64
    }

    pub(crate) fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    /// Takes `n` bytes, or fails naming `field`.
    fn take(&mut self, n: u64, field: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                field: field(),
                offset: self.pos(),
                needed: n,
                size: self.bytes.len() as u64,
            });
        }
        let n = n as usize; // fits: n <= remaining, which is a usize
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        let bytes = self.take(N as u64, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn u32(&mut self, field: &dyn Fn() -> String) -> Result<u32, GgufError> {
        self.array(field).map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self, field: &dyn Fn() -> String) -> Result<u64, GgufError> {
        self.array(field).map(u64::from_le_bytes)
    }

    /// A count that announces `count` items of at least `min_item_bytes` each: refused
    /// when the rest of the file cannot hold them, so nothing is allocated from a lie.
    pub(crate) fn check_count(
        &self,
        count: u64,
        min_item_bytes: u64,
        field: &dyn Fn() -> String,
    ) -> Result<usize, GgufError> {
        let max = self.remaining() / min_item_bytes.max(1);
        if count > max {
            return Err(GgufError::ImpossibleCount {
                field: field(),
                count,
                remaining: self.remaining(),
                max,
            });
        }
        Ok(count as usize) // fits: count <= remaining, which is a usize
    }

    /// A GGUF string: u64 length, then that many bytes of UTF-8.
    pub(crate) fn string(&mut self, field: &dyn Fn() -> String) -> Result<String, GgufError> {
        let len = self.u64(&|| format!("{} (length)", field()))?;
        if len > self.remaining() {
            return Err(GgufError::Truncated {
                field: format!("{} (string of {len} bytes)", field()),
                offset: self.pos(),
                needed: len,
                size: self.bytes.len() as u64,
            });
        }
        let start = self.pos();
        let bytes = self.take(len, field)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| {
            GgufError::malformed(
                field(),
                format!(
                    "string at offset {start:#x} is not valid UTF-8 (byte {} of {len})",
                    e.utf8_error().valid_up_to()
                ),
            )
        })
    }

    /// One metadata value of type `ty`; arrays recurse up to [`MAX_ARRAY_DEPTH`].
    pub(crate) fn value(
        &mut self,
        ty: u32,
        depth: usize,
        field: &dyn Fn() -> String,
    ) -> Result<Value, GgufError> {
        Ok(match ty {
            type_id::U8 => Value::U8(self.array::<1>(field)?[0]),
            type_id::I8 => Value::I8(self.array::<1>(field)?[0] as i8),
            type_id::U16 => Value::U16(u16::from_le_bytes(self.array(field)?)),
            type_id::I16 => Value::I16(i16::from_le_bytes(self.array(field)?)),
            type_id::U32 => Value::U32(u32::from_le_bytes(self.array(field)?)),
            type_id::I32 => Value::I32(i32::from_le_bytes(self.array(field)?)),
            type_id::U64 => Value::U64(u64::from_le_bytes(self.array(field)?)),
            type_id::I64 => Value::I64(i64::from_le_bytes(self.array(field)?)),
            type_id::F32 => Value::F32(f32::from_le_bytes(self.array(field)?)),
            type_id::F64 => Value::F64(f64::from_le_bytes(self.array(field)?)),
            type_id::BOOL => Value::Bool(self.bool(field)?),
            type_id::STRING => Value::String(self.string(field)?),
            type_id::ARRAY => Value::Array(self.array_value(depth, field)?),
            other => {
                return Err(GgufError::malformed(
                    field(),
                    format!("unknown value type id {other}"),
                ));
            }
        })
    }

    fn bool(&mut self, field: &dyn Fn() -> String) -> Result<bool, GgufError> {
        match self.array::<1>(field)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(GgufError::malformed(
                field(),
                format!("bool byte is {b}, expected 0 or 1"),
            )),
        }
    }

    fn array_value(
        &mut self,
        depth: usize,
        field: &dyn Fn() -> String,
    ) -> Result<Array, GgufError> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(GgufError::malformed(
                field(),
                format!("arrays nested more than {MAX_ARRAY_DEPTH} deep"),
            ));
        }
        let elem_ty = self.u32(&|| format!("{} (array element type)", field()))?;
        let count = self.u64(&|| format!("{} (array length)", field()))?;
        let elem_field = || format!("{} (array of {count})", field());
        // Smallest encoding of one element: strings carry an 8-byte length, nested
        // arrays a 4-byte type and an 8-byte length.
        let min_bytes = match elem_ty {
            type_id::U8 | type_id::I8 | type_id::BOOL => 1,
            type_id::U16 | type_id::I16 => 2,
            type_id::U32 | type_id::I32 | type_id::F32 => 4,
            type_id::U64 | type_id::I64 | type_id::F64 => 8,
            type_id::STRING => 8,
            type_id::ARRAY => 12,
            other => {
                return Err(GgufError::malformed(
                    field(),
                    format!("unknown array element type id {other}"),
                ));
            }
        };
        let n = self.check_count(count, min_bytes, &elem_field)?;
        macro_rules! read_all {
            ($variant:ident, $ty:ty) => {{
                let bytes = self.take(count * min_bytes, &elem_field)?;
                Array::$variant(
                    bytes
                        .chunks_exact(std::mem::size_of::<$ty>())
                        .map(|c| <$ty>::from_le_bytes(c.try_into().expect("chunk size")))
                        .collect(),
                )
            }};
        }
        Ok(match elem_ty {
            type_id::U8 => Array::U8(self.take(count, &elem_field)?.to_vec()),
            type_id::I8 => Array::I8(
                self.take(count, &elem_field)?
                    .iter()
                    .map(|&b| b as i8)
                    .collect(),
            ),
            type_id::U16 => read_all!(U16, u16),
            type_id::I16 => read_all!(I16, i16),
            type_id::U32 => read_all!(U32, u32),
            type_id::I32 => read_all!(I32, i32),
            type_id::U64 => read_all!(U64, u64),
            type_id::I64 => read_all!(I64, i64),
            type_id::F32 => read_all!(F32, f32),
            type_id::F64 => read_all!(F64, f64),
            type_id::BOOL => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.bool(&elem_field)?);
                }
                Array::Bool(v)
            }
            type_id::STRING => {
                let mut v = Vec::with_capacity(n);
                for i in 0..n {
                    v.push(self.string(&|| format!("{} [{i}]", field()))?);
                }
                Array::String(v)
            }
            _ => {
                let mut v = Vec::with_capacity(n);
                for i in 0..n {
                    let inner = || format!("{} [{i}]", field());
                    match self.value(type_id::ARRAY, depth + 1, &inner)? {
                        Value::Array(a) => v.push(a),
                        _ => unreachable!("type_id::ARRAY always yields an array"),
                    }
                }
                Array::Array(v)
            }
        })
    }
}

/// Reads the metadata section: `count` key/value pairs.
pub(crate) fn read_metadata(cur: &mut Cursor<'_>, count: u64) -> Result<Metadata, GgufError> {
    // A pair takes at least 8 (key length) + 1 (key) + 4 (type) + 1 (value) bytes.
    let n = cur.check_count(count, 14, &|| "header: metadata count".to_owned())?;
    let mut metadata = Metadata::default();
    for i in 0..n {
        let key_field = || format!("metadata pair {i} (key)");
        let key_len_at = cur.pos();
        let key = cur.string(&key_field)?;
        if key.is_empty() || key.len() as u64 > MAX_KEY_LEN {
            return Err(GgufError::malformed(
                key_field(),
                format!(
                    "key at offset {key_len_at:#x} has length {}, expected 1..={MAX_KEY_LEN}",
                    key.len()
                ),
            ));
        }
        let value_field = || format!("metadata key {key:?}");
        let ty = cur.u32(&|| format!("{} (value type)", value_field()))?;
        let value = cur.value(ty, 0, &value_field)?;
        metadata.insert(key, value)?;
    }
    Ok(metadata)
}
