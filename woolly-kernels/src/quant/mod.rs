//! Tensor element types as ggml numbers them in GGUF files, their block layouts, and the
//! scalar reference dequantizers and quantizers.
//!
//! Layouts follow ggml (`ggml/src/ggml-common.h`); every block struct is `#[repr(C)]`
//! with a compile-time size assert, so a `&[u8]` of a tensor's data can be viewed as a
//! slice of blocks ([`blocks()`]).
//!
//! The references reproduce ggml's `dequantize_row_*` and `quantize_row_*_ref`
//! (`ggml/src/ggml-quants.c`) operation for operation, so dequantized values match
//! llama.cpp's bit for bit; they are the oracle every fast kernel is tested against.
//!
//! - [`blocks`](mod@blocks): the block structs, the [`Block`] trait, byte views.
//! - [`search`]: `nearest_int`, the k-quant scale searches and the scale packings.
//! - [`legacy`]: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1.
//! - [`kquants`]: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K.
//! - [`float`]: F32, F16, BF16.
//! - [`dequantize_row`] / [`quantize_row`]: one byte-level entry point each, by type.

pub mod blocks;
pub mod float;
pub mod interleaved;
pub mod interleaved_k;
pub mod kquants;
pub mod legacy;
pub mod search;

pub use blocks::{
    Block, BlockQ2K, BlockQ3K, BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ5_1, BlockQ5K,
    BlockQ6K, BlockQ8_0, BlockQ8_0Unsigned, BlockQ8_1, BlockQ8K, QK, as_bytes, blocks, blocks_mut,
    q8_0_unsigned, q8_1_scales_f32, q8k_sums32, read_block,
};
pub use kquants::{
    dequantize_row_q2k, dequantize_row_q3k, dequantize_row_q4k, dequantize_row_q5k,
    dequantize_row_q6k, dequantize_row_q8k, quantize_row_q2k, quantize_row_q3k, quantize_row_q4k,
    quantize_row_q5k, quantize_row_q6k, quantize_row_q8k,
};
pub use legacy::{
    dequantize_row_q4_0, dequantize_row_q4_1, dequantize_row_q5_0, dequantize_row_q5_1,
    dequantize_row_q8_0, dequantize_row_q8_1, quantize_activations_q8_0, quantize_activations_q8_1,
    quantize_row_q4_0, quantize_row_q4_1, quantize_row_q5_0, quantize_row_q5_1, quantize_row_q8_0,
    quantize_row_q8_1,
};
pub use search::get_scale_min_k4;

// Block structs are read from file bytes in place; ggml files are little-endian.
#[cfg(target_endian = "big")]
compile_error!(
    "woolly-kernels reads GGUF tensor bytes in place and supports little-endian targets only"
);

/// Number of weights in one k-quant super-block (Q2_K..Q8_K).
pub const QK_K: usize = 256;

/// The element type of a GGUF tensor, numbered as `enum ggml_type` in ggml.
///
/// Only the types Woolly knows how to read are listed; any other id read from a file is
/// an error at load, never a guess.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    /// IEEE single precision, 4 bytes a weight.
    F32,
    /// IEEE half precision, 2 bytes a weight.
    F16,
    /// 32 weights: f16 scale, 4-bit quants ([`BlockQ4_0`]).
    Q4_0,
    /// 32 weights: f16 scale and min, 4-bit quants ([`BlockQ4_1`]).
    Q4_1,
    /// 32 weights: f16 scale, 5-bit quants ([`BlockQ5_0`]).
    Q5_0,
    /// 32 weights: f16 scale and min, 5-bit quants ([`BlockQ5_1`]).
    Q5_1,
    /// 32 weights: f16 scale, 8-bit quants ([`BlockQ8_0`]).
    Q8_0,
    /// 32 weights: f16 scale and scaled sum, 8-bit quants ([`BlockQ8_1`]).
    Q8_1,
    /// 256 weights: 2-bit quants, 4-bit scales and mins ([`BlockQ2K`]).
    Q2K,
    /// 256 weights: 3-bit quants, 6-bit scales ([`BlockQ3K`]).
    Q3K,
    /// 256 weights: 4-bit quants, 6-bit scales and mins ([`BlockQ4K`]).
    Q4K,
    /// 256 weights: 5-bit quants, 6-bit scales and mins ([`BlockQ5K`]).
    Q5K,
    /// 256 weights: 6-bit quants, 8-bit scales ([`BlockQ6K`]).
    Q6K,
    /// 256 weights: f32 scale, 8-bit quants and 16-weight sums ([`BlockQ8K`]).
    Q8K,
    /// bfloat16 (the top half of an f32), 2 bytes a weight.
    BF16,
}

impl GgmlType {
    /// Every supported type, in ggml id order.
    pub const ALL: [GgmlType; 15] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
        GgmlType::Q8K,
        GgmlType::BF16,
    ];

    /// The type for a ggml type id, or `None` for ids Woolly does not support
    /// (including ids ggml has retired, such as 4 and 5).
    pub fn from_id(id: u32) -> Option<GgmlType> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            9 => GgmlType::Q8_1,
            10 => GgmlType::Q2K,
            11 => GgmlType::Q3K,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            15 => GgmlType::Q8K,
            30 => GgmlType::BF16,
            _ => return None,
        })
    }

    /// The ggml type id.
    pub const fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q8_1 => 9,
            GgmlType::Q2K => 10,
            GgmlType::Q3K => 11,
            GgmlType::Q4K => 12,
            GgmlType::Q5K => 13,
            GgmlType::Q6K => 14,
            GgmlType::Q8K => 15,
            GgmlType::BF16 => 30,
        }
    }

    /// The name ggml and llama.cpp print (`"q4_K"`, `"f16"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "f32",
            GgmlType::F16 => "f16",
            GgmlType::Q4_0 => "q4_0",
            GgmlType::Q4_1 => "q4_1",
            GgmlType::Q5_0 => "q5_0",
            GgmlType::Q5_1 => "q5_1",
            GgmlType::Q8_0 => "q8_0",
            GgmlType::Q8_1 => "q8_1",
            GgmlType::Q2K => "q2_K",
            GgmlType::Q3K => "q3_K",
            GgmlType::Q4K => "q4_K",
            GgmlType::Q5K => "q5_K",
            GgmlType::Q6K => "q6_K",
            GgmlType::Q8K => "q8_K",
            GgmlType::BF16 => "bf16",
        }
    }

    /// Number of elements in one block (1 for the float types).
    pub const fn block_len(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0
            | GgmlType::Q4_1
            | GgmlType::Q5_0
            | GgmlType::Q5_1
            | GgmlType::Q8_0
            | GgmlType::Q8_1 => 32,
            GgmlType::Q2K
            | GgmlType::Q3K
            | GgmlType::Q4K
            | GgmlType::Q5K
            | GgmlType::Q6K
            | GgmlType::Q8K => QK_K,
        }
    }

    /// Number of bytes in one block.
    pub const fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q5_0 => 22,
            GgmlType::Q5_1 => 24,
            GgmlType::Q8_0 => 34,
            GgmlType::Q8_1 => 36,
            GgmlType::Q2K => 84,
            GgmlType::Q3K => 110,
            GgmlType::Q4K => 144,
            GgmlType::Q5K => 176,
            GgmlType::Q6K => 210,
            GgmlType::Q8K => 292,
        }
    }

    /// Bytes taken by a row of `n` elements, or `None` when `n` is not a whole number
    /// of blocks or the size overflows.
    pub fn row_bytes(self, n: u64) -> Option<u64> {
        let block_len = self.block_len() as u64;
        if !n.is_multiple_of(block_len) {
            return None;
        }
        (n / block_len).checked_mul(self.block_bytes() as u64)
    }
}

/// Why a byte-level (de)quantization was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantError {
    /// The element count is not a whole number of blocks of the type.
    PartialBlock {
        /// The tensor type.
        ty: GgmlType,
        /// The element count asked for.
        n: usize,
    },
    /// The quantized buffer does not hold exactly `n` elements of the type.
    ByteLength {
        /// The tensor type.
        ty: GgmlType,
        /// The element count.
        n: usize,
        /// The bytes `n` elements take.
        expected: usize,
        /// The bytes given.
        actual: usize,
    },
}

impl std::fmt::Display for QuantError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            QuantError::PartialBlock { ty, n } => {
                write!(
                    f,
                    "{n} elements is not a whole number of {ty} blocks of {}",
                    ty.block_len()
                )
            }
            QuantError::ByteLength {
                ty,
                n,
                expected,
                actual,
            } => {
                write!(f, "{n} {ty} elements take {expected} bytes, got {actual}")
            }
        }
    }
}

impl std::error::Error for QuantError {}

/// Checks that `bytes` holds exactly `n` elements of `ty`.
fn check_row(ty: GgmlType, n: usize, bytes: usize) -> Result<(), QuantError> {
    let expected = ty
        .row_bytes(n as u64)
        .ok_or(QuantError::PartialBlock { ty, n })?;
    if expected != bytes as u64 {
        let expected = usize::try_from(expected).unwrap_or(usize::MAX);
        return Err(QuantError::ByteLength {
            ty,
            n,
            expected,
            actual: bytes,
        });
    }
    Ok(())
}

/// Dequantizes blocks stored in `src` (any alignment) into `dst`.
fn dequantize_bytes<B: Block>(src: &[u8], dst: &mut [f32]) {
    match blocks::<B>(src) {
        Some(blocks) => blocks::dequantize_blocks(blocks, dst),
        None => {
            for (bytes, out) in src
                .chunks_exact(B::BYTES)
                .zip(dst.chunks_exact_mut(B::BLOCK_LEN))
            {
                read_block::<B>(bytes)
                    .expect("chunks_exact yields whole blocks")
                    .dequantize(out);
            }
        }
    }
}

/// Dequantizes one row of `dst.len()` elements of type `ty` from its bytes `src`, as
/// stored in a GGUF file (little-endian; any alignment).
///
/// Never panics on bad sizes: it refuses, with an error, a `dst.len()` that is not a
/// whole number of blocks and a `src` that is not exactly `ty.row_bytes(dst.len())`
/// bytes. Any bytes are accepted otherwise; inf or NaN scales give inf or NaN weights.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    check_row(ty, dst.len(), src.len())?;
    match ty {
        GgmlType::F32 => float::decode_le(src, dst, f32::from_le_bytes),
        GgmlType::F16 => float::decode_le(src, dst, |b| half::f16::from_le_bytes(b).to_f32()),
        GgmlType::BF16 => float::decode_le(src, dst, |b| {
            float::bf16_to_fp32(half::bf16::from_le_bytes(b))
        }),
        GgmlType::Q4_0 => dequantize_bytes::<BlockQ4_0>(src, dst),
        GgmlType::Q4_1 => dequantize_bytes::<BlockQ4_1>(src, dst),
        GgmlType::Q5_0 => dequantize_bytes::<BlockQ5_0>(src, dst),
        GgmlType::Q5_1 => dequantize_bytes::<BlockQ5_1>(src, dst),
        GgmlType::Q8_0 => dequantize_bytes::<BlockQ8_0>(src, dst),
        GgmlType::Q8_1 => dequantize_bytes::<BlockQ8_1>(src, dst),
        GgmlType::Q2K => dequantize_bytes::<BlockQ2K>(src, dst),
        GgmlType::Q3K => dequantize_bytes::<BlockQ3K>(src, dst),
        GgmlType::Q4K => dequantize_bytes::<BlockQ4K>(src, dst),
        GgmlType::Q5K => dequantize_bytes::<BlockQ5K>(src, dst),
        GgmlType::Q6K => dequantize_bytes::<BlockQ6K>(src, dst),
        GgmlType::Q8K => dequantize_bytes::<BlockQ8K>(src, dst),
    }
    Ok(())
}

/// Quantizes `src` into blocks stored in `dst` (any alignment) with `quantize`.
fn quantize_bytes<B: Block>(src: &[f32], dst: &mut [u8], quantize: fn(&[f32], &mut [B])) {
    match blocks_mut::<B>(dst) {
        Some(blocks) => quantize(src, blocks),
        None => {
            for (x, bytes) in src
                .chunks_exact(B::BLOCK_LEN)
                .zip(dst.chunks_exact_mut(B::BYTES))
            {
                let mut block = [B::ZERO];
                quantize(x, &mut block);
                bytes.copy_from_slice(as_bytes(&block));
            }
        }
    }
}

/// Quantizes one row `src` to type `ty` with ggml's reference quantizer, writing the
/// bytes a GGUF file would hold into `dst` (any alignment).
///
/// Every type has one. Refuses with an error (never a panic) a `src.len()` that is not
/// a whole number of blocks and a `dst` that is not exactly `ty.row_bytes(src.len())`
/// bytes.
pub fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check_row(ty, src.len(), dst.len())?;
    match ty {
        GgmlType::F32 => float::encode_le(src, dst, f32::to_le_bytes),
        GgmlType::F16 => float::encode_le(src, dst, |x| half::f16::from_f32(x).to_le_bytes()),
        GgmlType::BF16 => float::encode_le(src, dst, |x| float::fp32_to_bf16(x).to_le_bytes()),
        GgmlType::Q4_0 => quantize_bytes(src, dst, quantize_row_q4_0),
        GgmlType::Q4_1 => quantize_bytes(src, dst, quantize_row_q4_1),
        GgmlType::Q5_0 => quantize_bytes(src, dst, quantize_row_q5_0),
        GgmlType::Q5_1 => quantize_bytes(src, dst, quantize_row_q5_1),
        GgmlType::Q8_0 => quantize_bytes(src, dst, quantize_row_q8_0),
        GgmlType::Q8_1 => quantize_bytes(src, dst, quantize_row_q8_1),
        GgmlType::Q2K => quantize_bytes(src, dst, quantize_row_q2k),
        GgmlType::Q3K => quantize_bytes(src, dst, quantize_row_q3k),
        GgmlType::Q4K => quantize_bytes(src, dst, quantize_row_q4k),
        GgmlType::Q5K => quantize_bytes(src, dst, quantize_row_q5k),
        GgmlType::Q6K => quantize_bytes(src, dst, quantize_row_q6k),
        GgmlType::Q8K => quantize_bytes(src, dst, quantize_row_q8k),
    }
    Ok(())
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_unsigned_blocks_are_each_quant_plus_128_and_the_scale() {
        crate::testing::cases("q8_0_unsigned", 64, 4, |size, seed| {
            let mut rng = crate::testing::TestRng::new(seed);
            let n = [1, 31, 32, 33 + rng.range(0, 200)][size];
            let x = rng.q8_0_act(n);
            let mut out = vec![BlockQ8_0Unsigned::ZERO; n];
            q8_0_unsigned(&x, &mut out);
            for (i, (o, b)) in out.iter().zip(&x).enumerate() {
                let qs: Vec<u8> = b.qs.iter().map(|&q| (i16::from(q) + 128) as u8).collect();
                if o.qs[..] != qs[..] || o.d.to_bits() != f32::from(b.d).to_bits() {
                    return Err(format!("block {i} of {n}: {o:?} against {b:?}"));
                }
            }
            Ok(())
        });
    }

    #[test]
    fn q8k_sums32_add_the_quants_of_each_run_of_32() {
        crate::testing::cases("q8k_sums32", 64, 4, |size, seed| {
            let mut rng = crate::testing::TestRng::new(seed);
            let n = [1, 2, 7, 8 + rng.range(0, 40)][size];
            let x = rng.q8k(n);
            let mut out = vec![[0i16; 8]; n];
            q8k_sums32(&x, &mut out);
            for (i, (o, b)) in out.iter().zip(&x).enumerate() {
                let want: Vec<i16> =
                    b.qs.chunks_exact(32)
                        .map(|c| c.iter().map(|&q| i16::from(q)).sum())
                        .collect();
                if o[..] != want[..] {
                    return Err(format!("block {i} of {n}: {o:?} against {want:?}"));
                }
            }
            Ok(())
        });
    }

    #[test]
    fn q8_1_scales_are_each_blocks_d_and_s() {
        crate::testing::cases("q8_1_scales_f32", 64, 4, |size, seed| {
            let mut rng = crate::testing::TestRng::new(seed);
            let n = [1, 31, 32, 33 + rng.range(0, 200)][size];
            let x = rng.q8_1_act(n);
            let mut out = vec![[f32::NAN; 2]; n];
            q8_1_scales_f32(&x, &mut out);
            for (i, (o, b)) in out.iter().zip(&x).enumerate() {
                let want = [f32::from(b.d), f32::from(b.s)];
                if o.map(f32::to_bits) != want.map(f32::to_bits) {
                    return Err(format!("block {i} of {n}: {o:?} against {want:?}"));
                }
            }
            Ok(())
        });
    }

    #[test]
    fn ids_round_trip_and_unknown_ids_are_refused() {
        for ty in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(ty.id()), Some(ty));
        }
        for id in [4, 5, 16, 29, 31, 1000, u32::MAX] {
            assert_eq!(GgmlType::from_id(id), None, "id {id}");
        }
    }

    #[test]
    fn row_bytes_refuses_partial_blocks_and_overflow() {
        assert_eq!(GgmlType::Q4K.row_bytes(512), Some(288));
        assert_eq!(GgmlType::Q4K.row_bytes(100), None);
        assert_eq!(GgmlType::F32.row_bytes(u64::MAX / 2), None);
        assert_eq!(GgmlType::Q8_0.row_bytes(64), Some(68));
    }
}
