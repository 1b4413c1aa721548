//! `#[repr(C)]` block layouts, byte-for-byte those of ggml (`ggml/src/ggml-common.h`),
//! and the safe views between tensor bytes and block slices.
//!
//! Every struct is made only of `u8`/`i8`/`i16`/`f16`/`f32` fields and arrays, laid out
//! with no padding (each size assert below equals the sum of the field sizes), so every
//! bit pattern is a valid value and a block can be read from, or written to, raw bytes.
//! The [`Block`] trait is sealed: only the structs in this file implement it, and the
//! byte views rely on that.
//!
//! GGUF guarantees 32-byte alignment only at tensor starts, and a `Vec<u8>` in a test
//! may be unaligned for the 2- or 4-byte aligned blocks: [`blocks`] returns `None` then,
//! and callers fall back to [`read_block`], which copies one block out of any bytes.

use half::f16;

use super::{GgmlType, QK_K};

/// Elements in one legacy block (Q4_0 .. Q8_1).
pub const QK: usize = 32;

mod sealed {
    /// Keeps [`super::Block`] implemented only by the layouts of this module.
    pub trait Sealed {}
}

/// A ggml quant block: a `#[repr(C)]` struct of plain integers and floats, with no
/// padding, for which every bit pattern is valid.
///
/// Sealed: implemented only by the block structs of this module, which is what makes
/// [`blocks`], [`blocks_mut`], [`as_bytes`] and [`read_block`] sound.
pub trait Block: sealed::Sealed + Copy + Send + Sync + 'static {
    /// The ggml type this block stores.
    const TYPE: GgmlType;
    /// Weights per block.
    const BLOCK_LEN: usize;
    /// Bytes per block (`size_of::<Self>()`, equal to `TYPE.block_bytes()`).
    const BYTES: usize = size_of::<Self>();
    /// The all-zero block (every scale 0.0, every quant 0).
    const ZERO: Self;

    /// Dequantizes this block into `dst` (`dst.len() == Self::BLOCK_LEN`), with the
    /// arithmetic of ggml's `dequantize_row_*`.
    ///
    /// # Panics
    /// If `dst.len() != Self::BLOCK_LEN`.
    fn dequantize(&self, dst: &mut [f32]);
}

/// Views tensor bytes as a slice of blocks, or `None` when the length is not a whole
/// number of blocks or the bytes are not aligned for `B` (see [`read_block`] for the
/// unaligned case).
pub fn blocks<B: Block>(bytes: &[u8]) -> Option<&[B]> {
    let size = size_of::<B>();
    let ptr = bytes.as_ptr().cast::<B>();
    if !bytes.len().is_multiple_of(size) || !ptr.is_aligned() {
        return None;
    }
    // SAFETY: `ptr` is aligned for `B` (checked) and non-null (it comes from a slice);
    // `len / size` blocks cover exactly the `len` borrowed bytes (length checked); `B`
    // is a sealed padding-free repr(C) type for which every bit pattern is valid, so
    // initialised bytes are valid blocks; the result borrows `bytes` immutably.
    Some(unsafe { std::slice::from_raw_parts(ptr, bytes.len() / size) })
}

/// Mutable version of [`blocks`]: `None` on a partial block or misalignment.
pub fn blocks_mut<B: Block>(bytes: &mut [u8]) -> Option<&mut [B]> {
    let size = size_of::<B>();
    let ptr = bytes.as_mut_ptr().cast::<B>();
    if !bytes.len().is_multiple_of(size) || !ptr.is_aligned() {
        return None;
    }
    // SAFETY: as in `blocks`; in addition, any block value written through the result
    // is a padding-free struct, so the bytes stay initialised, and the exclusive borrow
    // of `bytes` is handed on to the result.
    Some(unsafe { std::slice::from_raw_parts_mut(ptr, bytes.len() / size) })
}

/// The bytes of a block slice, as they would be stored in a GGUF file (little-endian
/// hosts only; see the module check in `quant`).
pub fn as_bytes<B: Block>(blocks: &[B]) -> &[u8] {
    // SAFETY: `B` has no padding (size asserts), so all `size_of_val(blocks)` bytes are
    // initialised; `u8` has alignment 1; the result borrows `blocks` immutably.
    unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), size_of_val(blocks)) }
}

/// Copies one block out of `bytes`, whatever their alignment, or `None` when
/// `bytes.len() != B::BYTES`.
pub fn read_block<B: Block>(bytes: &[u8]) -> Option<B> {
    if bytes.len() != size_of::<B>() {
        return None;
    }
    // SAFETY: `bytes` holds exactly `size_of::<B>()` initialised bytes (checked), the
    // read is unaligned-tolerant, and every bit pattern is a valid `B`.
    Some(unsafe { bytes.as_ptr().cast::<B>().read_unaligned() })
}

/// Dequantizes each block into its `BLOCK_LEN` outputs.
///
/// # Panics
/// If `dst.len() != src.len() * B::BLOCK_LEN`.
pub(crate) fn dequantize_blocks<B: Block>(src: &[B], dst: &mut [f32]) {
    assert_eq!(
        dst.len(),
        src.len() * B::BLOCK_LEN,
        "{}: {} blocks need {} outputs",
        B::TYPE,
        src.len(),
        src.len() * B::BLOCK_LEN
    );
    for (block, out) in src.iter().zip(dst.chunks_exact_mut(B::BLOCK_LEN)) {
        block.dequantize(out);
    }
}

/// Checks the lengths of a quantizer call and splits `src` into one chunk per block.
///
/// # Panics
/// If `src.len() != n_blocks * ty.block_len()`.
pub(crate) fn input_chunks<'a>(
    ty: GgmlType,
    src: &'a [f32],
    n_blocks: usize,
) -> std::slice::ChunksExact<'a, f32> {
    let block_len = ty.block_len();
    assert_eq!(
        src.len(),
        n_blocks * block_len,
        "{ty}: {n_blocks} blocks need {} inputs",
        n_blocks * block_len
    );
    src.chunks_exact(block_len)
}

macro_rules! assert_layout {
    ($block:ty, $ty:expr, $bytes:expr, $align:expr) => {
        const _: () = assert!(size_of::<$block>() == $bytes);
        const _: () = assert!(align_of::<$block>() == $align);
        const _: () = assert!($ty.block_bytes() == $bytes);
        impl sealed::Sealed for $block {}
    };
}

/// Q4_0: 32 weights `d * (q - 8)`, `q` in 0..16 (18 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: f16,
    /// Nibbles: byte `j` holds weight `j` (low) and weight `j + 16` (high).
    pub qs: [u8; QK / 2],
}
assert_layout!(BlockQ4_0, GgmlType::Q4_0, 18, 2);

/// Q4_1: 32 weights `d * q + m`, `q` in 0..16 (20 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: f16,
    /// Offset (the block minimum).
    pub m: f16,
    /// Nibbles: byte `j` holds weight `j` (low) and weight `j + 16` (high).
    pub qs: [u8; QK / 2],
}
assert_layout!(BlockQ4_1, GgmlType::Q4_1, 20, 2);

/// Q5_0: 32 weights `d * (q - 16)`, `q` in 0..32 (22 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ5_0 {
    /// Scale.
    pub d: f16,
    /// Fifth bits: bit `j` of this little-endian `u32` belongs to weight `j`.
    pub qh: [u8; 4],
    /// Low nibbles: byte `j` holds weight `j` (low) and weight `j + 16` (high).
    pub qs: [u8; QK / 2],
}
assert_layout!(BlockQ5_0, GgmlType::Q5_0, 22, 2);

/// Q5_1: 32 weights `d * q + m`, `q` in 0..32 (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ5_1 {
    /// Scale.
    pub d: f16,
    /// Offset (the block minimum).
    pub m: f16,
    /// Fifth bits: bit `j` of this little-endian `u32` belongs to weight `j`.
    pub qh: [u8; 4],
    /// Low nibbles: byte `j` holds weight `j` (low) and weight `j + 16` (high).
    pub qs: [u8; QK / 2],
}
assert_layout!(BlockQ5_1, GgmlType::Q5_1, 24, 2);

/// Q8_0: 32 weights `d * q` (34 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: f16,
    /// Quants, in weight order.
    pub qs: [i8; QK],
}
assert_layout!(BlockQ8_0, GgmlType::Q8_0, 34, 2);

/// Q8_1: 32 weights `d * q`, plus `s = d * sum(q)` (36 bytes). The activation format
/// paired with Q4_1/Q5_1 weights in dot products.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8_1 {
    /// Scale.
    pub d: f16,
    /// `d * sum(qs)`, rounded to f16.
    pub s: f16,
    /// Quants, in weight order.
    pub qs: [i8; QK],
}
assert_layout!(BlockQ8_1, GgmlType::Q8_1, 36, 2);

/// Each block's `d` and `s` as f32 (exact), for the tiles that read them as broadcast
/// operands rather than converting them per block and weight row
/// ([`crate::ops::qtile::tile2_q4_1_q8_1`](fn@crate::ops::qtile::tile2_q4_1_q8_1)).
/// shapes: x, out: (n,)
pub fn q8_1_scales_f32(x: &[BlockQ8_1], out: &mut [[f32; 2]]) {
    use half::slice::HalfFloatSliceExt;
    assert_eq!(x.len(), out.len(), "one pair per block");
    // Gathered and converted a chunk at a time: `half` converts a slice with F16C where
    // the CPU has it, but tests the CPU's features on every scalar conversion.
    const CHUNK: usize = 32;
    let (mut h, mut f) = ([half::f16::ZERO; 2 * CHUNK], [0f32; 2 * CHUNK]);
    for (o, b) in out.chunks_mut(CHUNK).zip(x.chunks(CHUNK)) {
        let n = 2 * b.len();
        for (h, b) in h.chunks_exact_mut(2).zip(b) {
            h.copy_from_slice(&[b.d, b.s]);
        }
        h[..n].convert_to_f32_slice(&mut f[..n]);
        for (o, f) in o.iter_mut().zip(f.chunks_exact(2)) {
            *o = [f[0], f[1]];
        }
    }
}

/// A Q8_0 activation block as the AVX-512 Q8_0 pair tile reads it
/// ([`crate::ops::qtile::tile2_q8_0_q8_0`](fn@crate::ops::qtile::tile2_q8_0_q8_0)): the
/// quants made unsigned (`q + 128`, which is `q ^ 0x80` as a byte) for `vpdpbusd`, and the
/// scale as f32 (exact). Prepared once per product, not once per pair of row groups.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8_0Unsigned {
    /// `q + 128` for each quant `q` of the block, in weight order.
    pub qs: [u8; QK],
    /// The block's scale.
    pub d: f32,
}

impl BlockQ8_0Unsigned {
    /// A block of zero quants (bytes 128) and scale 0.
    pub const ZERO: BlockQ8_0Unsigned = BlockQ8_0Unsigned {
        qs: [128; QK],
        d: 0.0,
    };
}

/// Each block of `x` as [`BlockQ8_0Unsigned`].
/// shapes: x, out: (n,)
pub fn q8_0_unsigned(x: &[BlockQ8_0], out: &mut [BlockQ8_0Unsigned]) {
    use half::slice::HalfFloatSliceExt;
    assert_eq!(x.len(), out.len(), "one unsigned block per block");
    // Scales gathered and converted a chunk at a time, as in `q8_1_scales_f32`.
    const CHUNK: usize = 32;
    let (mut h, mut f) = ([half::f16::ZERO; CHUNK], [0f32; CHUNK]);
    for (o, b) in out.chunks_mut(CHUNK).zip(x.chunks(CHUNK)) {
        for (h, b) in h.iter_mut().zip(b) {
            *h = b.d;
        }
        h[..b.len()].convert_to_f32_slice(&mut f[..b.len()]);
        for ((o, b), d) in o.iter_mut().zip(b).zip(f) {
            o.qs = b.qs.map(|q| (q as u8) ^ 0x80);
            o.d = d;
        }
    }
}

/// Q2_K: 256 weights in 16 groups of 16, `d * sc * q - dmin * m` with 4-bit `sc`/`m`
/// and 2-bit `q` (84 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ2K {
    /// Group `j`: scale in the low nibble, min in the high nibble.
    pub scales: [u8; QK_K / 16],
    /// 2-bit quants: in each 128-weight half, byte `l` holds weights `l`, `l + 32`,
    /// `l + 64`, `l + 96` at bit shifts 0, 2, 4, 6.
    pub qs: [u8; QK_K / 4],
    /// Super-block scale of the scales.
    pub d: f16,
    /// Super-block scale of the mins.
    pub dmin: f16,
}
assert_layout!(BlockQ2K, GgmlType::Q2K, 84, 2);

/// Q3_K: 256 weights in 16 groups of 16, `d * (sc - 32) * (q - 4)` with 6-bit `sc` and
/// 3-bit `q` (110 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ3K {
    /// High (third) bits: bit `k` of byte `l` belongs to weight `32 * k + l`; a set bit
    /// means `q >= 4`.
    pub hmask: [u8; QK_K / 8],
    /// Low two bits, packed as in [`BlockQ2K::qs`].
    pub qs: [u8; QK_K / 4],
    /// Sixteen 6-bit scales packed into 12 bytes (see `unpack_q3k_scales`).
    pub scales: [u8; 12],
    /// Super-block scale.
    pub d: f16,
}
assert_layout!(BlockQ3K, GgmlType::Q3K, 110, 2);

/// Q4_K: 256 weights in 8 groups of 32, `d * sc * q - dmin * m` with 6-bit `sc`/`m` and
/// 4-bit `q` (144 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4K {
    /// Super-block scale of the scales.
    pub d: f16,
    /// Super-block scale of the mins.
    pub dmin: f16,
    /// Eight 6-bit scales and eight 6-bit mins packed into 12 bytes (see
    /// `get_scale_min_k4`).
    pub scales: [u8; 12],
    /// Nibbles: in each 64-weight chunk `c`, byte `32 * c + l` holds weight `64 * c + l`
    /// (low) and `64 * c + 32 + l` (high).
    pub qs: [u8; QK_K / 2],
}
assert_layout!(BlockQ4K, GgmlType::Q4K, 144, 2);

/// Q5_K: as Q4_K with a fifth bit per weight (176 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ5K {
    /// Super-block scale of the scales.
    pub d: f16,
    /// Super-block scale of the mins.
    pub dmin: f16,
    /// Packed 6-bit scales and mins, as in [`BlockQ4K::scales`].
    pub scales: [u8; 12],
    /// Fifth bits: bit `2c` (low half) and `2c + 1` (high half) of byte `l` belong to
    /// weights `64 * c + l` and `64 * c + 32 + l`.
    pub qh: [u8; QK_K / 8],
    /// Low nibbles, packed as in [`BlockQ4K::qs`].
    pub qs: [u8; QK_K / 2],
}
assert_layout!(BlockQ5K, GgmlType::Q5K, 176, 2);

/// Q6_K: 256 weights in 16 groups of 16, `d * sc * (q - 32)` with 8-bit signed `sc` and
/// 6-bit `q` (210 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ6K {
    /// Low nibbles: in each 128-weight half, byte `l` (l < 32) holds weights `l` (low)
    /// and `l + 64` (high); byte `l + 32` holds `l + 32` and `l + 96`.
    pub ql: [u8; QK_K / 2],
    /// High two bits: in each half, byte `l` holds those of weights `l`, `l + 32`,
    /// `l + 64`, `l + 96` at shifts 0, 2, 4, 6.
    pub qh: [u8; QK_K / 4],
    /// Per-group scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale.
    pub d: f16,
}
assert_layout!(BlockQ6K, GgmlType::Q6K, 210, 2);

/// Q8_K: 256 weights `d * q` with an f32 scale and per-16 sums; the activation format
/// of the k-quant dot products (292 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8K {
    /// Scale (f32, unlike the other blocks).
    pub d: f32,
    /// Quants, in weight order.
    pub qs: [i8; QK_K],
    /// `bsums[j]` = sum of `qs[16 * j .. 16 * j + 16]`.
    pub bsums: [i16; QK_K / 16],
}
assert_layout!(BlockQ8K, GgmlType::Q8K, 292, 4);

/// Each Q8_K block's sums of its eight runs of 32 quants (`bsums[2k] + bsums[2k + 1]`,
/// at most 32 * 128 in size, so exact in i16), for the tiles that weigh them by a
/// Q4_K sub-block's min as broadcast operands
/// ([`crate::ops::qtile::tile2_q4k_q8k`](fn@crate::ops::qtile::tile2_q4k_q8k)): made
/// once per product, not once per block and pair of row groups.
/// shapes: x, out: (n,)
pub fn q8k_sums32(x: &[BlockQ8K], out: &mut [[i16; 8]]) {
    assert_eq!(x.len(), out.len(), "one set of sums per block");
    for (o, b) in out.iter_mut().zip(x) {
        *o = std::array::from_fn(|k| b.bsums[2 * k] + b.bsums[2 * k + 1]);
    }
}
