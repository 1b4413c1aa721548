//! Woolly's reference dequantizers against llama.cpp's (gguf-py's) output for every tensor
//! listed in the conformance pack's `golden/dequant.json`.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use woolly_kernels::quant::dequantize_row;
use woolly_model::fetch;
use woolly_model::gguf::GgufFile;
use woolly_model::paths::{conformance_dir, conformance_file};

#[derive(Deserialize)]
struct Golden {
    tensors: Vec<GoldenTensor>,
}

#[derive(Deserialize)]
struct GoldenTensor {
    file: String,
    tensor: String,
    #[serde(rename = "type")]
    ty: String,
    n_elements: u64,
    first_512: Vec<f32>,
    sum: f64,
    sum_abs: f64,
    sha256_f32le: String,
}

fn model_path(file: &str) -> std::path::PathBuf {
    if file.starts_with("SmolLM2-135M-Instruct") {
        fetch::fetch(&fetch::SMOLLM2, |m| eprintln!("{m}"))
            .expect("SmolLM2 (cargo xtask fetch-model smollm2)")
    } else {
        conformance_dir().join(file)
    }
}

#[test]
fn dequantized_tensors_match_llama_cpp() {
    let golden: Golden =
        serde_json::from_slice(&std::fs::read(conformance_file("golden/dequant.json")).unwrap())
            .unwrap();
    assert_eq!(golden.tensors.len(), 7, "the pack lists seven tensors");
    for g in &golden.tensors {
        let file = GgufFile::open(model_path(&g.file)).unwrap();
        let info = file
            .tensor(&g.tensor)
            .unwrap_or_else(|| panic!("{} has no {}", g.file, g.tensor));
        assert_eq!(
            info.ty.name().to_uppercase(),
            g.ty.to_uppercase(),
            "{}",
            g.tensor
        );
        assert_eq!(info.n_elements, g.n_elements, "{}", g.tensor);

        let mut values = vec![0f32; info.n_elements as usize];
        dequantize_row(info.ty, file.tensor_data(info), &mut values).unwrap();

        // First 512 values: equal to float32 rounding (one ulp of slack for a different
        // but equally rounded order of the scale multiplication).
        for (i, (&ours, &theirs)) in values.iter().zip(&g.first_512).enumerate() {
            let ulp = f32::EPSILON * theirs.abs().max(f32::MIN_POSITIVE);
            assert!(
                (ours - theirs).abs() <= ulp,
                "{} [{i}]: woolly {ours:e}, llama.cpp {theirs:e}",
                g.tensor
            );
        }
        // Sums over every value, in f64: float32 rounding of each value bounds the
        // difference by eps * sum_abs.
        let sum: f64 = values.iter().map(|&v| f64::from(v)).sum();
        let sum_abs: f64 = values.iter().map(|&v| f64::from(v).abs()).sum();
        let tol = 1e-7 * g.sum_abs.max(1.0);
        assert!(
            (sum - g.sum).abs() <= tol,
            "{}: sum {sum} vs {}",
            g.tensor,
            g.sum
        );
        assert!(
            (sum_abs - g.sum_abs).abs() <= tol,
            "{}: sum_abs {sum_abs} vs {}",
            g.tensor,
            g.sum_abs
        );
        // Every value, bit for bit.
        let mut hasher = Sha256::new();
        for v in &values {
            hasher.update(v.to_le_bytes());
        }
        let sha: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sha, g.sha256_f32le, "{}: sha256 of all values", g.tensor);
        eprintln!("{} ({}): {} values match", g.tensor, g.ty, values.len());
    }
}
