//! Bit-exactness against ggml's own reference code.
//!
//! The expected hashes below were produced by compiling ggml's `src/ggml-quants.c`
//! (github.com/ggml-org/ggml, commit d99724f2b141fed9e1a9f402213506c081433465, with
//! `gcc -O2 -std=gnu11 -DNDEBUG`, i.e. no FMA contraction, as llama.cpp builds its
//! ggml-base) into a small harness that fed it the inputs generated here:
//! - `quantize_row_*_ref` on [`weights`], hashing the quantized bytes;
//! - `dequantize_row_*` on [`random_bytes`] (every bit pattern, so NaN and inf scales
//!   included), hashing the f32 outputs with NaNs made canonical (NaN payloads depend on
//!   the CPU; everything else is plain IEEE f32 arithmetic and portable).
//!
//! The generator uses only integer arithmetic and exact float operations, so it gives
//! the same inputs on every platform. A mismatch prints the hashes we got.

use woolly_kernels::GgmlType;
use woolly_kernels::quant::{dequantize_row, quantize_row};

/// xorshift64: deterministic, platform-independent.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [-1, 1) with 24 random bits (exact in f32).
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / 8_388_608.0 - 1.0
    }
}

/// 64 super-blocks (16384 weights) of varied shapes: uniform at scales from 1e-3 to
/// 1e3, one-signed, with an outlier, cubed (heavy centre), tiny (1e-6), constant and
/// all-zero blocks.
fn weights() -> Vec<f32> {
    const SCALES: [f32; 7] = [1e-3, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut x = Vec::with_capacity(64 * 256);
    for b in 0..64usize {
        let scale = SCALES[b % SCALES.len()];
        for i in 0..256 {
            let u = rng.unit();
            x.push(match b % 9 {
                0 => u * scale,
                1 => u.abs() * scale,
                2 => -u.abs() * scale,
                3 if i == 17 => 100.0 * scale,
                4 => u * u * u * scale,
                5 => u * 1e-6,
                6 => scale,
                7 if b == 7 => 0.0,
                _ => (u + 0.25) * scale,
            });
        }
    }
    x
}

/// 110 * 292 * 4 random bytes: a whole number of blocks of every type, each byte
/// uniformly random (so scales hit every f16 value, NaN and inf included).
fn random_bytes() -> Vec<u8> {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    (0..110 * 292 * 4)
        .map(|_| (rng.next_u64() >> 56) as u8)
        .collect()
}

/// FNV-1a, 64-bit.
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The f32 values' little-endian bytes, every NaN replaced by 0x7fc00000.
fn canonical_bytes(y: &[f32]) -> impl Iterator<Item = u8> + '_ {
    y.iter().flat_map(|v| {
        if v.is_nan() {
            0x7fc0_0000u32
        } else {
            v.to_bits()
        }
        .to_le_bytes()
    })
}

/// (type, hash of quantized `weights()`, hash of dequantized `random_bytes()`; 0 where
/// ggml has no dequantizer).
const EXPECTED: [(GgmlType, u64, u64); 12] = [
    (GgmlType::Q4_0, 0x2251eba5d0b052df, 0x1d8176dc5d48f377),
    (GgmlType::Q4_1, 0x513f9d6409cf8fa5, 0xcf12c1d55ff6d584),
    (GgmlType::Q5_0, 0x30e5474ef54b8932, 0x45f9b05a4b2a08ef),
    (GgmlType::Q5_1, 0x4169f66ca9b319cf, 0xbfb60c2dc8d3f08e),
    (GgmlType::Q8_0, 0x00eb5032b8e3ffb7, 0xa83a6c7670704307),
    (GgmlType::Q8_1, 0x48c86bf1b60b8a30, 0),
    (GgmlType::Q2K, 0xe84d493af94ba2c5, 0x45a7170435491ceb),
    (GgmlType::Q3K, 0x751e1e4b72757012, 0xa0e5d6d3c58bc7d9),
    (GgmlType::Q4K, 0x8ae9ae610bc06639, 0x3f06a1913fab2797),
    (GgmlType::Q5K, 0x84dce5714f0d9bd2, 0xed8ad28e4edbfdac),
    (GgmlType::Q6K, 0xdc59d876f3fc75cc, 0x635736fdd1c068df),
    (GgmlType::Q8K, 0xa1e5a0c3126f7b0c, 0x252956d4eb5b57f1),
];

#[test]
fn quantizers_and_dequantizers_match_ggml_bit_for_bit() {
    let x = weights();
    let raw = random_bytes();
    let mut failures = Vec::new();
    for (ty, want_q, want_d) in EXPECTED {
        let mut q = vec![0u8; ty.row_bytes(x.len() as u64).unwrap() as usize];
        quantize_row(ty, &x, &mut q).unwrap();
        let got_q = fnv1a(q.iter().copied());

        let n_blocks = raw.len() / ty.block_bytes();
        let mut y = vec![0.0f32; n_blocks * ty.block_len()];
        dequantize_row(ty, &raw[..n_blocks * ty.block_bytes()], &mut y).unwrap();
        let got_d = if want_d == 0 {
            0
        } else {
            fnv1a(canonical_bytes(&y))
        };

        if (got_q, got_d) != (want_q, want_d) {
            failures.push(format!("(GgmlType::{ty:?}, {got_q:#018x}, {got_d:#018x}),"));
        }
    }
    assert!(
        failures.is_empty(),
        "hashes differ from ggml's; got:\n{}",
        failures.join("\n")
    );
}

#[test]
#[ignore = "writes the harness inputs; run by hand when regenerating EXPECTED"]
fn dump_inputs_for_ggml_harness() {
    let dir =
        std::env::var("WOOLLY_QUANT_DUMP").unwrap_or_else(|_| "/tmp/woolly-quant-golden".into());
    std::fs::create_dir_all(&dir).unwrap();
    let x: Vec<u8> = weights().iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(format!("{dir}/in.f32"), x).unwrap();
    std::fs::write(format!("{dir}/rnd.bin"), random_bytes()).unwrap();
}
