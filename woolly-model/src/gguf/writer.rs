//! A small GGUF writer, for tests and tools (crafting files, writing generated models).
//!
//! [`GgufWriter`] builds well-formed files. [`Encoder`] writes the primitive fields one
//! by one, so tests can craft malformed files field by field.

use woolly_kernels::GgmlType;

use super::value::{Array, Value, type_id};
use super::{DEFAULT_ALIGNMENT, MAGIC};

/// The metadata key that sets the alignment of the data section.
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// Appends GGUF primitives to a byte buffer, little-endian.
#[derive(Default)]
pub struct Encoder {
    /// The bytes written so far.
    pub bytes: Vec<u8>,
}

impl Encoder {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raw bytes.
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(b);
        self
    }

    /// A u32.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// A u64.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// A string: u64 length, then the bytes.
    pub fn string(&mut self, s: &[u8]) -> &mut Self {
        self.u64(s.len() as u64).raw(s)
    }

    /// The header: magic, version, tensor count, metadata count.
    pub fn header(&mut self, version: u32, n_tensors: u64, n_kv: u64) -> &mut Self {
        self.raw(&MAGIC).u32(version).u64(n_tensors).u64(n_kv)
    }

    /// A value's type id followed by the value.
    pub fn typed_value(&mut self, v: &Value) -> &mut Self {
        self.u32(value_type_id(v));
        self.value(v)
    }

    /// A value without its type id.
    pub fn value(&mut self, v: &Value) -> &mut Self {
        match v {
            Value::U8(x) => self.raw(&[*x]),
            Value::I8(x) => self.raw(&x.to_le_bytes()),
            Value::U16(x) => self.raw(&x.to_le_bytes()),
            Value::I16(x) => self.raw(&x.to_le_bytes()),
            Value::U32(x) => self.raw(&x.to_le_bytes()),
            Value::I32(x) => self.raw(&x.to_le_bytes()),
            Value::U64(x) => self.raw(&x.to_le_bytes()),
            Value::I64(x) => self.raw(&x.to_le_bytes()),
            Value::F32(x) => self.raw(&x.to_le_bytes()),
            Value::F64(x) => self.raw(&x.to_le_bytes()),
            Value::Bool(x) => self.raw(&[u8::from(*x)]),
            Value::String(s) => self.string(s.as_bytes()),
            Value::Array(a) => self.array(a),
        }
    }

    fn array(&mut self, a: &Array) -> &mut Self {
        self.u32(array_element_type_id(a)).u64(a.len() as u64);
        match a {
            Array::U8(v) => v.iter().for_each(|x| {
                self.raw(&[*x]);
            }),
            Array::I8(v) => v.iter().for_each(|x| {
                self.raw(&x.to_le_bytes());
            }),
            Array::U16(v) => v.iter().for_each(|x| {
                self.raw(&x.to_le_bytes());
            }),
            Array::I16(v) => v.iter().for_each(|x| {
                self.raw(&x.to_le_bytes());
            }),
            Array::U32(v) => v.iter().for_each(|x| {
                self.raw(&x.to_le_bytes());
            }),
            Array::I32(v) => v.iter().for_each(|x| {
                self.raw(&x.to_le_bytes());
            }),
            Array::U64(v) => v.iter().for_each(|x| {
                self.raw(&x.to_le_bytes());
            }),
            Array::I64(v) => v.iter().for_each(|x| {
                self.raw(&x.to_le_bytes());
            }),
            Array::F32(v) => v.iter().for_each(|x| {
                self.raw(&x.to_le_bytes());
            }),
            Array::F64(v) => v.iter().for_each(|x| {
                self.raw(&x.to_le_bytes());
            }),
            Array::Bool(v) => v.iter().for_each(|x| {
                self.raw(&[u8::from(*x)]);
            }),
            Array::String(v) => v.iter().for_each(|s| {
                self.string(s.as_bytes());
            }),
            Array::Array(v) => v.iter().for_each(|inner| {
                self.array(inner);
            }),
        }
        self
    }

    /// A tensor info: name, dims, type id, offset.
    pub fn tensor_info(
        &mut self,
        name: &str,
        dims: &[u64],
        type_id: u32,
        offset: u64,
    ) -> &mut Self {
        self.string(name.as_bytes()).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(type_id).u64(offset)
    }

    /// Zero bytes up to the next multiple of `alignment`.
    pub fn pad_to(&mut self, alignment: usize) -> &mut Self {
        let len = self.bytes.len().next_multiple_of(alignment);
        self.bytes.resize(len, 0);
        self
    }
}

fn value_type_id(v: &Value) -> u32 {
    match v {
        Value::U8(_) => type_id::U8,
        Value::I8(_) => type_id::I8,
        Value::U16(_) => type_id::U16,
        Value::I16(_) => type_id::I16,
        Value::U32(_) => type_id::U32,
        Value::I32(_) => type_id::I32,
        Value::U64(_) => type_id::U64,
        Value::I64(_) => type_id::I64,
        Value::F32(_) => type_id::F32,
        Value::F64(_) => type_id::F64,
        Value::Bool(_) => type_id::BOOL,
        Value::String(_) => type_id::STRING,
        Value::Array(_) => type_id::ARRAY,
    }
}

fn array_element_type_id(a: &Array) -> u32 {
    match a {
        Array::U8(_) => type_id::U8,
        Array::I8(_) => type_id::I8,
        Array::U16(_) => type_id::U16,
        Array::I16(_) => type_id::I16,
        Array::U32(_) => type_id::U32,
        Array::I32(_) => type_id::I32,
        Array::U64(_) => type_id::U64,
        Array::I64(_) => type_id::I64,
        Array::F32(_) => type_id::F32,
        Array::F64(_) => type_id::F64,
        Array::Bool(_) => type_id::BOOL,
        Array::String(_) => type_id::STRING,
        Array::Array(_) => type_id::ARRAY,
    }
}

/// A tensor to be written: name, ggml-order dims, type and its encoded data.
struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    data: Vec<u8>,
}

/// Builds a well-formed GGUF v3 file in memory.
///
/// ```
/// use woolly_model::gguf::{GgufFile, Value, writer::GgufWriter};
/// use woolly_kernels::GgmlType;
///
/// let mut w = GgufWriter::new();
/// w.kv("general.architecture", Value::String("llama".into()));
/// w.tensor("x", &[4], GgmlType::F32, [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect());
/// let file = GgufFile::from_bytes(w.to_bytes()).unwrap();
/// assert_eq!(file.tensor("x").unwrap().n_elements, 4);
/// ```
pub struct GgufWriter {
    version: u32,
    alignment: u64,
    kvs: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// An empty version-3 file with the default alignment.
    pub fn new() -> Self {
        GgufWriter {
            version: 3,
            alignment: DEFAULT_ALIGNMENT,
            kvs: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Sets the format version written in the header.
    pub fn version(&mut self, version: u32) -> &mut Self {
        self.version = version;
        self
    }

    /// Sets the alignment (also written as `general.alignment` when not 32).
    pub fn alignment(&mut self, alignment: u32) -> &mut Self {
        self.alignment = u64::from(alignment);
        self.kvs.retain(|(k, _)| k != ALIGNMENT_KEY);
        if self.alignment != DEFAULT_ALIGNMENT {
            self.kvs
                .push((ALIGNMENT_KEY.to_owned(), Value::U32(alignment)));
        }
        self
    }

    /// Adds a metadata pair.
    pub fn kv(&mut self, key: &str, value: Value) -> &mut Self {
        self.kvs.push((key.to_owned(), value));
        self
    }

    /// Adds a tensor; `data` must be its encoded bytes (`ty.row_bytes(dims[0]) * rows`).
    pub fn tensor(&mut self, name: &str, dims: &[u64], ty: GgmlType, data: Vec<u8>) -> &mut Self {
        self.tensors.push(PendingTensor {
            name: name.to_owned(),
            dims: dims.to_vec(),
            ty,
            data,
        });
        self
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let align = self.alignment as usize;
        let mut e = Encoder::new();
        e.header(
            self.version,
            self.tensors.len() as u64,
            self.kvs.len() as u64,
        );
        for (k, v) in &self.kvs {
            e.string(k.as_bytes()).typed_value(v);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            e.tensor_info(&t.name, &t.dims, t.ty.id(), offset);
            offset = (offset + t.data.len() as u64).next_multiple_of(self.alignment);
        }
        e.pad_to(align);
        for t in &self.tensors {
            e.raw(&t.data).pad_to(align);
        }
        e.bytes
    }

    /// Writes the file to `path`.
    pub fn write(&self, path: impl AsRef<std::path::Path>) -> std::io::Result<()> {
        std::fs::write(path, self.to_bytes())
    }
}
