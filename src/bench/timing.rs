//! Timing loop shared by every kernel benchmark.

use std::time::Instant;

/// Per-call times of one benchmarked operation, in seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    /// Median over the repeats.
    pub median: f64,
    /// Fastest repeat.
    pub min: f64,
    /// Slowest repeat.
    pub max: f64,
    /// 10th percentile (fast end).
    pub p10: f64,
    /// 90th percentile (slow end).
    pub p90: f64,
    /// Calls per timed repeat.
    pub inner: usize,
    /// Timed repeats.
    pub repeats: usize,
}

/// Times `f`: 3 warm-up calls, then sizes an inner loop so one repeat lasts
/// at least `min_time` seconds, then times `repeats` such loops. Each repeat
/// gives a per-call time; the spread between repeats shows the noise.
pub fn time_fn(f: &mut dyn FnMut(), repeats: usize, min_time: f64) -> Timing {
    time_interleaved(&mut [f], repeats, min_time).remove(0)
}

/// Calls per repeat so that one repeat of `f` lasts at least `min_time`
/// (after 3 warm-up calls).
fn calibrate(f: &mut dyn FnMut(), min_time: f64) -> usize {
    for _ in 0..3 {
        f();
    }
    let mut inner = 1usize;
    let per_call = loop {
        let t = Instant::now();
        for _ in 0..inner {
            f();
        }
        let dt = t.elapsed().as_secs_f64();
        if dt >= min_time / 4.0 || inner >= 1 << 24 {
            break dt / inner as f64;
        }
        inner *= 2;
    };
    ((min_time / per_call.max(1e-12)).ceil() as usize).max(1)
}

/// Times several operations round-robin: repeat r of every operation runs
/// before repeat r + 1 of any, so a burst of load from other processes hits
/// all of them alike and their ratios stay meaningful on a noisy machine.
pub fn time_interleaved(fs: &mut [&mut dyn FnMut()], repeats: usize, min_time: f64) -> Vec<Timing> {
    let inner: Vec<usize> = fs.iter_mut().map(|f| calibrate(*f, min_time)).collect();
    let repeats = repeats.max(1);
    let mut times = vec![Vec::with_capacity(repeats); fs.len()];
    for _ in 0..repeats {
        for ((f, &n), t) in fs.iter_mut().zip(&inner).zip(times.iter_mut()) {
            let start = Instant::now();
            for _ in 0..n {
                f();
            }
            t.push(start.elapsed().as_secs_f64() / n as f64);
        }
    }
    times.into_iter().zip(inner).map(|(t, n)| summarize(t, n)).collect()
}

fn summarize(mut times: Vec<f64>, inner: usize) -> Timing {
    let repeats = times.len();
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Timing {
        median: pick(0.5),
        min: times[0],
        max: times[times.len() - 1],
        p10: pick(0.1),
        p90: pick(0.9),
        inner,
        repeats,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_is_ordered_and_positive() {
        let mut x = 0u64;
        let t = time_fn(&mut || x = std::hint::black_box(x + 1), 5, 0.001);
        assert!(t.min > 0.0 && t.min <= t.p10 && t.p10 <= t.median);
        assert!(t.median <= t.p90 && t.p90 <= t.max);
    }
}
