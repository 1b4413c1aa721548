//! `woolly-run info`: what a GGUF file holds.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::json;
use woolly_model::gguf::{GgufFile, Metadata};

use crate::model_arg;

/// Arguments of `woolly-run info`.
#[derive(Args)]
pub struct InfoArgs {
    /// The GGUF file (default: SmolLM2-135M-Instruct from the cache).
    #[arg(value_name = "MODEL")]
    path: Option<PathBuf>,
    /// The GGUF file, as every subcommand takes it.
    #[arg(short, long, value_name = "MODEL", conflicts_with = "path")]
    model: Option<PathBuf>,
    /// Also list every tensor: name, type, shape, bytes.
    #[arg(long)]
    tensors: bool,
    /// Print all metadata keys and values.
    #[arg(long)]
    metadata: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// One line of the summary: a label and a value.
type Field = (&'static str, serde_json::Value);

fn arch_u32(md: &Metadata, arch: &str, key: &str) -> anyhow::Result<Option<u32>> {
    Ok(md.get_u32(&format!("{arch}.{key}"))?)
}

/// An f32 as JSON with its shortest decimal form (1e-5, not 9.999999747378752e-6).
fn shortest(v: Option<f32>) -> serde_json::Value {
    v.map_or(serde_json::Value::Null, |x| {
        json!(x.to_string().parse::<f64>().unwrap_or(f64::from(x)))
    })
}

fn summary(file: &GgufFile) -> anyhow::Result<Vec<Field>> {
    let md = file.metadata();
    let arch = md
        .get_str("general.architecture")?
        .unwrap_or("(none)")
        .to_owned();
    let mut fields: Vec<Field> = vec![
        ("name", json!(md.get_str("general.name")?)),
        ("architecture", json!(arch)),
        ("gguf_version", json!(file.version())),
        ("file_size_bytes", json!(file.size())),
    ];
    for (label, key) in [
        ("context_length", "context_length"),
        ("embedding_length", "embedding_length"),
        ("block_count", "block_count"),
        ("feed_forward_length", "feed_forward_length"),
        ("head_count", "attention.head_count"),
        ("head_count_kv", "attention.head_count_kv"),
        ("rope_dimension_count", "rope.dimension_count"),
    ] {
        fields.push((label, json!(arch_u32(md, &arch, key)?)));
    }
    fields.push((
        "rope_freq_base",
        shortest(md.get_f32(&format!("{arch}.rope.freq_base"))?),
    ));
    fields.push((
        "rms_norm_eps",
        shortest(md.get_f32(&format!("{arch}.attention.layer_norm_rms_epsilon"))?),
    ));
    let vocab = md.get_array("tokenizer.ggml.tokens")?.map(|a| a.len());
    fields.push(("vocab_size", json!(vocab)));
    fields.push(("tokenizer", json!(md.get_str("tokenizer.ggml.model")?)));
    fields.push(("tokenizer_pre", json!(md.get_str("tokenizer.ggml.pre")?)));
    fields.push((
        "chat_template",
        json!(md.get_str("tokenizer.chat_template")?.is_some()),
    ));
    let params: u64 = file.tensors().iter().map(|t| t.n_elements).sum();
    fields.push(("parameters", json!(params)));
    fields.push(("tensor_count", json!(file.tensors().len())));
    let mut types: BTreeMap<&str, usize> = BTreeMap::new();
    for t in file.tensors() {
        *types.entry(t.ty.name()).or_default() += 1;
    }
    fields.push(("tensor_types", json!(types)));
    Ok(fields)
}

fn text_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "-".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Bool(b) => if *b { "present" } else { "absent" }.to_owned(),
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// Runs `woolly-run info`.
pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    let path = model_arg::resolve(args.path.or(args.model))?;
    let file = GgufFile::open(&path).with_context(|| format!("{}", path.display()))?;
    let fields = summary(&file)?;
    let tensors = || -> Vec<serde_json::Value> {
        file.tensors()
            .iter()
            .map(|t| json!({"name": t.name, "type": t.ty.name(), "dims": t.dims, "bytes": t.n_bytes, "offset": t.offset}))
            .collect()
    };
    let metadata = || -> serde_json::Map<String, serde_json::Value> {
        file.metadata()
            .iter()
            .map(|(k, v)| (k.to_owned(), json!(v.display_short())))
            .collect()
    };

    if args.json {
        let mut obj: serde_json::Map<String, serde_json::Value> =
            fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        obj.insert("path".into(), json!(path.display().to_string()));
        if args.tensors {
            obj.insert("tensors".into(), json!(tensors()));
        }
        if args.metadata {
            obj.insert("metadata".into(), json!(metadata()));
        }
        println!("{}", serde_json::Value::Object(obj));
        return Ok(());
    }

    println!("{}", path.display());
    for (label, value) in &fields {
        println!("  {label:<22} {}", text_value(value));
    }
    if args.metadata {
        println!("\nmetadata:");
        for (k, v) in metadata() {
            println!("  {k:<40} {}", text_value(&v));
        }
    }
    if args.tensors {
        println!(
            "\n  {:<36} {:<6} {:<22} {:>12}",
            "tensor", "type", "dims", "bytes"
        );
        for t in file.tensors() {
            let dims = format!("{:?}", t.dims);
            println!(
                "  {:<36} {:<6} {:<22} {:>12}",
                t.name,
                t.ty.name(),
                dims,
                t.n_bytes
            );
        }
    }
    Ok(())
}
