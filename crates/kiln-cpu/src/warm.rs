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

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// After this long without work a polling worker also yields its core at
/// each poll, so that other runnable threads (another process on a busy
/// machine) get it; it still picks up work within a poll.
const POLITE_AFTER: Duration = Duration::from_millis(1);

#[derive(Default)]
struct State {
    stop: AtomicBool,
    polling: AtomicUsize,
}

/// While alive, every other worker of the current rayon pool polls for work
/// instead of sleeping. Outside any pool it acts on the global pool and
/// leaves one of its workers out, the calling thread standing in for it.
///
/// Hold it around a loop of small parallel ops, such as training steps on
/// the CPU; drop it when the loop ends, since the workers keep a core each
/// busy until then. With one thread it does nothing. Dropping it does not
/// wait: each worker leaves its loop at its next poll.
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
        if rayon::current_num_threads() < 2 {
            return KeepWarm { state: None };
        }
        let state = Arc::new(State::default());
        // The worker that stays out: the caller, or from outside the pool
        // worker 0, so that the caller and the polling workers together
        // are as many threads as the pool has (more would take turns on
        // the cores).
        let idle = rayon::current_thread_index().unwrap_or(0);
        let shared = state.clone();
        // One job per worker; the one staying out returns at once (the
        // caller's runs when it next waits for stolen work).
        rayon::spawn_broadcast(move |ctx| {
            if ctx.index() != idle {
                poll(&shared);
            }
        });
        KeepWarm { state: Some(state) }
    }

    /// How many workers are in their polling loop now (they enter it shortly
    /// after [`KeepWarm::new`] and leave it shortly after the drop).
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

/// A worker's loop: run whatever work the pool has, until `stop`.
fn poll(state: &State) {
    state.polling.fetch_add(1, Ordering::AcqRel);
    let mut idle_since = Instant::now();
    while !state.stop.load(Ordering::Acquire) {
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => idle_since = Instant::now(),
            _ if idle_since.elapsed() < POLITE_AFTER => std::hint::spin_loop(),
            _ => std::thread::yield_now(),
        }
    }
    state.polling.fetch_sub(1, Ordering::AcqRel);
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

    #[test]
    fn other_workers_poll_while_the_guard_lives_and_stop_after() {
        for threads in [2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let warm = KeepWarm::new();
                let state = warm.state.clone().expect("several threads");
                // Every worker but the caller.
                assert!(
                    eventually(|| warm.polling() == threads - 1),
                    "{threads} threads: {}",
                    warm.polling()
                );
                // Split work still runs, on the polling workers too: some
                // join's second half (20 µs of work) is taken by another.
                let half = || {
                    let t0 = Instant::now();
                    while t0.elapsed() < Duration::from_micros(20) {
                        std::hint::spin_loop();
                    }
                    rayon::current_thread_index()
                };
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
    fn outside_the_pool_all_workers_but_one_poll() {
        // The global pool, from the test's own thread.
        let threads = rayon::current_num_threads();
        let warm = KeepWarm::new();
        assert!(
            eventually(|| warm.polling() == threads - 1),
            "{threads} threads: {}",
            warm.polling()
        );
        let (a, b) = rayon::join(|| (0..1000u64).sum::<u64>(), || 1u64);
        assert_eq!(a + b, 499_501);
        // Still not more than that (a broadcast job left behind would join later).
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(warm.polling(), threads - 1);
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
