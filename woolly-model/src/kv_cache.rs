//! The key/value cache: one pool for several sequences, each in its own slot.
//!
//! A slot is a sequence's private stretch of `n_ctx` positions in every layer (rounded up
//! to whole blocks of [`K_BLOCK`]); the server gives each request one slot,
//! `woolly-run generate` uses slot 0. Layouts, with `n_pad = n_ctx` rounded up:
//! - values: `(n_layer, n_seq, n_pad, kv_dim)`;
//! - keys: `(n_layer, n_seq, n_pad / K_BLOCK, kv_dim, K_BLOCK)`, transposed in blocks of
//!   positions so that the attention kernel's lanes run across positions (see
//!   `woolly_kernels::ops::attention`).

use half::f16;
use half::slice::HalfFloatSliceExt;
use woolly_kernels::ops::attention::K_BLOCK;

/// Element type of the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvType {
    /// Half precision (the default, as in llama.cpp).
    #[default]
    F16,
    /// Single precision.
    F32,
}

enum Store {
    F16 { k: Vec<f16>, v: Vec<f16> },
    F32 { k: Vec<f32>, v: Vec<f32> },
}

/// Why a cache could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum KvCacheError {
    /// The cache would need more memory than is allowed.
    #[error(
        "a KV cache of {n_seq} x {n_ctx} positions needs {bytes} bytes ({mib} MiB), more than the limit of {limit_mib} MiB"
    )]
    TooLarge {
        n_seq: usize,
        n_ctx: usize,
        bytes: u128,
        mib: u128,
        limit_mib: u128,
    },
    /// A position past the end of the slot.
    #[error("position {pos} is past the context of {n_ctx} tokens")]
    ContextFull { pos: usize, n_ctx: usize },
    /// A slot that does not exist.
    #[error("sequence slot {seq} does not exist (the cache has {n_seq})")]
    NoSuchSlot { seq: usize, n_seq: usize },
}

/// Keys and values of every layer for `n_seq` sequences of up to `n_ctx` positions.
pub struct KvCache {
    store: Store,
    n_layer: usize,
    n_seq: usize,
    n_ctx: usize,
    /// `n_ctx` rounded up to whole key blocks: the positions a slot holds.
    n_pad: usize,
    kv_dim: usize,
    /// Positions filled per slot (the next position to write).
    lens: Vec<usize>,
}

impl KvCache {
    /// Bytes a cache of this shape needs (keys and values), computed without overflow.
    pub fn bytes_needed(
        n_layer: usize,
        n_seq: usize,
        n_ctx: usize,
        kv_dim: usize,
        ty: KvType,
    ) -> u128 {
        let elem: u128 = match ty {
            KvType::F16 => 2,
            KvType::F32 => 4,
        };
        let n_pad = (n_ctx as u128).div_ceil(K_BLOCK as u128) * K_BLOCK as u128;
        2 * elem * n_layer as u128 * n_seq as u128 * n_pad * kv_dim as u128
    }

    /// A zeroed cache, refused before allocating when it would exceed `limit_bytes`.
    pub fn new(
        n_layer: usize,
        n_seq: usize,
        n_ctx: usize,
        kv_dim: usize,
        ty: KvType,
        limit_bytes: u128,
    ) -> Result<KvCache, KvCacheError> {
        let bytes = Self::bytes_needed(n_layer, n_seq, n_ctx, kv_dim, ty);
        if bytes > limit_bytes {
            return Err(KvCacheError::TooLarge {
                n_seq,
                n_ctx,
                bytes,
                mib: bytes >> 20,
                limit_mib: limit_bytes >> 20,
            });
        }
        // Fits: bytes <= limit, checked above.
        let n_pad = n_ctx.div_ceil(K_BLOCK) * K_BLOCK;
        let n = n_layer * n_seq * n_pad * kv_dim;
        let store = match ty {
            KvType::F16 => Store::F16 {
                k: vec![f16::ZERO; n],
                v: vec![f16::ZERO; n],
            },
            KvType::F32 => Store::F32 {
                k: vec![0.0; n],
                v: vec![0.0; n],
            },
        };
        Ok(KvCache {
            store,
            n_layer,
            n_seq,
            n_ctx,
            n_pad,
            kv_dim,
            lens: vec![0; n_seq],
        })
    }

    /// Positions per slot.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Number of slots.
    pub fn n_seq(&self) -> usize {
        self.n_seq
    }

    /// Positions filled in slot `seq`.
    pub fn len(&self, seq: usize) -> usize {
        self.lens[seq]
    }

    /// Whether slot `seq` is empty.
    pub fn is_empty(&self, seq: usize) -> bool {
        self.lens[seq] == 0
    }

    /// Forgets every position of slot `seq` from `pos` on (the slot keeps its memory).
    pub fn truncate(&mut self, seq: usize, pos: usize) {
        self.lens[seq] = self.lens[seq].min(pos);
    }

    /// Checks that slot `seq` can take positions `start..start + n`.
    pub fn check(&self, seq: usize, start: usize, n: usize) -> Result<(), KvCacheError> {
        if seq >= self.n_seq {
            return Err(KvCacheError::NoSuchSlot {
                seq,
                n_seq: self.n_seq,
            });
        }
        if start + n > self.n_ctx {
            return Err(KvCacheError::ContextFull {
                pos: start + n - 1,
                n_ctx: self.n_ctx,
            });
        }
        Ok(())
    }

    pub(crate) fn set_len(&mut self, seq: usize, len: usize) {
        self.lens[seq] = len;
    }

    /// Where position `pos` of one slot and layer starts in the values; the key block
    /// holding it starts at the same index rounded down to a block.
    fn index(&self, layer: usize, seq: usize, pos: usize) -> usize {
        debug_assert!(layer < self.n_layer && seq < self.n_seq && pos < self.n_ctx);
        ((layer * self.n_seq + seq) * self.n_pad + pos) * self.kv_dim
    }

    /// Stores the key and value of one position.
    pub(crate) fn write(&mut self, layer: usize, seq: usize, pos: usize, k: &[f32], v: &[f32]) {
        let i = self.index(layer, seq, pos);
        let d = self.kv_dim;
        // Key c of the position is lane `pos % K_BLOCK` of row c of its block.
        let kb = self.index(layer, seq, pos / K_BLOCK * K_BLOCK) + pos % K_BLOCK;
        let k_at = |c: usize| kb + c * K_BLOCK;
        match &mut self.store {
            Store::F16 { k: kc, v: vc } => {
                // Converted a slice at a time (F16C when the CPU has it; the same
                // rounding as `f16::from_f32`), keys through a buffer to scatter.
                const CHUNK: usize = 64;
                let mut buf = [f16::ZERO; CHUNK];
                for (j, src) in k[..d].chunks(CHUNK).enumerate() {
                    let buf = &mut buf[..src.len()];
                    buf.convert_from_f32_slice(src);
                    for (c, &h) in buf.iter().enumerate() {
                        kc[k_at(j * CHUNK + c)] = h;
                    }
                }
                vc[i..i + d].convert_from_f32_slice(&v[..d]);
            }
            Store::F32 { k: kc, v: vc } => {
                for (c, &src) in k[..d].iter().enumerate() {
                    kc[k_at(c)] = src;
                }
                vc[i..i + d].copy_from_slice(v);
            }
        }
    }

    /// Keys and values of positions `0..n` of one slot and layer: keys as whole blocks
    /// `(ceil(n / K_BLOCK), kv_dim, K_BLOCK)` (lanes past `n` hold whatever was there),
    /// values `(n, kv_dim)`.
    pub(crate) fn view(&self, layer: usize, seq: usize, n: usize) -> KvView<'_> {
        let i = self.index(layer, seq, 0);
        let len = n * self.kv_dim;
        let k_len = n.div_ceil(K_BLOCK) * K_BLOCK * self.kv_dim;
        match &self.store {
            Store::F16 { k, v } => KvView::F16 {
                k: &k[i..i + k_len],
                v: &v[i..i + len],
            },
            Store::F32 { k, v } => KvView::F32 {
                k: &k[i..i + k_len],
                v: &v[i..i + len],
            },
        }
    }
}

/// Borrowed keys and values of `n_pos` positions: keys `(ceil(n_pos / K_BLOCK), kv_dim,
/// K_BLOCK)`, values `(n_pos, kv_dim)`.
pub(crate) enum KvView<'a> {
    F16 { k: &'a [f16], v: &'a [f16] },
    F32 { k: &'a [f32], v: &'a [f32] },
}
