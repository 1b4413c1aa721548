//! No heap allocation per generated token after warm-up: a counting global allocator
//! watches every thread while the decode path evaluates and samples tokens.
//!
//! The loop runs on the thread pool (inside one `rayon::scope`), as a caller that keeps
//! its generation loop there does. A caller on a thread outside the pool pays rayon's
//! job injector instead: about one allocation per 63 parallel operations (15 in 32
//! tokens of this model, measured), which Woolly's own code does not cause.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use woolly_model::paths::conformance_file;
use woolly_model::sampling::{Sampler, SamplingParams};
use woolly_model::{BatchToken, KvType, Model};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn decoding_a_token_allocates_nothing_after_warm_up() {
    let model = Model::load(conformance_file("models/tiny-q4km.gguf")).unwrap();
    let n_ctx = 64;
    let mut kv = model.new_cache(1, n_ctx, KvType::F16, u128::MAX).unwrap();
    let mut scratch = model.new_scratch(8, n_ctx);
    let mut sampler = Sampler::new(SamplingParams {
        seed: 1,
        ..SamplingParams::default()
    });
    let mut history: Vec<u32> = Vec::with_capacity(n_ctx);
    let mut step = |token: u32, pos: usize, history: &mut Vec<u32>| {
        model
            .forward(
                &[BatchToken {
                    token,
                    pos,
                    seq: 0,
                    logits: true,
                }],
                &mut kv,
                &mut scratch,
            )
            .unwrap();
        history.push(token);
        sampler.sample(scratch.logits_row(0), history).unwrap()
    };
    let allocated = rayon::scope(|_| {
        // Warm-up: buffers grow to their working size.
        let mut token = 1;
        for pos in 0..4 {
            token = step(token, pos, &mut history);
        }
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        for pos in 4..36 {
            token = step(token, pos, &mut history);
        }
        ALLOCATIONS.load(Ordering::SeqCst) - before
    });
    assert_eq!(allocated, 0, "{allocated} allocations in 32 decoded tokens");
}
