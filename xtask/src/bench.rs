//! `cargo xtask bench`: the kernel benches, end-to-end pp/tg on the standard models, the
//! machine's DRAM read bandwidth and the token-generation roofline it implies, and
//! llama.cpp on the same files when it is installed, interleaved run by run (A B A B) so
//! machine drift cancels. Writes `target/woolly-bench/report.md` and `report.json`.
//!
//! These are benchmarks: nothing here is a test, and nothing asserts a speed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use woolly_model::gguf::GgufFile;

/// Options of `cargo xtask bench`.
pub struct BenchOptions {
    /// Fewer repetitions, smaller tests, no criterion run.
    pub quick: bool,
    /// Also the llama7b shape (about 4 GB to write and read).
    pub llama7b: bool,
    /// Thread counts.
    pub threads: Vec<usize>,
}

/// Best-of-5 read bandwidth over a 1 GiB buffer, in GB/s, using `threads` threads. The
/// buffer asks for huge pages, as the packed weights do
/// (`woolly_kernels::huge_pages`): with 4 KiB pages the
/// prefetchers stop at every page and the test read slower than the engine streams.
pub fn dram_read_gbps(threads: usize) -> f64 {
    let words = (1usize << 30) / 8;
    let mut buf: Vec<u64> = Vec::with_capacity(words);
    let spare = buf.spare_capacity_mut();
    woolly_kernels::huge_pages::advise_huge_pages(spare.as_mut_ptr().cast(), size_of_val(spare));
    buf.extend(0..words as u64);
    let chunk = words.div_ceil(threads);
    let mut best = 0f64;
    for _ in 0..5 {
        let t0 = Instant::now();
        let total: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = buf
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        // Eight independent sums so the loop streams at full width.
                        let mut acc = [0u64; 8];
                        for c in part.chunks_exact(8) {
                            for i in 0..8 {
                                acc[i] = acc[i].wrapping_add(c[i]);
                            }
                        }
                        acc.iter().fold(0u64, |a, &b| a.wrapping_add(b))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(0))
                .fold(0, u64::wrapping_add)
        });
        std::hint::black_box(total);
        best = best.max((words * 8) as f64 / t0.elapsed().as_secs_f64() / 1e9);
    }
    best
}

/// Bytes of weights read to generate one token: every matrix once, but only one row of
/// the embeddings (unless they double as the output matrix).
pub fn bytes_per_token(file: &GgufFile) -> u64 {
    let tied = file.tensor("output.weight").is_none();
    file.tensors()
        .iter()
        .map(|t| {
            if t.name == "token_embd.weight" && !tied {
                t.n_bytes / t.n_rows().max(1)
            } else {
                t.n_bytes
            }
        })
        .sum()
}

/// `cargo xtask roofline`: prints the DRAM read bandwidth with `threads` threads, then
/// each model's bytes read per generated token and the tokens/s that bandwidth allows.
pub fn print_roofline(threads: usize, models: &[PathBuf]) -> anyhow::Result<()> {
    // Open the models first, so a bad path fails before the ten-second measurement.
    let files = models
        .iter()
        .map(|m| GgufFile::open(m).with_context(|| format!("opening {}", m.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let gbps = dram_read_gbps(threads);
    println!("DRAM read: {gbps:.1} GB/s ({threads} threads)");
    for (path, file) in models.iter().zip(&files) {
        let per_token = bytes_per_token(file);
        println!(
            "{}: {:.1} MiB read per token, tg roofline {:.2} t/s",
            path.display(),
            per_token as f64 / (1u64 << 20) as f64,
            tg_roofline_tps(gbps, per_token)
        );
    }
    Ok(())
}

/// The tokens/s that `gbps` allows when each token reads `per_token` bytes of weights.
fn tg_roofline_tps(gbps: f64, per_token: u64) -> f64 {
    gbps * 1e9 / per_token as f64
}

fn run_json(cmd: &mut Command) -> anyhow::Result<Value> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(line).with_context(|| format!("{cmd:?} printed no JSON: {text}"))
}

fn woolly_bin(root: &Path) -> anyhow::Result<PathBuf> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "-p", "woolly-run"])
        .current_dir(root)
        .status()?;
    if !status.success() {
        bail!("cargo build --release -p woolly-run failed");
    }
    Ok(root.join("target/release/woolly-run"))
}

fn llama_cpp_available(root: &Path) -> bool {
    let site =
        std::env::var("WOOLLY_PEER_SITE").unwrap_or_else(|_| "/opt/woolly-peers/site".into());
    root.join("../shared/peers/llama_cpp_bench.py").exists()
        && Command::new("python3")
            .args(["-c", "import llama_cpp"])
            .env("PYTHONPATH", &site)
            .output()
            .is_ok_and(|o| o.status.success())
}

/// Mean and sample standard deviation.
fn stats(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// Runs the whole benchmark and writes the report.
pub fn run(opts: BenchOptions) -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out_dir = root.join("target/woolly-bench");
    std::fs::create_dir_all(out_dir.join("models"))?;
    let (n_prompt, n_gen, reps) = if opts.quick {
        (128, 32, 2)
    } else {
        (512, 128, 5)
    };

    if !opts.quick {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["bench", "-p", "woolly-benches"])
            .current_dir(&root)
            .status()?;
        if !status.success() {
            bail!("cargo bench -p woolly-benches failed");
        }
    }

    let threads_max = opts.threads.iter().copied().max().unwrap_or(1);
    eprintln!("measuring DRAM read bandwidth ({threads_max} threads)...");
    let gbps = dram_read_gbps(threads_max);

    let mut models = vec![woolly_model::fetch::fetch(
        &woolly_model::fetch::SMOLLM2,
        |m| eprintln!("{m}"),
    )?];
    let vocab = root.join("../shared/conformance/vocab/ggml-vocab-llama-spm.gguf");
    let mut shapes = vec!["tinyllama"];
    if opts.llama7b {
        shapes.push("llama7b");
    }
    for shape in shapes {
        let path = out_dir.join("models").join(format!("{shape}-q4_k_m.gguf"));
        if !path.exists() {
            eprintln!("writing the {shape} benchmark model (once)...");
            let vocab_file = GgufFile::open(&vocab)?;
            let s = woolly_model::synthetic::SHAPES
                .iter()
                .find(|s| s.name == shape)
                .expect("known shape");
            woolly_model::synthetic::write_model(
                s,
                woolly_model::synthetic::Recipe::Q4KM,
                &vocab_file,
                0,
                &path,
            )?;
        }
        models.push(path);
    }

    let woolly = woolly_bin(&root)?;
    let peer = llama_cpp_available(&root);
    if !peer {
        eprintln!(
            "llama.cpp is not installed (../shared/peers/install-llama-cpp.sh): Woolly's figures only"
        );
    }
    let threads_arg = opts
        .threads
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut rows = Vec::new();
    for model in &models {
        let file = GgufFile::open(model)?;
        let per_token = bytes_per_token(&file);
        let roofline = tg_roofline_tps(gbps, per_token);
        // (engine, test, threads) -> samples
        let mut samples: std::collections::BTreeMap<(String, String, u64), Vec<f64>> =
            Default::default();
        for rep in 0..reps {
            eprintln!("{}: repetition {}/{reps}", model.display(), rep + 1);
            let mut runs: Vec<(&str, Command)> = Vec::new();
            let mut w = Command::new(&woolly);
            w.args(["bench", "-m"]).arg(model).args([
                "-p",
                &n_prompt.to_string(),
                "-n",
                &n_gen.to_string(),
            ]);
            // Eight sequences generating together as well: the server's batched decode.
            w.args(["-r", "1", "-t", &threads_arg, "-s", "1,8", "-o", "json"]);
            runs.push(("woolly", w));
            if peer {
                let mut l = Command::new("python3");
                l.arg(root.join("../shared/peers/llama_cpp_bench.py"))
                    .arg("-m")
                    .arg(model);
                l.args([
                    "-p",
                    &n_prompt.to_string(),
                    "-n",
                    &n_gen.to_string(),
                    "-r",
                    "1",
                    "-t",
                    &threads_arg,
                    "--json",
                ]);
                runs.push(("llama.cpp", l));
            }
            for (engine, mut cmd) in runs {
                let v = run_json(&mut cmd)?;
                for r in v["results"].as_array().into_iter().flatten() {
                    let key = (
                        engine.to_owned(),
                        r["test"].as_str().unwrap_or("?").to_owned(),
                        r["threads"].as_u64().unwrap_or(0),
                    );
                    samples
                        .entry(key)
                        .or_default()
                        .push(r["tps"].as_f64().unwrap_or(0.0));
                }
            }
        }
        for ((engine, test, threads), xs) in &samples {
            if engine != "woolly" {
                continue;
            }
            let (mean, sd) = stats(xs);
            // The bandwidth was measured with the most threads: the roofline is theirs.
            let single_tg =
                test.starts_with("tg") && !test.contains('x') && *threads as usize == threads_max;
            // A batched test (`tg32x8`) against the same test with one stream (`tg32`).
            let batching_gain = test.split_once('x').and_then(|(one, _)| {
                let single = samples.get(&(engine.clone(), one.to_owned(), *threads))?;
                Some(mean / stats(single).0)
            });
            // The same test on one thread, when it ran (`-t 1,16`): the thread scaling.
            let thread_scaling = samples
                .get(&(engine.clone(), test.clone(), 1))
                .filter(|_| *threads > 1)
                .map(|one| mean / stats(one).0);
            let peer = samples
                .get(&("llama.cpp".to_owned(), test.clone(), *threads))
                .map(|p| stats(p));
            rows.push(json!({
                "model": model.file_name().map(|n| n.to_string_lossy().into_owned()),
                "model_bytes": file.size(),
                "bytes_per_token": per_token,
                "test": test,
                "threads": threads,
                "woolly_tps": mean,
                "woolly_stddev": sd,
                "llama_cpp_tps": peer.map(|p| p.0),
                "llama_cpp_stddev": peer.map(|p| p.1),
                "ratio": peer.map(|p| mean / p.0),
                // One sequence's: batched generation reads the weights once per step.
                "tg_roofline_tps": single_tg.then_some(roofline),
                "roofline_fraction": single_tg.then_some(mean / roofline),
                "vs_one_stream": batching_gain,
                "vs_one_thread": thread_scaling,
            }));
        }
    }

    let report =
        json!({"dram_read_gbps": gbps, "threads": opts.threads, "quick": opts.quick, "rows": rows});
    std::fs::write(
        out_dir.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let mut md = format!("DRAM read bandwidth: {gbps:.1} GB/s ({threads_max} threads)\n\n");
    md.push_str(
        "| model | test | threads | woolly t/s | llama.cpp t/s | ratio | tg roofline t/s | of roofline | vs one stream | vs one thread |\n",
    );
    md.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for r in &rows {
        // A number as `show` writes it, or "-" where the row has none.
        let cell = |v: &Value, show: fn(f64) -> String| v.as_f64().map_or("-".to_owned(), show);
        let f = |v: &Value| cell(v, |x| format!("{x:.2}"));
        md.push_str(&format!(
            "| {} | {} | {} | {} ± {} | {} | {} | {} | {} | {} | {} |\n",
            r["model"].as_str().unwrap_or("?"),
            r["test"].as_str().unwrap_or("?"),
            r["threads"],
            f(&r["woolly_tps"]),
            f(&r["woolly_stddev"]),
            f(&r["llama_cpp_tps"]),
            f(&r["ratio"]),
            f(&r["tg_roofline_tps"]),
            cell(&r["roofline_fraction"], |x| format!("{:.0}%", 100.0 * x)),
            cell(&r["vs_one_stream"], |x| format!("{x:.2}x")),
            cell(&r["vs_one_thread"], |x| format!("{x:.2}x")),
        ));
    }
    std::fs::write(out_dir.join("report.md"), &md)?;
    print!("{md}");
    eprintln!("wrote {}", out_dir.join("report.md").display());
    Ok(())
}
