//! Criterion benchmarks of Woolly's kernels, read from the registry: every variant of
//! every op on every ISA this CPU has, specialized (`dNNN`) next to generic (`dyn_`) on
//! the same size, and the quantized matvec in GB/s of weights streamed.
//!
//! Run: `cargo bench -p woolly-benches --bench kernels -- [filter]`, e.g. `-- matvec`.
//! Single-threaded throughout (a one-thread rayon pool), so figures are per core.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use half::f16;
use woolly_kernels::ops::{attention, dot, ffn, norm, qdot, quantize, rope};
use woolly_kernels::quant::{self, Block, BlockQ4K, BlockQ6K, BlockQ8_0, BlockQ8K};
use woolly_kernels::registry::Entry;
use woolly_kernels::testing::TestRng;
use woolly_kernels::{GgmlType, Isa, Kernels};

/// The sizes to run an op's entries on: each specialized dims tuple, and for the generic
/// variant the same tuples (so `dyn_` is measured against `dNNN` on equal work).
fn cases<F>(entries: &'static [Entry<F>]) -> Vec<(&'static Entry<F>, Vec<usize>)> {
    let mut dims: Vec<Vec<usize>> = entries
        .iter()
        .filter_map(|e| e.dims.map(<[usize]>::to_vec))
        .collect();
    dims.sort();
    dims.dedup();
    let mut out = Vec::new();
    for e in entries.iter().filter(|e| e.isa.is_available()) {
        match e.dims {
            Some(d) => out.push((e, d.to_vec())),
            None => out.extend(dims.iter().map(|d| (e, d.clone()))),
        }
    }
    out
}

fn id(e_name: &str, dims: &[usize]) -> BenchmarkId {
    BenchmarkId::new(e_name, format!("{dims:?}"))
}

fn float_ops(c: &mut Criterion) {
    let mut rng = TestRng::new(1);

    let mut g = c.benchmark_group("rmsnorm");
    for (e, d) in cases(norm::rmsnorm::ENTRIES) {
        let n = d[0];
        let (x, w, mut y) = (rng.f32s(n), rng.f32s(n), vec![0.0; n]);
        g.throughput(Throughput::Elements(n as u64));
        // SAFETY: `cases` keeps only entries whose ISA is available.
        g.bench_function(id(e.name, &d), |b| {
            b.iter(|| unsafe { (e.ptr)(black_box(&x), &w, 1e-5, &mut y) })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("swiglu");
    for (e, d) in cases(ffn::swiglu::ENTRIES) {
        let n = d[0];
        let (mut gt, up) = (rng.f32s(n), rng.f32s(n));
        g.throughput(Throughput::Elements(n as u64));
        // SAFETY: `cases` keeps only entries whose ISA is available.
        g.bench_function(id(e.name, &d), |b| {
            // Gate values stay bounded: silu(g) * u with |u| < 1 shrinks them.
            b.iter(|| unsafe { (e.ptr)(black_box(&mut gt), &up) })
        });
    }
    g.finish();

    // Activations are quantized before each product on the calling thread alone, while
    // the others wait: a batched decode step's (eight rows of SmolLM2's 576) for the
    // legacy formats, one token's input to TinyLlama's FFN down product for Q8_K.
    bench_quantizer(
        c,
        "quantize_q8_0",
        quantize::quantize_q8_0::ENTRIES,
        8 * 576,
        &mut rng,
    );
    bench_quantizer(
        c,
        "quantize_q8_1",
        quantize::quantize_q8_1::ENTRIES,
        8 * 576,
        &mut rng,
    );
    bench_quantizer(
        c,
        "quantize_q8k",
        quantize::quantize_q8k::ENTRIES,
        5632,
        &mut rng,
    );

    let mut g = c.benchmark_group("dot_f32");
    for (e, d) in cases(dot::dot_f32::ENTRIES) {
        let n = d[0];
        let (a, bv) = (rng.f32s(n), rng.f32s(n));
        g.throughput(Throughput::Elements(n as u64));
        // SAFETY: `cases` keeps only entries whose ISA is available.
        g.bench_function(id(e.name, &d), |b| {
            b.iter(|| unsafe { (e.ptr)(black_box(&a), &bv) })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("dot_f16");
    for (e, d) in cases(dot::dot_f16::ENTRIES) {
        let n = d[0];
        let (a, bv): (Vec<f16>, Vec<f16>) = (rng.f16s(n), rng.f16s(n));
        g.throughput(Throughput::Elements(n as u64));
        // SAFETY: `cases` keeps only entries whose ISA is available.
        g.bench_function(id(e.name, &d), |b| {
            b.iter(|| unsafe { (e.ptr)(black_box(&a), &bv) })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("rope");
    for (e, d) in cases(rope::rope::ENTRIES) {
        let hd = d[0];
        let n_head = 32;
        for neox in [false, true] {
            let mut x = rng.f32s(n_head * hd);
            g.throughput(Throughput::Elements((n_head * hd) as u64));
            let name = format!("{}/{}", e.name, if neox { "neox" } else { "normal" });
            // SAFETY: `cases` keeps only entries whose ISA is available.
            g.bench_function(id(&name, &d), |b| {
                b.iter(|| unsafe { (e.ptr)(black_box(&mut x), hd, 77, hd, 10_000.0, &[], neox) })
            });
        }
    }
    g.finish();

    // TinyLlama's shape: 32 query heads, 4 KV heads, 512 cached positions; one call
    // is one token's 8 query heads that share a KV head, against an f16 cache. The
    // batch's order, then ggml's one-token order (`attention_f16_single`).
    for (group, entries) in [
        ("attention_f16", attention::attention_f16::ENTRIES),
        (
            "attention_f16_single",
            attention::attention_f16_single::ENTRIES,
        ),
    ] {
        let mut g = c.benchmark_group(group);
        for (e, d) in cases(entries) {
            let (hd, n_q, n_kv, n_pos) = (d[0], 8, 4, 512usize);
            let mut q = rng.f32s(n_q * hd);
            let k = rng.f16s(n_pos.div_ceil(attention::K_BLOCK) * attention::K_BLOCK * n_kv * hd);
            let v = rng.f16s(n_pos * n_kv * hd);
            let (mut scores, mut out) = (vec![0.0; n_q * n_pos], vec![0.0; n_q * hd]);
            g.throughput(Throughput::Elements((n_q * n_pos) as u64));
            // SAFETY: `cases` keeps only entries whose ISA is available.
            g.bench_function(id(e.name, &d), |b| {
                b.iter(|| unsafe {
                    (e.ptr)(
                        black_box(&mut q),
                        &k,
                        &v,
                        n_kv,
                        1,
                        hd,
                        &mut scores,
                        &mut out,
                    )
                })
            });
        }
        g.finish();
    }

    // SmolLM2's decode shape (3 KV heads, 3 query heads each, head_dim 64, 128 cached
    // positions), one iteration being one token's three calls against the next of
    // caches that total 64 MiB: the keys and values come from DRAM, as they do in a
    // batched decode step, where every sequence and layer has a cache of its own.
    let mut g = c.benchmark_group("attention_f16_dram");
    let (n_q, n_kv, n_pos) = (3, 3, 128usize);
    for (e, d) in cases(attention::attention_f16::ENTRIES)
        .into_iter()
        .filter(|(_, d)| d[0] == 64)
    {
        let hd = d[0];
        let k_len = n_pos.div_ceil(attention::K_BLOCK) * attention::K_BLOCK * n_kv * hd;
        let v_len = n_pos * n_kv * hd;
        let n_caches = (64 << 20) / ((k_len + v_len) * 2);
        let k = rng.f16s(k_len * n_caches);
        let v = rng.f16s(v_len * n_caches);
        let mut q = rng.f32s(n_q * hd);
        let (mut scores, mut out) = (vec![0.0; n_q * n_pos], vec![0.0; n_q * hd]);
        let mut next = 0;
        g.throughput(Throughput::Elements((n_kv * n_q * n_pos) as u64));
        g.bench_function(id(e.name, &d), |b| {
            b.iter(|| {
                let (k, v) = (&k[next * k_len..][..k_len], &v[next * v_len..][..v_len]);
                next = (next + 1) % n_caches;
                for kv_head in 0..n_kv {
                    // SAFETY: `cases` keeps only entries whose ISA is available.
                    unsafe {
                        (e.ptr)(
                            black_box(&mut q),
                            k,
                            v,
                            n_kv,
                            kv_head,
                            hd,
                            &mut scores,
                            &mut out,
                        )
                    }
                }
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("softmax");
    for e in norm::softmax::ENTRIES
        .iter()
        .filter(|e| e.isa.is_available())
    {
        let mut x = rng.f32s_in(4096, -10.0, 10.0);
        g.throughput(Throughput::Elements(4096));
        // SAFETY: only entries whose ISA is available.
        g.bench_function(id(e.name, &[4096]), |b| {
            b.iter(|| unsafe { (e.ptr)(black_box(&mut x)) })
        });
    }
    g.finish();
}

/// An activation quantizer: shapes x: (n,); out: (n / block length,).
type QuantizeFn<B> = unsafe fn(&[f32], &mut [B]);

/// One activation quantizer's variants on `n` random values.
fn bench_quantizer<B: Block>(
    c: &mut Criterion,
    group: &str,
    entries: &[Entry<QuantizeFn<B>>],
    n: usize,
    rng: &mut TestRng,
) {
    let mut g = c.benchmark_group(group);
    for e in entries.iter().filter(|e| e.isa.is_available()) {
        let (x, mut q) = (rng.f32s(n), vec![B::ZERO; n / B::BLOCK_LEN]);
        g.throughput(Throughput::Elements(n as u64));
        // SAFETY: only entries whose ISA is available.
        g.bench_function(id(e.name, &[n]), |b| {
            b.iter(|| unsafe { (e.ptr)(black_box(&x), &mut q) })
        });
    }
    g.finish();
}

/// Quantized dots on one 4096-weight row (in cache): the inner loop of matvec.
fn quantized_dots(c: &mut Criterion) {
    let mut rng = TestRng::new(2);
    let mut g = c.benchmark_group("vec_dot");
    let nb = 4096 / 256;
    let (w4, w6, x8k): (Vec<BlockQ4K>, Vec<BlockQ6K>, Vec<BlockQ8K>) =
        (rng.q4k(nb), rng.q6k(nb), rng.q8k(nb));
    let (w80, x80): (Vec<BlockQ8_0>, Vec<BlockQ8_0>) = (rng.q8_0(128), rng.q8_0_act(128));
    g.throughput(Throughput::Bytes((nb * BlockQ4K::BYTES) as u64));
    for e in qdot::vec_dot_q4k_q8k::ENTRIES
        .iter()
        .filter(|e| e.isa.is_available())
    {
        // SAFETY: only entries whose ISA is available.
        g.bench_function(format!("q4k_q8k/{}", e.name), |b| {
            b.iter(|| unsafe { (e.ptr)(black_box(&w4), &x8k) })
        });
    }
    g.throughput(Throughput::Bytes((nb * BlockQ6K::BYTES) as u64));
    for e in qdot::vec_dot_q6k_q8k::ENTRIES
        .iter()
        .filter(|e| e.isa.is_available())
    {
        // SAFETY: only entries whose ISA is available.
        g.bench_function(format!("q6k_q8k/{}", e.name), |b| {
            b.iter(|| unsafe { (e.ptr)(black_box(&w6), &x8k) })
        });
    }
    g.throughput(Throughput::Bytes((128 * BlockQ8_0::BYTES) as u64));
    for e in qdot::vec_dot_q8_0_q8_0::ENTRIES
        .iter()
        .filter(|e| e.isa.is_available())
    {
        // SAFETY: only entries whose ISA is available.
        g.bench_function(format!("q8_0_q8_0/{}", e.name), |b| {
            b.iter(|| unsafe { (e.ptr)(black_box(&w80), &x80) })
        });
    }
    g.finish();
}

/// Q4_K x Q8_K matvec, 4096 x 4096, one thread, cycling through 64 copies of the
/// matrix (~600 MB, more than the last-level cache) so every byte comes from DRAM.
/// Throughput is weight bytes streamed per second. Set `WOOLLY_BENCH_MATRICES` to
/// change the number of copies.
fn matvec_q4k(c: &mut Criterion) {
    let (rows, cols) = (4096, 4096);
    let copies: usize = std::env::var("WOOLLY_BENCH_MATRICES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let mut rng = TestRng::new(3);
    let wf = rng.f32s(rows * cols);
    let bytes = GgmlType::Q4K.row_bytes(cols as u64).unwrap() as usize * rows;
    let mut one = vec![0u8; bytes];
    quant::quantize_row(GgmlType::Q4K, &wf, &mut one).unwrap();
    drop(wf);
    let mats: Vec<Vec<u8>> = (0..copies).map(|_| one.clone()).collect();
    let x = rng.f32s(cols);
    let mut y = vec![0.0; rows];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();

    // The ceiling: a plain single-thread read of the same bytes (u64 sums, vectorized).
    let mut g = c.benchmark_group("dram_read_1thread");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.measurement_time(Duration::from_secs(3));
    g.sample_size(20);
    let mut i = 0;
    g.bench_function("sum_u64", |b| {
        b.iter(|| {
            i = (i + 1) % mats.len();
            let s: u64 = mats[i]
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                .fold(0, u64::wrapping_add);
            black_box(s)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("matvec_q4k_4096x4096_1thread");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.measurement_time(Duration::from_secs(4));
    g.sample_size(20);
    for isa in Isa::available() {
        let k = Kernels::select(isa);
        let mut i = 0;
        g.bench_function(isa.as_str(), |b| {
            b.iter(|| {
                i = (i + 1) % mats.len();
                pool.install(|| k.matvec(GgmlType::Q4K, &mats[i], rows, cols, &x, &mut y))
                    .unwrap();
            })
        });
    }
    g.finish();

    // Batched: 16 tokens against one matrix (in cache after the first token), GFLOP/s
    // reported as elements = 2 * rows * cols * batch flops.
    let batch = 16;
    let xb = rng.f32s(batch * cols);
    let mut yb = vec![0.0; batch * rows];
    let mut g = c.benchmark_group("matmul_q4k_4096x4096x16_1thread");
    g.throughput(Throughput::Elements((2 * rows * cols * batch) as u64));
    g.measurement_time(Duration::from_secs(4));
    g.sample_size(10);
    for isa in Isa::available() {
        let k = Kernels::select(isa);
        g.bench_function(isa.as_str(), |b| {
            b.iter(|| {
                pool.install(|| k.matmul(GgmlType::Q4K, &one, rows, cols, &xb, batch, &mut yb))
                    .unwrap();
            })
        });
    }
    g.finish();
}

/// SmolLM2-135M's projections (Q4_1 weights, Q8_0 output), one token, in cache: a
/// Q4_1 matvec of 576 x 1536 (FFN down) and 1536 x 576 (FFN gate/up) and the Q8_0
/// 49152 x 576 output projection, per ISA, single-threaded, throughput in weight bytes.
fn matvec_smollm2(c: &mut Criterion) {
    let mut rng = TestRng::new(4);
    let shapes = [
        (GgmlType::Q4_1, 576, 1536),
        (GgmlType::Q4_1, 1536, 576),
        (GgmlType::Q8_0, 49152, 576),
    ];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    for (ty, rows, cols) in shapes {
        let wf = rng.f32s(rows * cols);
        let bytes = ty.row_bytes(cols as u64).unwrap() as usize * rows;
        let mut w = vec![0u8; bytes];
        quant::quantize_row(ty, &wf, &mut w).unwrap();
        let x = rng.f32s(cols);
        let mut y = vec![0.0; rows];
        let mut g = c.benchmark_group(format!("matvec_{ty}_{rows}x{cols}_1thread"));
        g.throughput(Throughput::Bytes(bytes as u64));
        for isa in Isa::available() {
            let k = Kernels::select(isa);
            g.bench_function(isa.as_str(), |b| {
                b.iter(|| {
                    pool.install(|| k.matvec(ty, black_box(&w), rows, cols, &x, &mut y))
                        .unwrap();
                })
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1));
    targets = float_ops, quantized_dots, matvec_q4k, matvec_smollm2
}
criterion_main!(benches);
