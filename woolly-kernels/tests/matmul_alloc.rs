//! `Kernels::matmul_with` allocates nothing once its scratch is warm: a counting global
//! allocator (counting every thread, rayon's workers included) sees zero allocations
//! over 100 calls of every quantized type, batch 1 and batched, on the detected ISA.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use woolly_kernels::ops::matvec::MatmulScratch;
use woolly_kernels::quant;
use woolly_kernels::testing::TestRng;
use woolly_kernels::{GgmlType, Kernels};

/// The system allocator, counting allocations (and reallocations) from every thread.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Weights of `ty` in a buffer aligned for every block type (u64-backed).
fn weights(ty: GgmlType, rows: usize, cols: usize, rng: &mut TestRng) -> Vec<u64> {
    let wf = rng.f32s(rows * cols);
    let bytes = rows * cols / ty.block_len() * ty.block_bytes();
    let mut w = vec![0u8; bytes];
    quant::quantize_row(ty, &wf, &mut w).expect("quantize");
    let mut out = vec![0u64; bytes.div_ceil(8)];
    for (o, c) in out.iter_mut().zip(w.chunks(8)) {
        let mut b = [0u8; 8];
        b[..c.len()].copy_from_slice(c);
        *o = u64::from_le_bytes(b);
    }
    out
}

#[test]
fn warm_matmul_with_allocates_nothing() {
    let k = Kernels::detected();
    let mut rng = TestRng::new(21);
    let mut scratch = MatmulScratch::new();
    // SmolLM2's FFN shape: big enough to run on rayon's pool.
    let (rows, cols) = (1536, 576);
    let types = [
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::F32,
        GgmlType::F16,
    ];
    let mut cases = Vec::new();
    for ty in types {
        let w = weights(ty, rows, cols, &mut rng);
        cases.push((ty, w, cols));
    }
    // k-quants need 256-wide rows.
    for ty in [GgmlType::Q4K, GgmlType::Q6K] {
        cases.push((ty, weights(ty, rows, 512, &mut rng), 512));
    }
    let x = rng.f32s(4 * 576);
    let mut y = vec![0.0f32; 4 * rows];
    // Two warm-up rounds grow the scratch and start rayon's pool (not counted).
    let mut run = |scratch: &mut MatmulScratch| {
        for (ty, w, cols) in &cases {
            let nbytes = rows * cols / ty.block_len() * ty.block_bytes();
            // SAFETY: u8 has no alignment or validity requirement; a view of the u64s'
            // initialised bytes (little-endian, as written by `weights`).
            let (pre, bytes, _) = unsafe { w.align_to::<u8>() };
            assert!(pre.is_empty());
            let bytes = &bytes[..nbytes];
            for batch in [1, 4] {
                let x = &x[..batch * cols];
                let y = &mut y[..batch * rows];
                k.matmul_with(scratch, *ty, bytes, rows, *cols, x, batch, y)
                    .expect("matmul");
            }
        }
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("pool");
    // Called from inside the pool, as a forward pass runs: tasks go to the workers'
    // deques. (A call from outside any pool injects its root job into rayon's global
    // queue, whose crossbeam `Injector` allocates a block per 63 injected jobs.)
    let allocations = pool.install(|| {
        run(&mut scratch);
        run(&mut scratch);
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        for _ in 0..100 {
            run(&mut scratch);
        }
        ALLOCATIONS.load(Ordering::SeqCst) - before
    });
    assert_eq!(
        allocations, 0,
        "allocations in 100 warm rounds of matmul_with"
    );
}
