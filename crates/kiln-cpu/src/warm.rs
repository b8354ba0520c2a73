//! Keeping rayon's workers awake through a run of small parallel ops.
//!
//! A training step of a small model is a few dozen products of 1–10 MFLOP
//! with serial work between them (activations, losses, bookkeeping). Each
//! product splits across the pool, but between two of them rayon's idle
//! workers spin only briefly and then sleep, so every split pays for a
//! thread wake-up, which on a virtual machine costs about as much as the
//! work it hands over. [`KeepWarm`] holds the other workers in a polling
//! loop instead, as OpenMP runtimes do for a while after each parallel
//! region: they take split work within a poll, and never sleep while the
//! guard lives.
//!
//! Results do not change: which thread runs a piece of work never decides
//! how the work is split or summed.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// After this long without work a polling worker also yields its core at
/// each poll, so that other runnable threads (another process on a busy
/// machine) get it; it still picks up work within a poll.
const POLITE_AFTER: Duration = Duration::from_millis(1);

/// After this long without work a polling worker leaves its loop (and
/// sleeps as rayon's workers do), guard or not. A worker waiting inside a
/// job for a stolen half runs any pending job, this loop's included, and
/// the job it waits in resumes only when the loop ends: the limit bounds
/// that wait when the pool runs dry, so two guards on one pool, each loop
/// nested in the other's work, cannot hold each other forever.
const IDLE_EXIT: Duration = Duration::from_millis(5);

thread_local! {
    /// Whether this thread is in a polling loop already (a second guard's
    /// loop, reached from inside the first, returns at once).
    static POLLING: Cell<bool> = const { Cell::new(false) };
}

struct State {
    stop: AtomicBool,
    polling: AtomicUsize,
    idle_exit: Duration,
}

/// While alive, the workers of the current rayon pool (the global pool
/// outside any) poll for work instead of sleeping: all of them but the
/// caller, or all of them when the caller is not one (it sleeps while the
/// pool runs its work).
///
/// Hold one around each step of a loop of small parallel ops, such as a
/// training step on the CPU, and drop it after: the workers keep a core
/// each busy until then, and leave their loop after 5 ms without work in
/// any case. With one thread it does nothing. Dropping it does not wait:
/// each worker leaves its loop at its next poll.
///
/// ```
/// let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
/// let sum: u64 = pool.install(|| {
///     let _warm = kiln_cpu::warm::KeepWarm::new();
///     (0..100).map(|i| rayon::join(|| i, || 2 * i)).map(|(a, b)| a + b).sum()
/// });
/// assert_eq!(sum, 3 * 4950);
/// ```
#[must_use = "the workers stop polling when the guard is dropped"]
pub struct KeepWarm {
    state: Option<Arc<State>>,
}

impl KeepWarm {
    /// Starts the other workers polling (none with one thread).
    pub fn new() -> Self {
        Self::with_idle_exit(IDLE_EXIT)
    }

    fn with_idle_exit(idle_exit: Duration) -> Self {
        if rayon::current_num_threads() < 2 {
            return KeepWarm { state: None };
        }
        let state = Arc::new(State {
            stop: AtomicBool::new(false),
            polling: AtomicUsize::new(0),
            idle_exit,
        });
        let caller = rayon::current_thread_index();
        let shared = state.clone();
        // One job per worker; the caller's returns at once (it runs when
        // the caller next waits for stolen work).
        rayon::spawn_broadcast(move |ctx| {
            if Some(ctx.index()) != caller {
                poll(&shared);
            }
        });
        KeepWarm { state: Some(state) }
    }

    /// How many workers are in their polling loop now (they enter it shortly
    /// after [`KeepWarm::new`] and leave it shortly after the drop, or after
    /// 5 ms without work).
    pub fn polling(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.polling.load(Ordering::Acquire))
    }
}

impl Default for KeepWarm {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for KeepWarm {
    fn drop(&mut self) {
        if let Some(s) = &self.state {
            s.stop.store(true, Ordering::Release);
        }
    }
}

/// A worker's loop: run whatever work the pool has, until `stop` or
/// `idle_exit` ([`IDLE_EXIT`]) without work.
fn poll(state: &State) {
    if POLLING.with(|p| p.replace(true)) {
        return;
    }
    state.polling.fetch_add(1, Ordering::AcqRel);
    let mut idle_since = Instant::now();
    while !state.stop.load(Ordering::Acquire) {
        if let Some(rayon::Yield::Executed) = rayon::yield_now() {
            idle_since = Instant::now();
            continue;
        }
        match idle_since.elapsed() {
            idle if idle < POLITE_AFTER => std::hint::spin_loop(),
            idle if idle < state.idle_exit => std::thread::yield_now(),
            _ => break,
        }
    }
    state.polling.fetch_sub(1, Ordering::AcqRel);
    POLLING.with(|p| p.set(false));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits up to 10 s for `cond`.
    fn eventually(cond: impl Fn() -> bool) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    /// A guard whose workers do not leave for idleness during a test.
    fn lasting() -> KeepWarm {
        KeepWarm::with_idle_exit(Duration::from_secs(3600))
    }

    /// 20 µs of work, then the thread it ran on.
    fn half() -> Option<usize> {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_micros(20) {
            std::hint::spin_loop();
        }
        rayon::current_thread_index()
    }

    #[test]
    fn other_workers_poll_while_the_guard_lives_and_stop_after() {
        for threads in [2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let warm = lasting();
                let state = warm.state.clone().expect("several threads");
                // Every worker but the caller.
                assert!(
                    eventually(|| warm.polling() == threads - 1),
                    "{threads} threads: {}",
                    warm.polling()
                );
                // Split work still runs, on the polling workers too.
                assert!(
                    eventually(|| {
                        let (a, b) = rayon::join(half, half);
                        a != b
                    }),
                    "no join's half ran on another worker in 10 s"
                );
                assert_eq!(warm.polling(), threads - 1);
                drop(warm);
                assert!(eventually(|| state.polling.load(Ordering::Acquire) == 0));
            });
        }
    }

    #[test]
    fn outside_the_pool_every_worker_polls() {
        // From the test's own thread: the global pool, every worker.
        let warm = lasting();
        let threads = rayon::current_num_threads();
        assert!(
            eventually(|| warm.polling() == if threads < 2 { 0 } else { threads }),
            "{threads} threads: {}",
            warm.polling()
        );
        let (a, b) = rayon::join(|| (0..1000u64).sum::<u64>(), || 1u64);
        assert_eq!(a + b, 499_501);
        drop(warm);
    }

    #[test]
    fn workers_leave_after_idling_even_while_the_guard_lives() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        pool.install(|| {
            let warm = KeepWarm::with_idle_exit(Duration::from_millis(20));
            assert!(eventually(|| warm.polling() == 1));
            assert!(eventually(|| warm.polling() == 0), "still polling with nothing to do");
        });
    }

    #[test]
    fn guards_of_two_callers_on_one_pool_do_not_hold_each_other() {
        // Each caller's joins run while the other's guard keeps workers
        // polling, loops nested in each other's work; both must finish.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let done = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    pool.install(|| {
                        for _ in 0..50 {
                            let _warm = KeepWarm::new();
                            for _ in 0..20 {
                                rayon::join(half, || rayon::join(half, half));
                            }
                        }
                    });
                    done.fetch_add(1, Ordering::AcqRel);
                });
            }
            assert!(
                eventually(|| done.load(Ordering::Acquire) == 2),
                "the two callers did not finish in 10 s"
            );
        });
    }

    #[test]
    fn one_thread_starts_nothing() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        pool.install(|| {
            let warm = KeepWarm::new();
            assert!(warm.state.is_none());
            assert_eq!(warm.polling(), 0);
            assert_eq!(rayon::join(|| 1, || 2), (1, 2));
        });
    }
}
