//! A team of spinning threads for the many short parallel steps of a forward pass.
//!
//! Token generation runs about five parallel steps per layer (the q/k/v products,
//! attention, the output projection, gate/up, down), each a few hundred microseconds or
//! less. Rayon's workers go to sleep between such steps and each step then pays a futex
//! wake-up and a context switch: on tinyllama's decode that was about 12% of the samples
//! (`perf`, scheduler and `sched_yield` symbols). A team's workers instead spin for a
//! while ([`SPIN`]) after each step, so the next step starts within a cache-line
//! round trip, and only then park.
//!
//! [`run`] gives each worker a contiguous range of the tasks `0..n_tasks` (the caller
//! takes part as worker 0), so each thread streams one contiguous stretch of a weight
//! matrix, which the prefetchers follow; a worker that finishes its range takes the
//! remaining tasks of the others', one at a time (measured: handing tasks out
//! round-robin from one counter made tinyllama's decode 6% slower than rayon's halving
//! splits). The team has as many threads as the rayon pool the caller is
//! in (`rayon::current_num_threads()`), so `--threads` and `ThreadPool::install` keep
//! configuring the parallelism. Which worker runs which task never changes a result:
//! callers write each task's output to its own place.
//!
//! A worker joins a step only while it is open, and the caller closes it as soon as its
//! tasks are done and no worker is inside: a worker the scheduler keeps off the cores
//! (more threads than cores, a shared host, qemu) misses the step instead of holding it
//! up, since the others take the tasks of its range.
//!
//! One step runs on a team at a time. A call made while the team of that size is busy
//! (another thread's forward pass) or from inside a task runs its tasks inline on the
//! calling thread, as worker 0, so nesting and concurrent callers are safe.

use std::any::Any;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, TryLockError};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How long an idle worker spins for the next step before it parks: longer than the
/// gaps between the steps of one forward pass (norms, RoPE: microseconds), shorter than
/// the work between passes in a server (sampling, streaming, the clients themselves),
/// which needs the cores more. Measured with `serve_bench.py` on 2 cores: 1 ms of
/// spinning gave 8 streams 500-700 tokens/s, 100 us 700-790.
pub const SPIN: Duration = Duration::from_micros(100);

thread_local! {
    /// Whether this thread is running a team's task (or is a team worker), so that a
    /// nested [`run`] runs inline.
    static IN_TEAM: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f(worker, task)` for every `task` in `0..n_tasks`, in parallel on the team of
/// the current rayon pool's size, and returns when all have run. `worker` is below
/// [`workers`] and no two tasks running at the same time share it, so it can index
/// per-thread scratch buffers.
///
/// # Panics
/// When a task panics: the other tasks still finish, then the first panic is resumed.
pub fn run(n_tasks: usize, f: impl Fn(usize, usize) + Sync) {
    let size = workers();
    if n_tasks <= 1 || size <= 1 || IN_TEAM.get() {
        run_inline(n_tasks, &f);
        return;
    }
    let team = team_of(size);
    match team.busy.try_lock() {
        Ok(_guard) => team.dispatch(n_tasks, &f),
        Err(TryLockError::WouldBlock | TryLockError::Poisoned(_)) => run_inline(n_tasks, &f),
    }
}

/// Runs every task on this thread as worker 0, as a task (nested runs inline too); the
/// other tasks still run after one panics, then the first panic is resumed.
fn run_inline(n_tasks: usize, f: &(dyn Fn(usize, usize) + Sync)) {
    let outer = IN_TEAM.replace(true);
    let mut first_panic = None;
    for t in 0..n_tasks {
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(0, t))) {
            first_panic.get_or_insert(p);
        }
    }
    IN_TEAM.set(outer);
    if let Some(p) = first_panic {
        resume_unwind(p);
    }
}

/// Runs `f(i, chunk_i)` over `out` cut into chunks of `chunk` elements (the last may be
/// shorter), in parallel as [`run`] does.
///
/// # Panics
/// When `chunk` is 0 and `out` is not empty, or when a task panics.
pub fn for_each_chunk<T: Send>(out: &mut [T], chunk: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    if out.is_empty() {
        return;
    }
    assert!(chunk > 0, "chunks of zero elements");
    let out = RawChunks::new(out, chunk);
    run(out.count(), |_, i| {
        // SAFETY: `run` calls each task index once, so chunk `i` is borrowed once.
        f(i, unsafe { out.get(i) })
    });
}

/// Runs `f(i, a_i, b_i)` for the `i`-th chunks of `a` (of `a_chunk` elements) and `b`
/// (of `b_chunk`), which must have as many chunks, in parallel as [`run`] does.
///
/// # Panics
/// When the chunk counts differ, a chunk size is 0, or a task panics.
pub fn for_each_chunk_zip<A: Send, B: Send>(
    (a, a_chunk): (&mut [A], usize),
    (b, b_chunk): (&mut [B], usize),
    f: impl Fn(usize, &mut [A], &mut [B]) + Sync,
) {
    assert!(a_chunk > 0 && b_chunk > 0, "chunks of zero elements");
    let (a, b) = (RawChunks::new(a, a_chunk), RawChunks::new(b, b_chunk));
    assert_eq!(a.count(), b.count(), "chunk counts differ");
    run(a.count(), |_, i| {
        // SAFETY: `run` calls each task index once, so chunks `i` of `a` and `b` are
        // borrowed once.
        let (ai, bi) = unsafe { (a.get(i), b.get(i)) };
        f(i, ai, bi)
    });
}

/// Runs `f(i, a_i, b_i, scratch_w)` for the `i`-th chunks of `a` (of `a_chunk`) and `b`
/// (of `b_chunk`), which must have as many chunks, with `scratch_w` the chunk (of
/// `s_chunk`) of `scratch` that belongs to the worker running the task: per-thread
/// scratch without thread-locals.
///
/// # Panics
/// When the chunk counts differ, `scratch` has fewer than [`workers`] chunks, a chunk
/// size is 0, or a task panics.
pub fn for_each_chunk_pair<A: Send, B: Send, S: Send>(
    (a, a_chunk): (&mut [A], usize),
    (b, b_chunk): (&mut [B], usize),
    (scratch, s_chunk): (&mut [S], usize),
    f: impl Fn(usize, &mut [A], &mut [B], &mut [S]) + Sync,
) {
    assert!(
        a_chunk > 0 && b_chunk > 0 && s_chunk > 0,
        "chunks of zero elements"
    );
    let (a, b) = (RawChunks::new(a, a_chunk), RawChunks::new(b, b_chunk));
    assert_eq!(a.count(), b.count(), "chunk counts differ");
    assert!(
        scratch.len() / s_chunk >= workers(),
        "a scratch chunk per worker"
    );
    let scratch = RawChunks::new(scratch, s_chunk);
    run(a.count(), |w, i| {
        // SAFETY: `run` calls each task index once, so chunks `i` of `a` and `b` are
        // borrowed once; it never runs two tasks at the same time as the same worker
        // `w < workers()`, so scratch chunk `w` is borrowed once at a time.
        let (ai, bi, sw) = unsafe { (a.get(i), b.get(i), scratch.get(w)) };
        f(i, ai, bi, sw)
    });
}

/// Runs `f(i, scratch_w)` for the tasks `0..n_tasks`, with `scratch_w` the chunk (of
/// `s_chunk`) of `scratch` that belongs to the worker running the task, in parallel as
/// [`run`] does: per-thread scratch for tasks whose outputs are not one slice.
///
/// # Panics
/// When `scratch` has fewer than [`workers`] chunks, `s_chunk` is 0, or a task panics.
pub fn for_each_task_with_scratch<S: Send>(
    n_tasks: usize,
    (scratch, s_chunk): (&mut [S], usize),
    f: impl Fn(usize, &mut [S]) + Sync,
) {
    assert!(s_chunk > 0, "chunks of zero elements");
    assert!(
        scratch.len() / s_chunk >= workers(),
        "a scratch chunk per worker"
    );
    let scratch = RawChunks::new(scratch, s_chunk);
    run(n_tasks, |w, i| {
        // SAFETY: `run` never runs two tasks at the same time as the same worker
        // `w < workers()`, so scratch chunk `w` is borrowed once at a time.
        f(i, unsafe { scratch.get(w) })
    });
}

/// A slice cut into chunks that tasks borrow mutably, each at most once at a time.
struct RawChunks<'a, T> {
    ptr: *mut T,
    len: usize,
    chunk: usize,
    _slice: std::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: tasks on other threads get disjoint `&mut [T]` (see `get`), which needs
// `T: Send`, as for `&mut [T]` itself.
unsafe impl<T: Send> Sync for RawChunks<'_, T> {}

impl<'a, T> RawChunks<'a, T> {
    fn new(s: &'a mut [T], chunk: usize) -> Self {
        RawChunks {
            ptr: s.as_mut_ptr(),
            len: s.len(),
            chunk,
            _slice: std::marker::PhantomData,
        }
    }

    fn count(&self) -> usize {
        self.len.div_ceil(self.chunk)
    }

    /// Chunk `i`.
    ///
    /// # Safety
    /// No other borrow of chunk `i` may be live.
    unsafe fn get(&self, i: usize) -> &'a mut [T] {
        let start = i * self.chunk;
        assert!(start < self.len, "chunk {i} out of range");
        let n = self.chunk.min(self.len - start);
        // SAFETY: `start + n <= len` elements of the borrowed slice; the caller ensures
        // this chunk is not borrowed elsewhere.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), n) }
    }
}

/// The number of workers [`run`] uses from this thread: the current rayon pool's size,
/// or 1 inside a task (where [`run`] runs inline).
pub fn workers() -> usize {
    if IN_TEAM.get() {
        1
    } else {
        rayon::current_num_threads().max(1)
    }
}

/// The team with `size` threads (the caller and `size - 1` workers), started on first use
/// and kept for the life of the process.
fn team_of(size: usize) -> Arc<Team> {
    static TEAMS: OnceLock<Mutex<Vec<Arc<Team>>>> = OnceLock::new();
    let mut teams = TEAMS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(t) = teams.iter().find(|t| t.size == size) {
        return Arc::clone(t);
    }
    let team = Arc::new(Team::start(size));
    teams.push(Arc::clone(&team));
    team
}

/// One step: the closure and the next task to hand out. Lives on the caller's stack for
/// the duration of [`Team::dispatch`].
struct Job<'a> {
    f: &'a (dyn Fn(usize, usize) + Sync),
    n_tasks: usize,
    /// The next task of each worker's range (reset by `dispatch`).
    cursors: &'a [Cursor],
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

/// A worker's next task, alone on its cache line.
#[repr(align(128))]
#[derive(Default)]
struct Cursor(AtomicUsize);

impl Job<'_> {
    /// The end of worker `w`'s range of tasks (its start is the end of `w - 1`'s).
    fn range_end(&self, w: usize) -> usize {
        (w + 1) * self.n_tasks / self.cursors.len()
    }

    /// Runs the tasks of worker `worker`'s range, then those left in the others' ranges,
    /// until none are left; keeps the first panic.
    fn work(&self, worker: usize) {
        let size = self.cursors.len();
        for v in (worker..size).chain(0..worker) {
            let end = self.range_end(v);
            loop {
                let t = self.cursors[v].0.fetch_add(1, Ordering::Relaxed);
                if t >= end {
                    break;
                }
                if let Err(p) = catch_unwind(AssertUnwindSafe(|| (self.f)(worker, t))) {
                    let mut slot = self.panic.lock().unwrap_or_else(|e| e.into_inner());
                    slot.get_or_insert(p);
                }
            }
        }
    }
}

/// What the caller and the workers share.
struct Shared {
    /// The current step: its epoch, whether it is closed, and how many workers have
    /// joined it and not yet left (see [`StepState`]). A worker joins only an open step,
    /// and the caller closes a step only when no worker is in it, so a worker that the
    /// scheduler keeps off the cores (an oversubscribed or shared machine) never holds
    /// a step up: the others take its tasks and the step ends without it.
    state: AtomicU64,
    /// The current step's [`Job`], valid while its step is open or joined.
    job: AtomicPtr<()>,
    /// Per worker (index `w - 1`): parked, or about to park, waiting for an unpark.
    sleeping: Vec<AtomicBool>,
    /// Per worker, caller included: the next task of its range.
    cursors: Vec<Cursor>,
}

/// The fields packed in [`Shared::state`]: the epoch in the high 32 bits (wrapping), a
/// closed flag, and in the low 31 bits the workers inside the step.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct StepState(u64);

impl StepState {
    const CLOSED: u64 = 1 << 31;
    const JOINED: u64 = Self::CLOSED - 1;

    /// The open step `epoch`, with no worker in it yet.
    fn open(epoch: u32) -> StepState {
        StepState(u64::from(epoch) << 32)
    }

    fn epoch(self) -> u32 {
        (self.0 >> 32) as u32
    }

    fn closed(self) -> bool {
        self.0 & Self::CLOSED != 0
    }

    fn joined(self) -> u64 {
        self.0 & Self::JOINED
    }
}

struct Team {
    size: usize,
    shared: Arc<Shared>,
    /// The workers' handles, to unpark them.
    threads: Vec<Thread>,
    /// Held for the duration of one step.
    busy: Mutex<()>,
}

impl Team {
    fn start(size: usize) -> Team {
        let shared = Arc::new(Shared {
            state: AtomicU64::new(StepState::CLOSED),
            job: AtomicPtr::new(std::ptr::null_mut()),
            sleeping: (1..size).map(|_| AtomicBool::new(false)).collect(),
            cursors: (0..size).map(|_| Cursor::default()).collect(),
        });
        let threads = (1..size)
            .map(|w| {
                let shared = Arc::clone(&shared);
                thread::Builder::new()
                    .name(format!("woolly-team-{w}"))
                    .spawn(move || worker_loop(&shared, w))
                    .expect("spawning a team worker")
                    .thread()
                    .clone()
            })
            .collect();
        Team {
            size,
            shared,
            threads,
            busy: Mutex::new(()),
        }
    }

    /// Runs one step on every thread of the team (the caller holds `busy`).
    fn dispatch(&self, n_tasks: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        let s = &*self.shared;
        let job = Job {
            f,
            n_tasks,
            cursors: &s.cursors,
            panic: Mutex::new(None),
        };
        for (w, c) in s.cursors.iter().enumerate() {
            // Published to the workers by the epoch bump below.
            let start = if w == 0 { 0 } else { job.range_end(w - 1) };
            c.0.store(start, Ordering::Relaxed);
        }
        s.job
            .store((&raw const job).cast::<()>().cast_mut(), Ordering::Relaxed);
        // The previous step is closed with no worker in it, so nothing else writes the
        // state now. SeqCst pairs with the workers' `sleeping` store and state re-check:
        // either a worker sees the new step before parking or we see it sleeping and
        // unpark it. The store also publishes the job and the cursors (release).
        let epoch = StepState(s.state.load(Ordering::Relaxed))
            .epoch()
            .wrapping_add(1);
        s.state.store(StepState::open(epoch).0, Ordering::SeqCst);
        for (flag, t) in s.sleeping.iter().zip(&self.threads) {
            if flag.swap(false, Ordering::SeqCst) {
                t.unpark();
            }
        }
        IN_TEAM.set(true);
        job.work(0);
        IN_TEAM.set(false);
        // Every task has been taken: those not taken by a worker inside the step ran
        // here. `job` must outlive every worker's use of it: close the step once no
        // worker is inside (those that come later see it closed and leave it alone),
        // whatever happened in our own share (its panics were caught).
        let mut spins = 0u32;
        loop {
            let now = s.state.load(Ordering::Acquire);
            if StepState(now).joined() == 0 {
                // Acquire: the tasks' writes of the workers that left are visible.
                let closed = now | StepState::CLOSED;
                if s.state
                    .compare_exchange_weak(now, closed, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    break;
                }
                continue;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1 << 14) {
                // A worker descheduled in the middle of a task: let it run.
                thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        let panic = job.panic.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = panic {
            resume_unwind(p);
        }
    }
}

/// A worker: waits for each new step, joins it if it is still open, runs tasks until
/// none are left, and leaves.
fn worker_loop(s: &Shared, w: usize) {
    IN_TEAM.set(true);
    let mut seen = StepState(s.state.load(Ordering::Relaxed)).epoch();
    loop {
        seen = wait_for_epoch(s, w, seen);
        #[cfg(test)]
        tests::hold_point(w);
        if !join(s, seen) {
            continue;
        }
        let job = s.job.load(Ordering::Relaxed).cast_const().cast::<Job<'_>>();
        // SAFETY: `dispatch` stored a pointer to a live `Job` before opening the step we
        // joined (our acquire in `join` saw that release), and does not return (ending
        // the job's life) until it has closed the step, which it does only when no
        // worker is inside; we leave only after our last use of the job. Job is Sync
        // (its closure is `Sync`, its other fields atomics and a mutex).
        let job = unsafe { &*job };
        job.work(w);
        s.state.fetch_sub(1, Ordering::Release);
    }
}

/// Enters step `epoch` if it is still open; false when it is closed (it ended without
/// us) or a later step has replaced it (the caller waits for that one next).
fn join(s: &Shared, epoch: u32) -> bool {
    let mut now = StepState(s.state.load(Ordering::Relaxed));
    while now.epoch() == epoch && !now.closed() {
        match s
            .state
            .compare_exchange_weak(now.0, now.0 + 1, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => return true,
            Err(v) => now = StepState(v),
        }
    }
    false
}

/// Spins up to [`SPIN`] for an epoch other than `seen`, then parks until unparked;
/// returns the new epoch.
fn wait_for_epoch(s: &Shared, w: usize, seen: u32) -> u32 {
    let epoch = || StepState(s.state.load(Ordering::Acquire)).epoch();
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        let e = epoch();
        if e != seen {
            return e;
        }
        spins += 1;
        if spins.is_multiple_of(256) && start.elapsed() >= SPIN {
            let flag = &s.sleeping[w - 1];
            // A read-modify-write, not a store: the store-then-load order this handshake
            // needs is then kept even where SeqCst stores and loads alone do not keep it
            // (qemu-user runs aarch64's STLR-then-LDAR as a plain store and load on x86,
            // whose store buffer lets the load go first: a lost wake-up).
            flag.swap(true, Ordering::SeqCst);
            if StepState(s.state.load(Ordering::SeqCst)).epoch() == seen {
                // Returns at once if unparked since; spurious returns loop back here.
                thread::park();
            }
            flag.store(false, Ordering::SeqCst);
            spins = 0;
            let e = epoch();
            if e != seen {
                return e;
            }
            // Spurious wake-up: spin again (briefly) before the next park.
        }
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn pool(n: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    }

    #[test]
    fn every_task_runs_once_with_distinct_live_workers() {
        for threads in [1, 2, 3] {
            pool(threads).install(|| {
                for n_tasks in [0, 1, 2, 7, 100] {
                    let counts: Vec<AtomicU32> = (0..n_tasks).map(|_| AtomicU32::new(0)).collect();
                    let size = workers();
                    assert_eq!(size, threads);
                    let busy: Vec<AtomicBool> = (0..size).map(|_| AtomicBool::new(false)).collect();
                    run(n_tasks, |w, t| {
                        assert!(w < size);
                        assert_eq!(workers(), 1, "nested runs are inline");
                        assert!(!busy[w].swap(true, Ordering::SeqCst), "worker {w} shared");
                        counts[t].fetch_add(1, Ordering::Relaxed);
                        busy[w].store(false, Ordering::SeqCst);
                    });
                    assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
                }
            });
        }
    }

    #[test]
    fn chunks_are_handed_out_once_with_private_scratch() {
        pool(2).install(|| {
            let mut a = vec![0u32; 103];
            let mut b = vec![0u64; 11 * 2];
            let mut scratch = vec![0u8; 4 * workers()];
            for_each_chunk_pair(
                (&mut a, 10),
                (&mut b, 2),
                (&mut scratch, 4),
                |i, a, b, s| {
                    s.fill(i as u8);
                    a.iter_mut().for_each(|x| *x += i as u32 + 1);
                    b.iter_mut().for_each(|x| *x += 1);
                    assert!(s.iter().all(|&x| x == i as u8), "scratch shared");
                },
            );
            for (j, x) in a.iter().enumerate() {
                assert_eq!(*x, j as u32 / 10 + 1);
            }
            assert!(b.iter().all(|&x| x == 1));
            let mut c = vec![0usize; 50];
            for_each_chunk(&mut c, 7, |i, c| c.fill(i));
            assert!(c.iter().enumerate().all(|(j, &x)| x == j / 7));
            let (mut d, mut e) = (vec![0usize; 29], vec![0u8; 15 * 3]);
            for_each_chunk_zip((&mut d, 2), (&mut e, 3), |i, d, e| {
                d.iter_mut().for_each(|x| *x += i + 1);
                e.iter_mut().for_each(|x| *x += 1);
            });
            assert!(d.iter().enumerate().all(|(j, &x)| x == j / 2 + 1));
            assert!(e.iter().all(|&x| x == 1));
        });
    }

    #[test]
    fn steps_after_the_workers_parked_still_run() {
        pool(2).install(|| {
            for _ in 0..3 {
                let sum = AtomicUsize::new(0);
                run(64, |_, t| {
                    sum.fetch_add(t, Ordering::Relaxed);
                });
                assert_eq!(sum.into_inner(), 64 * 63 / 2);
                thread::sleep(SPIN * 3);
            }
        });
    }

    #[test]
    fn nested_and_concurrent_calls_complete() {
        pool(2).install(|| {
            let total = AtomicUsize::new(0);
            rayon::join(
                || {
                    run(8, |_, _| {
                        run(4, |_, _| {
                            total.fetch_add(1, Ordering::Relaxed);
                        })
                    })
                },
                || {
                    run(8, |_, _| {
                        total.fetch_add(1, Ordering::Relaxed);
                    })
                },
            );
            assert_eq!(total.into_inner(), 8 * 4 + 8);
        });
    }

    /// Worker number to keep out of the steps it sees (0: none), at [`hold_point`].
    static HELD_WORKER: AtomicUsize = AtomicUsize::new(0);

    /// Where a worker that has seen a new step waits while [`HELD_WORKER`] names it, as
    /// if the scheduler had taken its core away.
    pub(super) fn hold_point(w: usize) {
        while HELD_WORKER.load(Ordering::SeqCst) == w {
            thread::sleep(Duration::from_micros(50));
        }
    }

    /// A step does not wait for a worker that is off the cores: the caller runs the
    /// tasks of that worker's range, closes the step, and the worker, once back, stays
    /// out of it.
    #[test]
    fn a_step_ends_without_a_worker_that_is_held_off() {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let step = thread::spawn(move || {
            pool(2).install(|| {
                run(2, |_, _| {}); // The team and its worker exist.
                HELD_WORKER.store(1, Ordering::SeqCst);
                let by_caller = AtomicUsize::new(0);
                run(8, |w, _| {
                    if w == 0 {
                        by_caller.fetch_add(1, Ordering::Relaxed);
                    }
                });
                done_tx.send(by_caller.into_inner()).unwrap();
            })
        });
        let by_caller = done_rx.recv_timeout(Duration::from_secs(20));
        HELD_WORKER.store(0, Ordering::SeqCst);
        step.join().unwrap();
        assert_eq!(by_caller, Ok(8), "the step waited for the held worker");
        // Back, the worker joins the next steps again.
        pool(2).install(|| {
            let n = AtomicUsize::new(0);
            for _ in 0..100 {
                run(16, |_, _| {
                    n.fetch_add(1, Ordering::Relaxed);
                });
            }
            assert_eq!(n.into_inner(), 1600);
        });
    }

    #[test]
    fn a_panicking_task_is_resumed_after_the_others_finish() {
        pool(2).install(|| {
            let done = AtomicUsize::new(0);
            let r = catch_unwind(AssertUnwindSafe(|| {
                run(16, |_, t| {
                    if t == 3 {
                        panic!("task 3");
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                })
            }));
            assert!(r.is_err());
            assert_eq!(done.load(Ordering::Relaxed), 15);
            // The team still works.
            let n = AtomicUsize::new(0);
            run(5, |_, _| {
                n.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(n.into_inner(), 5);
        });
    }
}
