//! `cargo xtask clock`: what each core delivers when 1, 2, 4.. threads are busy at once.
//!
//! Thread scaling is bounded by the machine before any engine runs: many CPUs clock a
//! core lower when more cores are busy, and a virtual machine's vCPUs may be hyper-thread
//! siblings that share one core's execution units. Two probes, run on every thread at
//! once:
//! - a chain of dependent integer adds, one a cycle on every x86-64 and AArch64 core, so
//!   adds per second is the clock;
//! - independent f32 multiply-adds, eight lanes wide, which fill the core's FMA units, so
//!   a thread's rate halves when another thread shares its core.
//!
//! The product of the two ratios (per thread at N threads over 1 thread) is the speed-up
//! a compute-bound job can reach at N threads: the ceiling for pp512's scaling.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::Instant;

/// Dependent adds per thread and trial: about 0.2 s at 3 GHz.
const ADDS: u64 = 1 << 29;

/// Multiply-add steps per thread and trial (each 16 independent eight-lane
/// multiply-adds): about 0.2 s at 3 GHz with two FMA units.
const FMA_STEPS: u64 = 1 << 26;

/// One thread count's figures: the mean over its threads.
#[derive(Clone, Copy)]
struct Probe {
    threads: usize,
    /// Dependent adds per nanosecond: the clock in GHz.
    ghz: f64,
    /// Eight-lane multiply-adds per nanosecond.
    fma_per_ns: f64,
}

/// Runs `n` dependent adds (a whole number of eights, at least one) and returns the
/// chain's end (so it is not optimized away).
fn dependent_adds(n: u64) -> u64 {
    // The loop below runs eight adds a turn and at least one turn.
    assert!(
        n >= 8 && n.is_multiple_of(8),
        "{n} adds: a whole number of eights"
    );
    let mut x = black_box(0u64);
    #[cfg(target_arch = "x86_64")]
    {
        let i = n / 8;
        // Register to register: some cores (Intel's Golden Cove) fold adds of an
        // immediate at rename, several a cycle.
        // SAFETY: register arithmetic only: no memory, no stack, no flags kept.
        unsafe {
            std::arch::asm!(
                "2:",
                "add {x}, {one}", "add {x}, {one}", "add {x}, {one}", "add {x}, {one}",
                "add {x}, {one}", "add {x}, {one}", "add {x}, {one}", "add {x}, {one}",
                "dec {i}",
                "jnz 2b",
                x = inout(reg) x,
                i = inout(reg) i => _,
                one = in(reg) 1u64,
                options(nomem, nostack),
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    for _ in 0..n {
        x = black_box(x.wrapping_add(1));
    }
    x
}

/// Runs `steps` rounds of 16 independent eight-lane multiply-adds; returns a lane sum.
fn fma_lanes(steps: u64) -> f32 {
    let mut acc = [[1.0f32; 8]; 16];
    let (a, b) = (black_box([0.999_999f32; 8]), black_box([1e-7f32; 8]));
    for _ in 0..steps {
        for lane in acc.iter_mut() {
            for ((x, a), b) in lane.iter_mut().zip(a).zip(b) {
                *x = x.mul_add(a, b);
            }
        }
    }
    acc.iter().flatten().sum()
}

/// The same with AVX2 and FMA (checked by the caller): one `vfmadd` per lane group.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_lanes_avx2(steps: u64) -> f32 {
    use std::arch::x86_64::*;
    let (a, b) = (
        _mm256_set1_ps(black_box(0.999_999)),
        _mm256_set1_ps(black_box(1e-7)),
    );
    let mut acc = [_mm256_set1_ps(1.0); 16];
    for _ in 0..steps {
        for x in acc.iter_mut() {
            *x = _mm256_fmadd_ps(*x, a, b);
        }
    }
    let mut lanes = [[0.0f32; 8]; 16];
    for (out, x) in lanes.iter_mut().zip(acc) {
        // SAFETY: `out` holds eight f32s, what one 256-bit store writes.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), x) };
    }
    lanes.iter().flatten().sum()
}

fn fma_probe(steps: u64) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        return unsafe { fma_lanes_avx2(steps) };
    }
    fma_lanes(steps)
}

/// Runs `work` on `threads` threads started together; returns each thread's seconds.
fn timed_on_threads(threads: usize, work: impl Fn() + Sync) -> Vec<f64> {
    let start = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    let t = Instant::now();
                    work();
                    t.elapsed().as_secs_f64()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Trials of each probe; the fastest counts, as the one least disturbed by other work.
const TRIALS: usize = 3;

/// The mean seconds per thread of the fastest of [`TRIALS`] runs of `work` on `threads`.
fn best_mean(threads: usize, work: impl Fn() + Sync) -> f64 {
    (0..TRIALS)
        .map(|_| mean(&timed_on_threads(threads, &work)))
        .fold(f64::INFINITY, f64::min)
}

fn probe(threads: usize) -> Probe {
    let adds = best_mean(threads, || {
        black_box(dependent_adds(ADDS));
    });
    let fma = best_mean(threads, || {
        black_box(fma_probe(FMA_STEPS));
    });
    Probe {
        threads,
        ghz: ADDS as f64 / adds / 1e9,
        fma_per_ns: (FMA_STEPS * 16) as f64 / fma / 1e9,
    }
}

/// The thread counts to probe by default: 1 and each power of two up to `max`, and `max`.
pub fn default_counts(max: usize) -> Vec<usize> {
    let mut counts: Vec<usize> = std::iter::successors(Some(1), |&n| Some(n * 2))
        .take_while(|&n| n < max)
        .collect();
    counts.push(max);
    counts
}

/// Prints, for each thread count, the clock and FMA rate per thread and the speed-up
/// ceiling they imply.
pub fn run(counts: &[usize]) -> anyhow::Result<()> {
    // Warm up the core's clock before the one-thread baseline.
    black_box(dependent_adds(ADDS));
    let one = probe(1);
    println!(
        "| threads | clock per thread (GHz) | FMA rate per thread vs 1 thread | speed-up ceiling |"
    );
    println!("| ---: | ---: | ---: | ---: |");
    for &n in counts {
        let p = if n == 1 { one } else { probe(n) };
        let fma_ratio = p.fma_per_ns / one.fma_per_ns;
        println!(
            "| {} | {:.2} | {:.2} | {:.1}x |",
            p.threads,
            p.ghz,
            fma_ratio,
            p.threads as f64 * fma_ratio
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_counts_are_powers_of_two_then_the_maximum() {
        assert_eq!(default_counts(1), vec![1]);
        assert_eq!(default_counts(2), vec![1, 2]);
        assert_eq!(default_counts(16), vec![1, 2, 4, 8, 16]);
        assert_eq!(default_counts(12), vec![1, 2, 4, 8, 12]);
    }

    #[test]
    fn the_probes_compute_what_they_claim() {
        assert_eq!(dependent_adds(800), 800);
        // 1 * 0.999999 + 1e-7, twice, in every lane.
        let once = 1.0f32.mul_add(0.999_999, 1e-7);
        let twice = once.mul_add(0.999_999, 1e-7);
        let expected: f32 = std::iter::repeat_n(twice, 128).sum();
        assert_eq!(fma_probe(2), expected);
        assert_eq!(fma_lanes(2), expected);
    }
}
