//! Quantize-then-dequantize error bounds, on ggml's synthetic signal and on random data.
//!
//! Two kinds of bound:
//!
//! 1. ggml's own test (`tests/test-quantize-fns.cpp`): the signal `0.1 + 2 cos(i)` over
//!    4096 weights, the metric `sqrt(sum (x - y)^2) / n`, and ggml's thresholds
//!    (`MAX_QUANTIZATION_TOTAL_ERROR` 0.002, 2-bit 0.0075, 3-bit 0.0040). Same data,
//!    same metric, same limits: our quantizers must pass ggml's test.
//!
//! 2. Property tests on random rows (1 to 8 blocks, each block with its own amplitude in
//!    0.5..100 and offset in -1..1 times the amplitude, uniform values: never all zeros).
//!    The bound is on each block's RMS error relative to the block's largest magnitude
//!    `A`. A uniform quantizer with step `s` has RMS error about `s / sqrt(12)`; the
//!    step is `A / 127` for the 8-bit formats, `A / 8` (Q4_0), `A / 16` (Q5_0),
//!    `range / 15` or `range / 31` with `range <= 2A` (Q4_1, Q5_1, Q4_K, Q5_K), `A / 32`
//!    (Q6_K), `~A / 4` (Q3_K) and `range / 3` (Q2_K). The limits in `rel_rms_bound`
//!    are those theoretical values with a margin for small blocks (32 samples make the
//!    RMS itself noisy), for the f16 rounding of scales, and for the clamping at the
//!    ends of the symmetric formats; measured worst cases sit well below them (noted
//!    beside each). Amplitudes from 0.5 up keep every f16 super-scale a normal number;
//!    much smaller ones lose precision to f16 subnormals (in ggml as well).

use proptest::prelude::*;
use woolly_kernels::GgmlType;
use woolly_kernels::quant::{
    Block, BlockQ8_1, BlockQ8K, as_bytes, dequantize_row, quantize_row, quantize_row_q8_1,
    quantize_row_q8k,
};

/// Quantizes then dequantizes `x` through the byte-level entry points.
fn round_trip(ty: GgmlType, x: &[f32]) -> Vec<f32> {
    let mut q = vec![0u8; ty.row_bytes(x.len() as u64).expect("whole blocks") as usize];
    quantize_row(ty, x, &mut q).expect("sizes match");
    let mut y = vec![0.0f32; x.len()];
    dequantize_row(ty, &q, &mut y).expect("sizes match");
    y
}

/// ggml's `array_rmse`: `sqrt(sum of squared differences) / n` (sic: not an RMS).
fn ggml_total_error(x: &[f32], y: &[f32]) -> f32 {
    let sum: f64 = x.iter().zip(y).map(|(a, b)| f64::from(a - b).powi(2)).sum();
    sum.sqrt() as f32 / x.len() as f32
}

/// ggml's limit for each type in test-quantize-fns.cpp.
fn ggml_limit(ty: GgmlType) -> f32 {
    match ty {
        GgmlType::Q2K => 0.0075,
        GgmlType::Q3K => 0.0040,
        _ => 0.002,
    }
}

#[test]
fn ggml_synthetic_signal_within_ggml_limits() {
    // generate_data(0.0, 4096, ...) in test-quantize-fns.cpp.
    let x: Vec<f32> = (0..4096).map(|i| 0.1 + 2.0 * (i as f32).cos()).collect();
    for ty in GgmlType::ALL {
        let err = ggml_total_error(&x, &round_trip(ty, &x));
        assert!(
            err < ggml_limit(ty),
            "{ty}: total error {err} >= {}",
            ggml_limit(ty)
        );
    }
}

/// Limit on a block's RMS error divided by its largest magnitude (see the module doc).
fn rel_rms_bound(ty: GgmlType) -> f64 {
    match ty {
        GgmlType::F32 => 0.0,
        GgmlType::F16 => 5e-4,  // 2^-11 relative rounding
        GgmlType::BF16 => 4e-3, // 2^-8 relative rounding
        GgmlType::Q8_0 | GgmlType::Q8_1 | GgmlType::Q8K => 4e-3, // theory 0.0023, seen 0.0027
        GgmlType::Q4_0 => 0.08, // theory 0.036, seen 0.052
        GgmlType::Q4_1 => 0.07, // theory <= 0.039, seen 0.044
        GgmlType::Q5_0 => 0.04, // theory 0.018, seen 0.024
        GgmlType::Q5_1 => 0.035, // theory <= 0.019, seen 0.021
        GgmlType::Q2K => 0.25,  // theory <= 0.19, seen 0.15
        GgmlType::Q3K => 0.12,  // theory ~0.072, seen 0.079
        GgmlType::Q4K => 0.06,  // theory <= 0.039, seen 0.033
        GgmlType::Q5K => 0.03,  // theory <= 0.019, seen 0.017
        GgmlType::Q6K => 0.015, // theory 0.009, seen 0.008
    }
}

/// Random rows of 1 to 8 blocks of `block_len`, each block `amp * (u + offset)` with `u`
/// uniform in [-1, 1].
fn rows(block_len: usize) -> impl Strategy<Value = Vec<f32>> {
    (1usize..=8).prop_flat_map(move |n_blocks| {
        (
            prop::collection::vec((0.5f32..100.0, -1.0f32..1.0), n_blocks),
            prop::collection::vec(-1.0f32..1.0, n_blocks * block_len),
        )
            .prop_map(move |(shapes, u)| {
                u.chunks(block_len)
                    .zip(&shapes)
                    .flat_map(|(u, &(amp, offset))| u.iter().map(move |&u| amp * (u + offset)))
                    .collect()
            })
    })
}

/// Checks every block of a round trip of `x` against the type's bound.
fn check_round_trip(ty: GgmlType, x: &[f32]) -> Result<(), TestCaseError> {
    let y = round_trip(ty, x);
    let block = ty.block_len().max(32);
    for (b, (xb, yb)) in x.chunks(block).zip(y.chunks(block)).enumerate() {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let mse = xb
            .iter()
            .zip(yb)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum::<f64>()
            / block as f64;
        let rel = mse.sqrt() / f64::from(amax);
        prop_assert!(
            rel <= rel_rms_bound(ty),
            "{ty} block {b}: relative RMS error {rel} (amax {amax})"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn legacy_round_trip_error_bounded(x in rows(32)) {
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q8_1] {
            check_round_trip(ty, &x)?;
        }
    }

    #[test]
    fn kquant_round_trip_error_bounded(x in rows(256)) {
        for ty in [GgmlType::Q2K, GgmlType::Q3K, GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K, GgmlType::Q8K] {
            check_round_trip(ty, &x)?;
        }
    }

    #[test]
    fn float_round_trip_error_bounded(x in rows(32)) {
        for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
            check_round_trip(ty, &x)?;
        }
    }

    #[test]
    fn q8k_bsums_are_the_sums_of_the_quants(x in rows(256)) {
        let mut y = vec![BlockQ8K::ZERO; x.len() / 256];
        quantize_row_q8k(&x, &mut y);
        for block in &y {
            for (j, &sum) in block.bsums.iter().enumerate() {
                let want: i32 = block.qs[16 * j..16 * j + 16].iter().map(|&q| i32::from(q)).sum();
                prop_assert_eq!(i32::from(sum), want);
            }
        }
    }

    #[test]
    fn q8_1_s_is_d_times_the_sum_of_the_quants(x in rows(32)) {
        let mut y = vec![BlockQ8_1::ZERO; x.len() / 32];
        quantize_row_q8_1(&x, &mut y);
        for (block, xb) in y.iter().zip(x.chunks(32)) {
            // ggml rounds s from the f32 scale `amax / 127`, before d is rounded to f16.
            let d = xb.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
            let sum: i32 = block.qs.iter().map(|&q| i32::from(q)).sum();
            prop_assert_eq!(block.s, half::f16::from_f32(sum as f32 * d));
            prop_assert_eq!(block.d, half::f16::from_f32(d));
        }
        // The byte-level entry point writes the same blocks.
        let mut bytes = vec![0u8; x.len() / 32 * 36];
        quantize_row(GgmlType::Q8_1, &x, &mut bytes).unwrap();
        prop_assert_eq!(&bytes[..], as_bytes(&y));
    }
}
