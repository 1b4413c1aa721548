//! Tile kernels over row-interleaved weights against the per-row dot products they
//! replace (the current matvec path), per format and ISA: one thread, a 4096 x 4096
//! matrix, one token (`T1`, throughput in weight bytes) and four and eight tokens (`T4`, `T8`,
//! throughput in elements = flops, `2 * rows * cols * T`).
//!
//! Run: `cargo bench -p woolly-benches --bench qtile -- [filter]`. The matrix (9-18 MB)
//! sits in the last-level cache after the first pass; set `WOOLLY_BENCH_MATRICES=N` to
//! cycle through N copies instead so the weights stream from DRAM (packed on 2 MiB pages,
//! as the model keeps them), and
//! `WOOLLY_BENCH_SHAPE=ROWSxCOLS` (rows a multiple of 16, columns of 32;
//! the K-quant formats only run when the columns are a multiple of 256) for another
//! shape, such as SmolLM2's `1536x576`, whose matrix sits in L2.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use woolly_kernels::huge_pages::HugePageBlocks;
use woolly_kernels::ops::qtile;
use woolly_kernels::quant::interleaved::{Interleave, ROWS, packed_blocks};
use woolly_kernels::quant::{
    Block, BlockQ4_1, BlockQ4K, BlockQ6K, BlockQ8_0, BlockQ8_0Unsigned, BlockQ8_1, BlockQ8K,
};
use woolly_kernels::testing::TestRng;
use woolly_kernels::{Isa, Kernels};

/// The matrix shape: `WOOLLY_BENCH_SHAPE=ROWSxCOLS`, else 4096 x 4096.
fn shape() -> (usize, usize) {
    let parsed = std::env::var("WOOLLY_BENCH_SHAPE").ok().and_then(|s| {
        let (r, c) = s.split_once('x')?;
        Some((r.parse().ok()?, c.parse().ok()?))
    });
    match parsed {
        Some((r, c)) if r % 16 == 0 && c % 32 == 0 && r > 0 && c > 0 => (r, c),
        Some(_) => panic!("WOOLLY_BENCH_SHAPE: ROWSxCOLS, multiples of 16 and 32"),
        None => (4096, 4096),
    }
}

/// A tile kernel: shapes w: (nb,); x: (T, nb); out: (T, 8).
type TileFn<'a, W, X> = Box<dyn Fn(&[W], &[X], &mut [f32]) + 'a>;
/// A two-group tile: shapes w: (2 * nb,); x: (T, nb); out_a, out_b: (T, 8).
type PairFn<'a, W, X> = Box<dyn Fn(&[W], &[X], &mut [f32], &mut [f32]) + 'a>;
/// A per-row dot: shapes w, x: (nb,).
type DotFn<'a, B, X> = Box<dyn Fn(&[B], &[X]) -> f32 + 'a>;

fn copies() -> usize {
    std::env::var("WOOLLY_BENCH_MATRICES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// The fast ISAs here (the scalar tile is the unpacking reference, not a contender).
fn isas() -> Vec<Isa> {
    Isa::available()
        .into_iter()
        .filter(|&i| i != Isa::Scalar)
        .collect()
}

/// Benches one format: `w` is a `rows_n x nb` matrix of blocks, `x` eight tokens of `nb`
/// activation blocks; `tile(isa, t)`, `pair(isa)` (the two-group tile, where dispatch
/// has one) and `dot(isa)` give the kernels.
fn bench_format<'k, B: Interleave + Block, X: Copy>(
    c: &mut Criterion,
    name: &str,
    w: Vec<B>,
    x: Vec<X>,
    tile: impl Fn(Isa, usize) -> TileFn<'k, B::X8, X>,
    pair: impl Fn(Isa) -> Option<PairFn<'k, B::X8, X>>,
    dot: impl Fn(Isa) -> DotFn<'k, B, X>,
) {
    let (rows_n, cols) = shape();
    let nb = cols / B::BLOCK_LEN;
    let mats: Vec<Vec<B>> = (0..copies()).map(|_| w.clone()).collect();
    // On 2 MiB pages, as the model keeps its packed weights: with 4 KiB pages a
    // DRAM-streaming run (`WOOLLY_BENCH_MATRICES`) would also measure TLB misses and
    // prefetchers stopping at every page boundary, which the engine does not pay.
    let packed: Vec<HugePageBlocks<B::X8>> = mats
        .iter()
        .map(|m| HugePageBlocks::collect(m.len() / ROWS, packed_blocks(m, rows_n)))
        .collect();
    let bytes = (rows_n * nb * B::BYTES) as u64;
    let mut y = vec![0.0f32; 8 * rows_n];
    for t in [1usize, 4, 8] {
        let mut g = c.benchmark_group(format!("qtile_{name}_{rows_n}x{cols}_T{t}"));
        if t == 1 {
            g.throughput(Throughput::Bytes(bytes));
        } else {
            g.throughput(Throughput::Elements((2 * rows_n * cols * t) as u64));
        }
        let xt = &x[..t * nb];
        // The scalar variant of the per-row dot (the portable fallback a CPU without
        // AVX2 runs), for the "x times scalar" ratio; one token only (it is slow).
        if t == 1 {
            let d = dot(Isa::Scalar);
            let mut i = 0;
            g.bench_function("scalar/row_dot", |b| {
                b.iter(|| {
                    i = (i + 1) % mats.len();
                    for (r, row) in mats[i].chunks_exact(nb).enumerate() {
                        y[r] = d(black_box(row), &xt[..nb]);
                    }
                })
            });
        }
        for isa in isas() {
            // The generic (`dyn_`) tile beside the one specialized for `t` tokens.
            let f = tile(isa, 0);
            let mut i = 0;
            g.bench_function(format!("{}/tile_dyn", isa.as_str()), |b| {
                b.iter(|| {
                    i = (i + 1) % packed.len();
                    for (wg, out) in packed[i].chunks_exact(nb).zip(y.chunks_exact_mut(t * ROWS)) {
                        f(black_box(wg), xt, out);
                    }
                })
            });
            let f = tile(isa, t);
            let mut i = 0;
            g.bench_function(format!("{}/tile", isa.as_str()), |b| {
                b.iter(|| {
                    i = (i + 1) % packed.len();
                    for (wg, out) in packed[i].chunks_exact(nb).zip(y.chunks_exact_mut(t * ROWS)) {
                        f(black_box(wg), xt, out);
                    }
                })
            });
            if let Some(f) = pair(isa) {
                // Two groups (sixteen rows) a call; dispatch uses it from eight tokens on.
                let mut i = 0;
                g.bench_function(format!("{}/tile2", isa.as_str()), |b| {
                    b.iter(|| {
                        i = (i + 1) % packed.len();
                        let groups = packed[i].chunks_exact(2 * nb);
                        for (wg, out) in groups.zip(y.chunks_exact_mut(2 * t * ROWS)) {
                            let (oa, ob) = out.split_at_mut(t * ROWS);
                            f(black_box(wg), xt, oa, ob);
                        }
                    })
                });
            }
            let d = dot(isa);
            let mut i = 0;
            g.bench_function(format!("{}/row_dot", isa.as_str()), |b| {
                b.iter(|| {
                    i = (i + 1) % mats.len();
                    // Rows outer, tokens inner: each row is read from memory once.
                    for (r, row) in mats[i].chunks_exact(nb).enumerate() {
                        for n in 0..t {
                            y[n * rows_n + r] = d(black_box(row), &xt[n * nb..(n + 1) * nb]);
                        }
                    }
                })
            });
        }
        g.finish();
    }
}

fn qtiles(c: &mut Criterion) {
    let mut rng = TestRng::new(11);
    let (rows_n, cols) = shape();
    let nk = rows_n * cols / 256;
    let nl = rows_n * cols / 32;

    if cols % 256 == 0 {
        let x8k: Vec<BlockQ8K> = rng.q8k(8 * cols / 256);
        bench_format::<BlockQ4K, _>(
            c,
            "q4k",
            rng.q4k(nk),
            x8k.clone(),
            |isa, t| {
                let k = qtile::tile_q4k_q8k::select(isa, &[t]);
                Box::new(move |w, x, o| k.call(w, x, o))
            },
            |isa| {
                let k = Kernels::select(isa).tiles.q4k_pair?;
                // Summed once per product, as the packed pass does.
                let mut sums = vec![[0i16; 8]; x8k.len()];
                woolly_kernels::quant::q8k_sums32(&x8k, &mut sums);
                Some(Box::new(move |w, x, a, b| {
                    k.call(w, x, &sums[..x.len()], a, b)
                }))
            },
            |isa| {
                let k = Kernels::select(isa).vec_dot_q4k_q8k;
                Box::new(move |w, x| k.call(w, x))
            },
        );
        bench_format::<BlockQ6K, _>(
            c,
            "q6k",
            rng.q6k(nk),
            x8k,
            |isa, t| {
                let k = qtile::tile_q6k_q8k::select(isa, &[t]);
                Box::new(move |w, x, o| k.call(w, x, o))
            },
            |isa| {
                let k = Kernels::select(isa).tiles.q6k_pair?;
                Some(Box::new(move |w, x, a, b| k.call(w, x, a, b)))
            },
            |isa| {
                let k = Kernels::select(isa).vec_dot_q6k_q8k;
                Box::new(move |w, x| k.call(w, x))
            },
        );
    }
    let x81: Vec<BlockQ8_1> = rng.q8_1_act(8 * cols / 32);
    let mut x81_f32 = vec![[0.0f32; 2]; x81.len()];
    woolly_kernels::quant::q8_1_scales_f32(&x81, &mut x81_f32);
    bench_format::<BlockQ4_1, _>(
        c,
        "q4_1",
        rng.q4_1(nl),
        x81,
        |isa, t| {
            let k = qtile::tile_q4_1_q8_1::select(isa, &[t]);
            Box::new(move |w, x, o| k.call(w, x, o))
        },
        |isa| {
            let k = Kernels::select(isa).tiles.q4_1_pair?;
            // The scales as f32, converted once per product as the packed pass does
            // (every call's `x` is a prefix of `x81`).
            let xf = x81_f32.clone();
            Some(Box::new(move |w, x, a, b| {
                k.call(w, x, &xf[..x.len()], a, b)
            }))
        },
        |isa| {
            let k = Kernels::select(isa).vec_dot_q4_1_q8_1;
            Box::new(move |w, x| k.call(w, x))
        },
    );
    let x80: Vec<BlockQ8_0> = rng.q8_0_act(8 * cols / 32);
    let mut x80_unsigned = vec![BlockQ8_0Unsigned::ZERO; x80.len()];
    woolly_kernels::quant::q8_0_unsigned(&x80, &mut x80_unsigned);
    bench_format::<BlockQ8_0, _>(
        c,
        "q8_0",
        rng.q8_0(nl),
        x80,
        |isa, t| {
            let k = qtile::tile_q8_0_q8_0::select(isa, &[t]);
            Box::new(move |w, x, o| k.call(w, x, o))
        },
        |isa| {
            let k = Kernels::select(isa).tiles.q8_0_pair?;
            // Made unsigned once per product, as the packed pass does.
            let xu = x80_unsigned.clone();
            Some(Box::new(move |w, x, a, b| {
                k.call(w, x, &xu[..x.len()], a, b)
            }))
        },
        |isa| {
            let k = Kernels::select(isa).vec_dot_q8_0_q8_0;
            Box::new(move |w, x| k.call(w, x))
        },
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(800));
    targets = qtiles
}
criterion_main!(benches);
