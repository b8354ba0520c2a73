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
    /// The machine's peak rate around each repeat, in repeat order: the
    /// higher of the probes run just before and just after it (empty when
    /// no probe ran): see `time_interleaved_paired`.
    pub peak_around: Vec<f64>,
    /// Per-call time of each repeat, in repeat order.
    pub samples: Vec<f64>,
}

impl Timing {
    /// One repeat of one call that took `seconds` (for rows measured elsewhere).
    pub fn constant(seconds: f64) -> Self {
        Timing {
            median: seconds,
            min: seconds,
            max: seconds,
            p10: seconds,
            p90: seconds,
            inner: 1,
            repeats: 1,
            peak_around: Vec::new(),
            samples: vec![seconds],
        }
    }

    /// The median over repeats of `work / time` divided by the peak probed
    /// around that repeat, if a probe ran: a fraction of peak that compares
    /// each repeat with the machine's speed of that moment. With an even
    /// number of repeats, the lower of the middle two.
    pub fn frac_of_paired_peak(&self, work: f64) -> Option<f64> {
        if self.peak_around.len() != self.samples.len() || self.samples.is_empty() {
            return None;
        }
        let mut fracs: Vec<f64> = self
            .samples
            .iter()
            .zip(&self.peak_around)
            .map(|(t, peak)| work / t / 1e9 / peak)
            .collect();
        fracs.sort_by(f64::total_cmp);
        Some(fracs[(fracs.len() - 1) / 2])
    }
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
    rounds(fs, repeats, min_time, None)
}

/// [`time_interleaved`], with `probe` (which measures and returns the
/// machine's peak rate, e.g. a short FMA burst) run between consecutive
/// timed repeats, so that every repeat has a probe right before and right
/// after it. Shared hosts change speed within seconds; the peak probed
/// around each repeat (recorded in [`Timing::peak_around`]) tells how fast
/// the machine was just then.
pub fn time_interleaved_paired(
    fs: &mut [&mut dyn FnMut()],
    repeats: usize,
    min_time: f64,
    probe: &mut dyn FnMut() -> f64,
) -> Vec<Timing> {
    rounds(fs, repeats, min_time, Some(probe))
}

fn rounds(
    fs: &mut [&mut dyn FnMut()],
    repeats: usize,
    min_time: f64,
    mut probe: Option<&mut dyn FnMut() -> f64>,
) -> Vec<Timing> {
    let inner: Vec<usize> = fs.iter_mut().map(|f| calibrate(*f, min_time)).collect();
    let repeats = repeats.max(1);
    let mut times = vec![Vec::with_capacity(repeats); fs.len()];
    let mut peaks = vec![Vec::with_capacity(repeats); fs.len()];
    let mut probe_now = || probe.as_mut().map(|p| p());
    for _ in 0..repeats {
        // The probe runs between consecutive repeats, so each repeat has
        // one just before and one just after it.
        let mut before = probe_now();
        for (((f, &n), t), p) in fs.iter_mut().zip(&inner).zip(times.iter_mut()).zip(peaks.iter_mut()) {
            let start = Instant::now();
            for _ in 0..n {
                f();
            }
            t.push(start.elapsed().as_secs_f64() / n as f64);
            let after = probe_now();
            if let (Some(b), Some(a)) = (before, after) {
                // The higher of the two: a probe that a burst of load
                // slowed down must not flatter the repeat next to it.
                p.push(b.max(a));
            }
            before = after;
        }
    }
    times
        .into_iter()
        .zip(peaks)
        .zip(inner)
        .map(|((t, p), n)| summarize(t, p, n))
        .collect()
}

fn summarize(samples: Vec<f64>, peak_around: Vec<f64>, inner: usize) -> Timing {
    let mut times = samples.clone();
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
        peak_around,
        samples,
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
        assert_eq!(t.samples.len(), 5);
        assert!(t.peak_around.is_empty() && t.frac_of_paired_peak(1.0).is_none());
    }

    #[test]
    fn paired_peak_is_probed_around_every_repeat_and_divides_each_one() {
        // Two operations and a fake probe returning these "peaks" in turn.
        let peaks = [1.0, 5.0, 2.0, 7.0, 3.0, 4.0, 9.0, 1.0, 6.0];
        let mut calls = 0;
        let (mut a, mut b) = (|| std::thread::sleep(std::time::Duration::from_micros(200)), || ());
        let mut probe = || {
            calls += 1;
            peaks[calls - 1]
        };
        let t = time_interleaved_paired(&mut [&mut a, &mut b], 3, 0.0, &mut probe);
        assert_eq!(calls, 9);
        // Each round is probe, a, probe, b, probe; a repeat keeps the higher
        // of the probes on either side of it.
        assert_eq!(t[0].peak_around, [5.0, 7.0, 9.0]);
        assert_eq!(t[1].peak_around, [5.0, 4.0, 6.0]);
        // Per-repeat ratios (work 1e9 per call), median taken.
        let mut want: Vec<f64> = t[0]
            .samples
            .iter()
            .zip(&t[0].peak_around)
            .map(|(s, p)| 1.0 / s / p)
            .collect();
        want.sort_by(f64::total_cmp);
        let got = t[0].frac_of_paired_peak(1e9).unwrap();
        assert!((got / want[1] - 1.0).abs() < 1e-12, "{got} vs {}", want[1]);
    }
}
