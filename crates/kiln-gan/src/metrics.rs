//! Did the GAN learn the 2-D mixture? Mode-coverage metrics in the style of the Unrolled GAN /
//! VEEGAN papers, for [`ring8`](crate::data::GaussianMixture::ring8) and
//! [`grid25`](crate::data::GaussianMixture::grid25).
//!
//! Definitions, for `n` generated samples `x_i`, `K` mode centres `m_k` and component standard
//! deviation `σ`:
//!
//! - each sample is assigned to its nearest mode `k(i) = argmin_k ‖x_i − m_k‖` (ties go to the
//!   lower index);
//! - a sample is **high quality** (HQ) when `‖x_i − m_{k(i)}‖ ≤ 3σ`; non-finite samples never are;
//! - `count_k` = number of HQ samples assigned to mode `k`; a mode is **covered** when
//!   `count_k ≥ 1` (the trainer evaluates `n = 2500` samples);
//! - `p_k = count_k / Σ_j count_j`, the mode histogram of the HQ samples, and
//!   **reverse KL** = `KL(p ‖ u) = Σ_{k: p_k > 0} p_k · ln(p_k · K)` against the uniform
//!   distribution `u_k = 1/K` of the real data. Empty bins contribute 0 (`0 · ln 0 = 0`), so the
//!   value is finite: 0 when the HQ samples are spread evenly, `ln K` when they all sit on one
//!   mode. With no HQ sample at all the histogram is undefined and we report the worst value,
//!   `ln K`.

use kiln_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// Mode-coverage metrics of a batch of 2-D samples; see the [module docs](self) for the
/// definitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModeMetrics {
    /// Number of samples evaluated.
    pub samples: usize,
    /// Samples within 3σ of their nearest mode.
    pub high_quality: usize,
    /// `high_quality / samples` (0 when there are no samples).
    pub high_quality_fraction: f32,
    /// Modes with at least one high-quality sample.
    pub modes_covered: usize,
    /// Number of modes `K`.
    pub modes_total: usize,
    /// `KL(p_HQ ‖ uniform)` over the mode histogram of HQ samples, in nats, in `[0, ln K]`.
    pub reverse_kl: f32,
    /// High-quality samples per mode (the histogram behind the other numbers).
    pub per_mode: Vec<usize>,
}

/// Compute [`ModeMetrics`] for `samples` (`[n, 2]` row-major) against `modes` of standard
/// deviation `std`.
pub fn mode_metrics(samples: &[f32], modes: &[[f32; 2]], std: f32) -> Result<ModeMetrics> {
    if !samples.len().is_multiple_of(2) {
        return Err(Error::BadShape {
            op: "mode_metrics",
            msg: format!("samples must be [n, 2], got {} values", samples.len()),
        });
    }
    if modes.is_empty() {
        return Err(Error::Invalid("mode_metrics needs at least one mode".into()));
    }
    if !(std.is_finite() && std > 0.0) {
        return Err(Error::Invalid(format!("mode_metrics needs a positive std, got {std}")));
    }
    let threshold_sq = (3.0 * std as f64).powi(2);
    let mut per_mode = vec![0usize; modes.len()];
    for point in samples.chunks_exact(2) {
        let (x, y) = (point[0] as f64, point[1] as f64);
        if !(x.is_finite() && y.is_finite()) {
            continue;
        }
        let (nearest, distance_sq) = modes
            .iter()
            .map(|m| (x - m[0] as f64).powi(2) + (y - m[1] as f64).powi(2))
            .enumerate()
            .fold(
                (0, f64::INFINITY),
                |best, (k, d)| {
                    if d < best.1 {
                        (k, d)
                    } else {
                        best
                    }
                },
            );
        if distance_sq <= threshold_sq {
            per_mode[nearest] += 1;
        }
    }
    let n = samples.len() / 2;
    let high_quality: usize = per_mode.iter().sum();
    let k = modes.len() as f64;
    let reverse_kl = if high_quality == 0 {
        k.ln()
    } else {
        per_mode
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = c as f64 / high_quality as f64;
                p * (p * k).ln()
            })
            .sum::<f64>()
            .max(0.0) // rounding can leave −1e-17 for a perfectly even histogram
    };
    Ok(ModeMetrics {
        samples: n,
        high_quality,
        high_quality_fraction: if n == 0 { 0.0 } else { high_quality as f32 / n as f32 },
        modes_covered: per_mode.iter().filter(|&&c| c > 0).count(),
        modes_total: modes.len(),
        reverse_kl: reverse_kl as f32,
        per_mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_high_quality_sample_reports_worst_kl() {
        let m = mode_metrics(&[100.0, 100.0], &[[0.0, 0.0], [1.0, 0.0]], 0.1).unwrap();
        assert_eq!(m.high_quality, 0);
        assert_eq!(m.modes_covered, 0);
        assert!((m.reverse_kl - 2f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn nan_samples_are_not_high_quality() {
        let m = mode_metrics(&[f32::NAN, 0.0, 0.0, 0.0], &[[0.0, 0.0]], 0.1).unwrap();
        assert_eq!((m.samples, m.high_quality), (2, 1));
    }

    #[test]
    fn odd_length_is_a_shape_error() {
        assert!(mode_metrics(&[0.0; 3], &[[0.0, 0.0]], 0.1).is_err());
    }
}
