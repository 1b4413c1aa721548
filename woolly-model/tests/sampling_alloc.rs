//! After its first call, `Sampler::sample` does not allocate: counted with a global
//! allocator that counts this thread's allocations while asked to.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use woolly_model::sampling::{Sampler, SamplingParams};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the thread's locals may already be gone while it exits.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = COUNT.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches
// only const-initialized thread locals, which do not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    COUNT.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    COUNT.with(|n| n.get())
}

#[test]
fn sampling_allocates_only_on_the_first_call() {
    const VOCAB: usize = 49_152;
    // Deterministic, varied logits (an LCG), never all equal.
    let mut x = 12345u32;
    let logits: Vec<f32> = (0..VOCAB)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 8) as f32 / (1u32 << 24) as f32 * 20.0 - 10.0
        })
        .collect();
    let history: Vec<u32> = (0..200).map(|i| (i * 37 % VOCAB) as u32).collect();

    let configs = [
        SamplingParams::default(),
        SamplingParams {
            repeat_penalty: 1.3,
            top_k: 0,
            ..SamplingParams::default()
        },
        SamplingParams {
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..SamplingParams::default()
        },
        SamplingParams {
            repeat_penalty: 1.1,
            ..SamplingParams::greedy()
        },
    ];
    for params in configs {
        let mut sampler = Sampler::new(params);
        let first = allocations(|| {
            sampler.sample(&logits, &history).unwrap();
        });
        assert!(first > 0, "{params:?}: the first call sizes the scratch");
        let rest = allocations(|| {
            for i in 0..100 {
                let t = sampler.sample(&logits, &history[..100 + i]).unwrap();
                assert!((t as usize) < VOCAB);
            }
        });
        assert_eq!(rest, 0, "{params:?}: 100 calls after the first allocated");
    }
}
