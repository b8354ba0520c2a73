//! Mode-coverage metrics on synthetic samples.

use kiln_gan::data::GaussianMixture;
use kiln_gan::metrics::mode_metrics;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[test]
fn real_ring8_data_covers_every_mode_with_only_high_quality_samples() {
    let ring = GaussianMixture::ring8();
    let mut samples = Vec::new();
    ring.sample(2500, &mut ChaCha8Rng::seed_from_u64(0), &mut samples);
    let m = mode_metrics(&samples, &ring.modes(), ring.std()).unwrap();
    assert_eq!((m.modes_covered, m.modes_total), (8, 8));
    assert!(m.high_quality_fraction > 0.98, "{m:?}");
    assert!(m.reverse_kl < 0.01, "{m:?}");
}

#[test]
fn samples_exactly_on_the_modes_are_perfect() {
    let ring = GaussianMixture::ring8();
    let samples: Vec<f32> = ring.modes().iter().flat_map(|m| m.iter().copied()).collect();
    let m = mode_metrics(&samples, &ring.modes(), ring.std()).unwrap();
    assert_eq!((m.modes_covered, m.high_quality), (8, 8));
    assert_eq!(m.high_quality_fraction, 1.0);
    assert!(m.reverse_kl.abs() < 1e-6);
    assert_eq!(m.per_mode, vec![1; 8]);
}

#[test]
fn collapse_onto_one_mode_covers_one_of_eight() {
    let ring = GaussianMixture::ring8();
    let mode = ring.modes()[3];
    let samples: Vec<f32> = (0..100).flat_map(|_| mode).collect();
    let m = mode_metrics(&samples, &ring.modes(), ring.std()).unwrap();
    assert_eq!(m.modes_covered, 1);
    assert_eq!(m.high_quality_fraction, 1.0);
    assert!((m.reverse_kl - 8f32.ln()).abs() < 1e-5, "{m:?}");
}

#[test]
fn samples_between_modes_are_not_high_quality() {
    let grid = GaussianMixture::grid25();
    // (1, 1) is √2 from the nearest modes; 3σ is 0.15. (0, 0.14) is within 3σ of (0, 0).
    let m = mode_metrics(&[1.0, 1.0, 0.0, 0.14], &grid.modes(), grid.std()).unwrap();
    assert_eq!((m.high_quality, m.modes_covered), (1, 1));
    assert_eq!(m.high_quality_fraction, 0.5);
}

#[test]
fn two_modes_evenly_hit_give_kl_of_log_k_over_two() {
    let modes = [[0.0, 0.0], [10.0, 0.0], [20.0, 0.0], [30.0, 0.0]];
    let samples = [0.0, 0.0, 10.0, 0.0];
    let m = mode_metrics(&samples, &modes, 0.1).unwrap();
    // p = (1/2, 1/2, 0, 0): KL = 2 · ½ ln(½ · 4) = ln 2.
    assert!((m.reverse_kl - 2f32.ln()).abs() < 1e-6);
}
