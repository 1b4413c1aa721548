//! The byte-level entry points and block views: layouts, length checks, alignment,
//! and bytes that hold inf/NaN scales.

use half::f16;
use woolly_kernels::GgmlType;
use woolly_kernels::quant::{
    Block, BlockQ2K, BlockQ3K, BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ5_1, BlockQ5K,
    BlockQ6K, BlockQ8_0, BlockQ8_1, BlockQ8K, QuantError, as_bytes, blocks, blocks_mut,
    dequantize_row, dequantize_row_q4k, quantize_row, quantize_row_q4k, read_block,
};

/// Checks a block type's size, alignment and trait constants against ggml's figures.
fn check_layout<B: Block>(bytes: usize, align: usize) {
    assert_eq!(size_of::<B>(), bytes, "{}", B::TYPE);
    assert_eq!(align_of::<B>(), align, "{}", B::TYPE);
    assert_eq!(B::BYTES, B::TYPE.block_bytes(), "{}", B::TYPE);
    assert_eq!(B::BLOCK_LEN, B::TYPE.block_len(), "{}", B::TYPE);
    assert_eq!(
        as_bytes(&[B::ZERO]),
        vec![0u8; bytes],
        "{}: ZERO is all zero bytes",
        B::TYPE
    );
}

#[test]
fn block_layouts_match_ggml() {
    check_layout::<BlockQ4_0>(18, 2);
    check_layout::<BlockQ4_1>(20, 2);
    check_layout::<BlockQ5_0>(22, 2);
    check_layout::<BlockQ5_1>(24, 2);
    check_layout::<BlockQ8_0>(34, 2);
    check_layout::<BlockQ8_1>(36, 2);
    check_layout::<BlockQ2K>(84, 2);
    check_layout::<BlockQ3K>(110, 2);
    check_layout::<BlockQ4K>(144, 2);
    check_layout::<BlockQ5K>(176, 2);
    check_layout::<BlockQ6K>(210, 2);
    check_layout::<BlockQ8K>(292, 4);
}

#[test]
fn field_offsets_match_ggml() {
    // The f16 scales sit at the end of Q2_K, Q3_K and Q6_K, at the start elsewhere.
    assert_eq!(std::mem::offset_of!(BlockQ2K, d), 80);
    assert_eq!(std::mem::offset_of!(BlockQ3K, scales), 96);
    assert_eq!(std::mem::offset_of!(BlockQ3K, d), 108);
    assert_eq!(std::mem::offset_of!(BlockQ4K, scales), 4);
    assert_eq!(std::mem::offset_of!(BlockQ4K, qs), 16);
    assert_eq!(std::mem::offset_of!(BlockQ5K, qh), 16);
    assert_eq!(std::mem::offset_of!(BlockQ5K, qs), 48);
    assert_eq!(std::mem::offset_of!(BlockQ6K, scales), 192);
    assert_eq!(std::mem::offset_of!(BlockQ6K, d), 208);
    assert_eq!(std::mem::offset_of!(BlockQ8K, bsums), 260);
    assert_eq!(std::mem::offset_of!(BlockQ5_1, qh), 4);
}

#[test]
fn dequantize_row_rejects_bad_lengths() {
    for ty in GgmlType::ALL {
        let n = 2 * ty.block_len();
        let bytes = 2 * ty.block_bytes();
        let mut dst = vec![0.0f32; n];
        assert_eq!(
            dequantize_row(ty, &vec![0u8; bytes], &mut dst),
            Ok(()),
            "{ty}"
        );
        for wrong in [0, 1, bytes - 1, bytes + 1, 3 * ty.block_bytes()] {
            assert_eq!(
                dequantize_row(ty, &vec![0u8; wrong], &mut dst),
                Err(QuantError::ByteLength {
                    ty,
                    n,
                    expected: bytes,
                    actual: wrong
                }),
                "{ty}, {wrong} bytes"
            );
        }
        if ty.block_len() > 1 {
            let mut partial = vec![0.0f32; n + 1];
            assert_eq!(
                dequantize_row(ty, &vec![0u8; bytes], &mut partial),
                Err(QuantError::PartialBlock { ty, n: n + 1 }),
                "{ty}"
            );
        }
        // Same checks on the quantizing side.
        let mut q = vec![0u8; bytes + 1];
        assert!(quantize_row(ty, &dst, &mut q).is_err(), "{ty}");
        assert!(quantize_row(ty, &dst, &mut q[..bytes]).is_ok(), "{ty}");
        let msg = dequantize_row(ty, &[0u8; 3], &mut dst)
            .unwrap_err()
            .to_string();
        assert!(msg.contains(ty.name()), "{msg}");
    }
    // An empty row is fine.
    assert_eq!(dequantize_row(GgmlType::Q4K, &[], &mut []), Ok(()));
}

/// The index in `buf` of the first address aligned to `align`.
fn aligned_start(buf: &[u8], align: usize) -> usize {
    (align - buf.as_ptr() as usize % align) % align
}

#[test]
fn views_check_length_and_alignment() {
    let mut buf = vec![0u8; 2 * 144 + 8];
    let start = aligned_start(&buf, 4);
    let even = &buf[start..start + 2 * 144];
    let odd = &buf[start + 1..start + 1 + 2 * 144];
    assert_eq!(blocks::<BlockQ4K>(even).map(<[_]>::len), Some(2));
    assert!(
        blocks::<BlockQ4K>(odd).is_none(),
        "misaligned bytes give no view"
    );
    assert!(
        blocks::<BlockQ4K>(&even[..2 * 144 - 1]).is_none(),
        "partial block gives no view"
    );
    assert_eq!(read_block::<BlockQ4K>(&odd[..144]), Some(BlockQ4K::ZERO));
    assert_eq!(read_block::<BlockQ4K>(&odd[..143]), None);
    let view = blocks_mut::<BlockQ4K>(&mut buf[start..start + 2 * 144]).expect("aligned");
    view[1].d = f16::ONE;
    assert_eq!(&buf[start + 144..start + 146], &f16::ONE.to_le_bytes());
}

/// Quantizes a smooth row, stores it at an odd address, and checks that the unaligned
/// path gives exactly what the aligned path gives.
#[test]
fn unaligned_bytes_dequantize_like_aligned_ones() {
    let x: Vec<f32> = (0..512)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
        .collect();
    for ty in GgmlType::ALL {
        let len = ty.row_bytes(512).unwrap() as usize;
        let mut buf = vec![0u8; len + 8];
        let aligned = aligned_start(&buf, 8);
        let odd = aligned + 1;
        quantize_row(ty, &x, &mut buf[odd..odd + len]).unwrap();
        let mut want_bytes = vec![0u8; len];
        want_bytes.copy_from_slice(&buf[odd..odd + len]);
        let mut got_odd = vec![0.0f32; 512];
        dequantize_row(ty, &buf[odd..odd + len], &mut got_odd).unwrap();
        buf.copy_within(odd..odd + len, aligned);
        assert_eq!(&buf[aligned..aligned + len], &want_bytes[..]);
        let mut got_aligned = vec![0.0f32; 512];
        dequantize_row(ty, &buf[aligned..aligned + len], &mut got_aligned).unwrap();
        assert_eq!(got_odd, got_aligned, "{ty}");
        // And quantizing into aligned bytes writes the same bytes as into odd ones.
        quantize_row(ty, &x, &mut buf[aligned..aligned + len]).unwrap();
        assert_eq!(&buf[aligned..aligned + len], &want_bytes[..], "{ty}");
    }
}

#[test]
fn typed_and_byte_level_entry_points_agree() {
    let x: Vec<f32> = (0..768)
        .map(|i| ((i * 13 % 29) as f32 - 14.0) * 0.37)
        .collect();
    let mut blocks_q4k = vec![BlockQ4K::ZERO; 3];
    quantize_row_q4k(&x, &mut blocks_q4k);
    let mut bytes = vec![0u8; 3 * 144];
    quantize_row(GgmlType::Q4K, &x, &mut bytes).unwrap();
    assert_eq!(as_bytes(&blocks_q4k), &bytes[..]);
    let mut typed = vec![0.0f32; 768];
    dequantize_row_q4k(&blocks_q4k, &mut typed);
    let mut untyped = vec![0.0f32; 768];
    dequantize_row(GgmlType::Q4K, &bytes, &mut untyped).unwrap();
    assert_eq!(typed, untyped);
}

/// Bytes with inf and NaN scales (f16 0x7C00, 0xFC00, 0x7E00, 0xFFFF) and every other
/// extreme pattern dequantize without panicking; inf/NaN come out where IEEE says.
#[test]
fn inf_and_nan_scales_do_not_panic() {
    for ty in GgmlType::ALL {
        let len = 2 * ty.block_bytes();
        let mut dst = vec![0.0f32; 2 * ty.block_len()];
        for pattern in [
            [0x00, 0x7C],
            [0x00, 0xFC],
            [0x00, 0x7E],
            [0xFF, 0xFF],
            [0xFF, 0x7F],
            [0x01, 0x00],
        ] {
            let bytes: Vec<u8> = pattern.iter().copied().cycle().take(len).collect();
            dequantize_row(ty, &bytes, &mut dst).unwrap();
            for odd in 0..2 {
                let mut shifted = vec![0u8; odd];
                shifted.extend_from_slice(&bytes);
                dequantize_row(ty, &shifted[odd..], &mut dst).unwrap();
            }
        }
    }
    // Q8_0 with d = +inf: non-zero quants give +-inf, a zero quant gives NaN (0 * inf).
    let mut b = BlockQ8_0::ZERO;
    b.d = f16::INFINITY;
    b.qs[0] = 3;
    b.qs[1] = -1;
    let mut y = [0.0f32; 32];
    dequantize_row(GgmlType::Q8_0, as_bytes(&[b]), &mut y).unwrap();
    assert_eq!((y[0], y[1]), (f32::INFINITY, f32::NEG_INFINITY));
    assert!(y[2].is_nan());
    // Q4_K with a NaN dmin: every weight is NaN, still no panic.
    let mut k = BlockQ4K::ZERO;
    k.d = f16::ONE;
    k.dmin = f16::NAN;
    let mut y = [0.0f32; 256];
    dequantize_row(GgmlType::Q4K, as_bytes(&[k]), &mut y).unwrap();
    assert!(y.iter().all(|v| v.is_nan()));
}

/// Non-finite and all-zero inputs quantize without panicking; all-zero rows come back
/// as zeros.
#[test]
fn quantizers_survive_edge_inputs() {
    for ty in GgmlType::ALL {
        let n = 2 * ty.block_len().max(32);
        let mut q = vec![0u8; ty.row_bytes(n as u64).unwrap() as usize];
        let mut y = vec![1.0f32; n];
        quantize_row(ty, &vec![0.0; n], &mut q).unwrap();
        dequantize_row(ty, &q, &mut y).unwrap();
        assert!(
            y.iter().all(|&v| v == 0.0),
            "{ty}: zeros do not come back as zeros"
        );
        for special in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, 1e-40] {
            let x: Vec<f32> = (0..n)
                .map(|i| if i % 7 == 3 { special } else { i as f32 * 0.1 })
                .collect();
            quantize_row(ty, &x, &mut q).unwrap();
            dequantize_row(ty, &q, &mut y).unwrap();
            quantize_row(ty, &vec![special; n], &mut q).unwrap();
            dequantize_row(ty, &q, &mut y).unwrap();
        }
    }
}

#[test]
fn f16_and_bf16_bytes_decode_little_endian() {
    let mut y = [0.0f32; 2];
    dequantize_row(GgmlType::F16, &[0x00, 0x3C, 0x00, 0xC0], &mut y).unwrap();
    assert_eq!(y, [1.0, -2.0]);
    dequantize_row(GgmlType::BF16, &[0x80, 0x3F, 0x49, 0x40], &mut y).unwrap();
    assert_eq!(y, [1.0, f32::from_bits(0x4049_0000)]);
    dequantize_row(GgmlType::F32, &[0, 0, 0x80, 0x3F, 0, 0, 0, 0xC0], &mut y).unwrap();
    assert_eq!(y, [1.0, -2.0]);
    let mut q = [0u8; 4];
    quantize_row(GgmlType::F16, &[1.0, -2.0], &mut q).unwrap();
    assert_eq!(q, [0x00, 0x3C, 0x00, 0xC0]);
}
