//! The tensors of a Llama model, found by name and checked against the hyper-parameters.
//!
//! Weights stay in the file's memory map: a [`Weight`] is a description (type, shape,
//! where its bytes are) and [`crate::Model`] hands out byte slices into the map.

use woolly_kernels::GgmlType;

use crate::config::LlamaConfig;
use crate::gguf::{GgufFile, TensorInfo};

/// Source bytes a matrix's packing consumes between two releases of its pages.
const RELEASE_STEP: usize = 2 << 20;

/// A 2-D weight matrix `(n_out, n_in)`: `n_out` rows of `n_in` elements each, row-major
/// in the file (ggml dims `[n_in, n_out]`), or a 1-D vector (`n_out = 1`).
#[derive(Clone, Debug)]
pub struct Weight {
    /// The tensor's name in the file.
    pub name: String,
    /// Element type.
    pub ty: GgmlType,
    /// Elements per row (the input width of a projection).
    pub n_in: usize,
    /// Rows (the output width of a projection).
    pub n_out: usize,
    /// Start of the data within the file.
    pub(crate) file_offset: usize,
    /// Bytes of data.
    pub(crate) n_bytes: usize,
    /// The rows repacked for the tile kernels, when the model's ISA packs weights and the
    /// type has a packed form (then the projection, or the embedding lookup of tied
    /// embeddings, reads only this copy).
    pub(crate) packed: Option<std::sync::Arc<woolly_kernels::ops::packed::PackedMatrix>>,
}

impl Weight {
    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.n_bytes / self.n_out
    }
}

/// The weights of one transformer block.
#[derive(Clone, Debug)]
pub struct LayerWeights {
    /// (n_embd,)
    pub attn_norm: Weight,
    /// (n_embd, n_embd): rows are query outputs.
    pub wq: Weight,
    /// (kv_dim, n_embd)
    pub wk: Weight,
    /// (kv_dim, n_embd)
    pub wv: Weight,
    /// (n_embd, n_embd)
    pub wo: Weight,
    /// (n_embd,)
    pub ffn_norm: Weight,
    /// (n_ff, n_embd)
    pub w_gate: Weight,
    /// (n_ff, n_embd)
    pub w_up: Weight,
    /// (n_embd, n_ff)
    pub w_down: Weight,
}

/// Every weight of the model.
#[derive(Clone, Debug)]
pub struct Weights {
    /// (n_vocab, n_embd)
    pub token_embd: Weight,
    /// One per block.
    pub layers: Vec<LayerWeights>,
    /// (n_embd,)
    pub output_norm: Weight,
    /// (n_vocab, n_embd): `output.weight`, or the embeddings when they are tied.
    pub output: Weight,
    /// (rope_dim / 2,): Llama 3 frequency factors, when the file has them.
    pub rope_freqs: Option<Weight>,
}

/// Why the tensors do not fit the model.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    /// A tensor the architecture needs is absent.
    #[error("tensor {0:?} is missing")]
    Missing(String),
    /// A tensor of the wrong shape.
    #[error("tensor {name:?} has shape {found:?}, expected {expected:?} from the hyper-parameters")]
    Shape {
        name: String,
        found: Vec<u64>,
        expected: Vec<u64>,
    },
    /// A tensor whose type Woolly cannot use in that role.
    #[error("tensor {name:?} has type {ty}, which Woolly cannot use there ({allowed})")]
    Type {
        name: String,
        ty: GgmlType,
        allowed: &'static str,
    },
    /// Norm weights that are not finite.
    #[error("tensor {name:?} holds a non-finite value at index {index}")]
    NotFinite { name: String, index: usize },
}

fn find(file: &GgufFile, name: &str, expected: &[usize]) -> Result<Weight, WeightError> {
    let info: &TensorInfo = file
        .tensor(name)
        .ok_or_else(|| WeightError::Missing(name.to_owned()))?;
    let expected_u64: Vec<u64> = expected.iter().map(|&d| d as u64).collect();
    if info.dims != expected_u64 {
        return Err(WeightError::Shape {
            name: name.to_owned(),
            found: info.dims.clone(),
            expected: expected_u64,
        });
    }
    if matches!(info.ty, GgmlType::Q8K | GgmlType::Q8_1) {
        return Err(WeightError::Type {
            name: name.to_owned(),
            ty: info.ty,
            allowed: "Q8_K and Q8_1 are activation formats",
        });
    }
    Ok(Weight {
        name: name.to_owned(),
        ty: info.ty,
        n_in: expected[0],
        n_out: expected.get(1).copied().unwrap_or(1),
        file_offset: (file.data_offset() + info.offset) as usize,
        n_bytes: info.n_bytes as usize,
        packed: None,
    })
}

/// A norm vector: F32, every value finite.
fn norm(file: &GgufFile, name: &str, n: usize) -> Result<Weight, WeightError> {
    let w = find(file, name, &[n])?;
    if w.ty != GgmlType::F32 {
        return Err(WeightError::Type {
            name: name.to_owned(),
            ty: w.ty,
            allowed: "norms must be f32",
        });
    }
    let bytes = file.tensor_data(file.tensor(name).expect("found above"));
    for (index, c) in bytes.chunks_exact(4).enumerate() {
        if !f32::from_le_bytes(c.try_into().expect("4 bytes")).is_finite() {
            return Err(WeightError::NotFinite {
                name: name.to_owned(),
                index,
            });
        }
    }
    Ok(w)
}

impl Weights {
    /// Finds every tensor and checks its shape against `cfg`.
    pub fn from_file(file: &GgufFile, cfg: &LlamaConfig) -> Result<Weights, WeightError> {
        let (d, kv, ff, v) = (cfg.n_embd, cfg.kv_dim(), cfg.n_ff, cfg.n_vocab);
        let token_embd = find(file, "token_embd.weight", &[d, v])?;
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            layers.push(LayerWeights {
                attn_norm: norm(file, &n("attn_norm"), d)?,
                wq: find(file, &n("attn_q"), &[d, d])?,
                wk: find(file, &n("attn_k"), &[d, kv])?,
                wv: find(file, &n("attn_v"), &[d, kv])?,
                wo: find(file, &n("attn_output"), &[d, d])?,
                ffn_norm: norm(file, &n("ffn_norm"), d)?,
                w_gate: find(file, &n("ffn_gate"), &[d, ff])?,
                w_up: find(file, &n("ffn_up"), &[d, ff])?,
                w_down: find(file, &n("ffn_down"), &[ff, d])?,
            });
        }
        let output_norm = norm(file, "output_norm.weight", d)?;
        let output = match file.tensor("output.weight") {
            Some(_) => find(file, "output.weight", &[d, v])?,
            None => token_embd.clone(),
        };
        let rope_freqs = match file.tensor("rope_freqs.weight") {
            Some(_) => Some(norm(file, "rope_freqs.weight", cfg.rope_dim / 2)?),
            None => None,
        };
        Ok(Weights {
            token_embd,
            layers,
            output_norm,
            output,
            rope_freqs,
        })
    }

    /// Every matrix a projection multiplies by: each layer's seven, then the output.
    fn projections_mut(&mut self) -> impl Iterator<Item = &mut Weight> {
        self.layers
            .iter_mut()
            .flat_map(|l| {
                [
                    &mut l.wq,
                    &mut l.wk,
                    &mut l.wv,
                    &mut l.wo,
                    &mut l.w_gate,
                    &mut l.w_up,
                    &mut l.w_down,
                ]
            })
            .chain(std::iter::once(&mut self.output))
    }

    /// Repacks every projection whose type has a packed form for the tile kernels
    /// (in parallel), dropping the original pages from resident memory as packing goes
    /// (every [`RELEASE_STEP`] bytes), so a matrix and its packed copy are not both
    /// resident, and once more at the end (a thread faulting in its own matrix maps
    /// pages around the fault, some of a neighbour already dropped): the projection
    /// reads only the packed copy from then on, and so does the embedding lookup of a
    /// model whose embeddings are tied to its output. Returns the bytes packed.
    pub(crate) fn pack(&mut self, file: &GgufFile) -> usize {
        use rayon::prelude::*;
        use woolly_kernels::ops::packed::PackedMatrix;
        let mut todo: Vec<&mut Weight> = self
            .projections_mut()
            .filter(|w| PackedMatrix::supports(w.ty, w.n_out))
            .collect();
        let packed = todo
            .par_iter_mut()
            .map(|w| {
                let data = &file.bytes()[w.file_offset..][..w.n_bytes];
                let mut released = 0;
                let packed = PackedMatrix::pack_with(w.ty, data, w.n_out, w.n_in, &mut |n| {
                    if n - released >= RELEASE_STEP {
                        file.release(w.file_offset + released, n - released);
                        released = n;
                    }
                })
                .expect("shapes were checked at load")
                .expect("supports() was checked");
                file.release(w.file_offset + released, w.n_bytes - released);
                let bytes = packed.bytes();
                w.packed = Some(std::sync::Arc::new(packed));
                bytes
            })
            .sum::<usize>();
        for w in todo {
            file.release(w.file_offset, w.n_bytes);
        }
        // A tied embedding table is looked up in the output matrix's packed copy, so the
        // file's pages of it, released above, are not brought back row by row (each
        // fault maps its neighbours too: 2.5 MB of SmolLM2's after 40 tokens).
        if self.output.file_offset == self.token_embd.file_offset {
            self.token_embd.packed = self.output.packed.clone();
        }
        packed
    }
}
