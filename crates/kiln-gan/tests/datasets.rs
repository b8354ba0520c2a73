//! Data sets: determinism per seed, statistics, epochs, CLI specs, image directories.

use std::path::PathBuf;

use kiln_gan::data::{parse_data_spec, DataSpec, Dataset, GaussianMixture, ImageSet};
use kiln_gan::png_out::write_png_rgb;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn batch(data: &mut Dataset, n: usize, seed: u64) -> Vec<f32> {
    let mut out = Vec::new();
    data.batch(n, &mut rng(seed), &mut out);
    out
}

/// A fresh empty directory for one test, removed by the test when it passes.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-gan-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_builtin_sampler_is_deterministic_per_seed() {
    for spec in ["ring8", "grid25", "shapes64"] {
        let mut data = parse_data_spec(spec).unwrap().load(None).unwrap();
        let a = batch(&mut data, 16, 7);
        let b = batch(&mut data, 16, 7);
        let c = batch(&mut data, 16, 8);
        assert_eq!(a, b, "{spec}: same seed, same batch");
        assert_ne!(a, c, "{spec}: another seed, another batch");
        assert_eq!(a.len(), 16 * data.dim(), "{spec}");
    }
}

#[test]
fn ring8_samples_lie_near_the_eight_modes_with_the_right_std() {
    let ring = GaussianMixture::ring8();
    let modes = ring.modes();
    assert_eq!(modes.len(), 8);
    for m in &modes {
        assert!(((m[0] * m[0] + m[1] * m[1]).sqrt() - 2.0).abs() < 1e-5);
    }
    let mut points = Vec::new();
    ring.sample(20_000, &mut rng(1), &mut points);
    let mut counts = [0usize; 8];
    let (mut sum_sq, mut n) = (0f64, 0usize);
    for p in points.chunks_exact(2) {
        let (k, d2) = modes
            .iter()
            .map(|m| (p[0] - m[0]).powi(2) + (p[1] - m[1]).powi(2))
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        assert!(d2.sqrt() < 6.0 * ring.std(), "{p:?} is far from every mode");
        counts[k] += 1;
        sum_sq += d2 as f64;
        n += 2; // two axes
    }
    let std = (sum_sq / n as f64).sqrt();
    assert!((std - 0.02).abs() < 0.001, "std {std}");
    for c in counts {
        assert!((2200..2800).contains(&c), "mode counts {counts:?}");
    }
}

#[test]
fn grid25_has_25_modes_on_the_even_grid() {
    let grid = GaussianMixture::grid25();
    let modes = grid.modes();
    assert_eq!(modes.len(), 25);
    assert!(modes.contains(&[-4.0, 4.0]) && modes.contains(&[0.0, 0.0]));
    assert_eq!(grid.std(), 0.05);
    assert_eq!(grid.plot_range(), 5.5);
    let mut points = Vec::new();
    grid.sample(1000, &mut rng(2), &mut points);
    assert!(points.iter().all(|v| v.abs() < 4.5));
}

#[test]
fn shapes64_are_varied_rgb_images_in_unit_range() {
    let mut data = parse_data_spec("shapes64").unwrap().load(None).unwrap();
    assert_eq!(data.image_shape(), Some((3, 64, 64)));
    assert_eq!(data.len(), None);
    let images = batch(&mut data, 8, 3);
    assert!(images.iter().all(|v| (0.0..=1.0).contains(v)));
    let per_image: Vec<&[f32]> = images.chunks_exact(3 * 64 * 64).collect();
    for image in &per_image {
        let mean = image.iter().sum::<f32>() / image.len() as f32;
        let var = image.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / image.len() as f32;
        assert!(var > 1e-3, "an image is flat (var {var})");
    }
    assert!(per_image.windows(2).all(|w| w[0] != w[1]));
}

#[test]
fn shapes64_batches_do_not_depend_on_the_thread_count() {
    let data = parse_data_spec("shapes64").unwrap().load(None).unwrap();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut data = data.clone();
        let mut r = rng(11);
        // Two batches: the second starts where the first left the generator.
        pool.install(|| [batch_from(&mut data, 9, &mut r), batch_from(&mut data, 5, &mut r)])
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(4));
    assert_ne!(one[0][..3 * 64 * 64], one[1][..3 * 64 * 64], "the generator moved on");
}

fn batch_from(data: &mut Dataset, n: usize, r: &mut ChaCha8Rng) -> Vec<f32> {
    let mut out = vec![7.0; 3];
    data.batch(n, r, &mut out);
    assert_eq!(out.len(), n * data.dim(), "the batch replaces what `out` held");
    out
}

#[test]
fn shapes_render_at_a_requested_grey_shape() {
    let mut data = DataSpec::Shapes64.load(Some((1, 32, 32))).unwrap();
    assert_eq!(data.dim(), 32 * 32);
    assert_eq!(batch(&mut data, 2, 0).len(), 2 * 32 * 32);
    assert!(DataSpec::Shapes64.load(Some((2, 32, 32))).is_err());
}

fn tiny_set(count: usize) -> ImageSet {
    let pixels: Vec<u8> = (0..count).flat_map(|i| [i as u8, 255 - i as u8]).collect();
    ImageSet::new("tiny", (1, 1, 2), count, pixels).unwrap()
}

#[test]
fn an_epoch_visits_every_image_once_in_shuffled_order() {
    let mut data = Dataset::Images(tiny_set(50));
    let mut rng = rng(4);
    let mut out = Vec::new();
    data.batch(50, &mut rng, &mut out);
    let mut firsts: Vec<u8> = out.chunks_exact(2).map(|p| (p[0] * 255.0).round() as u8).collect();
    assert_ne!(firsts, (0..50).collect::<Vec<u8>>(), "not shuffled");
    firsts.sort();
    assert_eq!(firsts, (0..50).collect::<Vec<u8>>());
    assert_eq!(data.epoch_state().unwrap().epoch, 1);
    data.batch(1, &mut rng, &mut out);
    let state = data.epoch_state().unwrap();
    assert_eq!((state.epoch, state.cursor), (2, 1));
}

#[test]
fn restoring_the_epoch_state_continues_identically() {
    let mut first = Dataset::Images(tiny_set(10));
    let mut rng_a = rng(5);
    let mut out = Vec::new();
    first.batch(13, &mut rng_a, &mut out);
    let (state, rng_saved) = (first.epoch_state().unwrap(), rng_a.clone());
    let mut expected = Vec::new();
    first.batch(25, &mut rng_a, &mut expected);

    let mut resumed = Dataset::Images(tiny_set(10));
    resumed.set_epoch_state(state).unwrap();
    let mut rng_b = rng_saved;
    let mut got = Vec::new();
    resumed.batch(25, &mut rng_b, &mut got);
    assert_eq!(got, expected);
    assert!(Dataset::Mixture(GaussianMixture::ring8())
        .set_epoch_state(state)
        .is_err());
}

#[test]
fn unknown_spec_lists_the_valid_ones() {
    let err = parse_data_spec("cifar").unwrap_err().to_string();
    for name in [
        "ring8",
        "grid25",
        "shapes64",
        "fashion-mnist",
        "mnist",
        "idx:",
        "images:",
    ] {
        assert!(err.contains(name), "{err}");
    }
    assert!(parse_data_spec("idx:").is_err());
    assert_eq!(
        parse_data_spec("images:/data/faces").unwrap(),
        DataSpec::Images("/data/faces".into())
    );
}

#[test]
fn fashion_mnist_loads_or_says_how_to_install_it() {
    match DataSpec::FashionMnist.load(None) {
        Ok(data) => {
            assert_eq!(data.image_shape(), Some((1, 28, 28)));
            assert_eq!(data.len(), Some(60_000));
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains("apt-get install dataset-fashion-mnist"), "{message}");
            assert!(!message.contains('\n'));
        }
    }
}

#[test]
fn a_missing_idx_file_is_an_error_naming_it() {
    let err = parse_data_spec("idx:/nonexistent/train.gz")
        .unwrap()
        .load(None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/train.gz"), "{err}");
}

/// Two PNGs (one wider than tall, so it is centre-cropped), a JPEG, and a file to skip.
#[test]
fn image_directories_are_decoded_cropped_and_resized() {
    let dir = scratch_dir("images");
    write_png_rgb(dir.join("a_red.png"), 8, 8, &[255, 0, 0].repeat(64)).unwrap();
    // Left half black, right half white, 16x8: the centre crop is half black, half white.
    let half: Vec<u8> = (0..8)
        .flat_map(|_| (0..16).flat_map(|x| if x < 8 { [0u8; 3] } else { [255u8; 3] }))
        .collect();
    write_png_rgb(dir.join("b_half.PNG"), 16, 8, &half).unwrap();
    std::fs::write(dir.join("c_tiny.jpg"), hex(TINY_JPEG)).unwrap();
    std::fs::write(dir.join("notes.txt"), "not an image").unwrap();

    let spec = parse_data_spec(&format!("images:{}", dir.display())).unwrap();
    let data = spec.load(Some((3, 4, 4))).unwrap();
    assert_eq!(data.len(), Some(3));
    let Dataset::Images(set) = &data else {
        panic!("expected an image set")
    };
    assert_eq!(set.image(0), &[[255u8; 16], [0; 16], [0; 16]].concat()[..]);
    let half_row = set.image(1)[..4].to_vec();
    assert_eq!(half_row, vec![0, 0, 255, 255]);
    let jpeg = set.image(2);
    for (channel, want) in [200i32, 50, 50].into_iter().enumerate() {
        let got = jpeg[channel * 16] as i32;
        assert!((got - want).abs() <= 6, "JPEG channel {channel}: {got} vs {want}");
    }

    let grey = spec.load(Some((1, 2, 2))).unwrap();
    assert_eq!(grey.dim(), 4);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn grey_jpeg_decodes() {
    let image = kiln_gan::images::decode_image_bytes(&hex(TINY_GRAY_JPEG), "g.jpg").unwrap();
    assert_eq!((image.width, image.height), (5, 3));
    assert!(image.rgb.iter().all(|&v| (v as i32 - 120).abs() <= 3));
}

#[test]
fn empty_or_corrupt_image_directories_are_errors_with_the_path() {
    let dir = scratch_dir("bad-images");
    let spec = DataSpec::Images(dir.clone());
    let err = spec.load(None).unwrap_err().to_string();
    assert!(
        err.contains(&dir.display().to_string()) && err.contains("no PNG"),
        "{err}"
    );

    std::fs::write(dir.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let err = spec.load(None).unwrap_err().to_string();
    assert!(err.contains("broken.png"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn hex(lines: &[&str]) -> Vec<u8> {
    let text: String = lines.concat();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// A 6x4 JPEG of colour (200, 50, 50), saved by Pillow at quality 95.
const TINY_JPEG: &[&str] = &[
    "ffd8ffe000104a46494600010100000100010000ffdb0043000201010101010201010102020202020403020202020504",
    "040304060506060605060606070908060709070606080b08090a0a0a0a0a06080b0c0b0a0c090a0a0affdb0043010202",
    "02020202050303050a0706070a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a",
    "0a0a0a0a0a0a0a0a0a0a0a0a0a0affc00011080004000603012200021101031101ffc400150001010000000000000000",
    "0000000000000008ffc40014100100000000000000000000000000000000ffc400150101010000000000000000000000",
    "0000000709ffc40014110100000000000000000000000000000000ffda000c03010002110311003f009ec00da963ffd9",
];

/// A 5x3 greyscale JPEG of level 120, saved by Pillow at quality 95.
const TINY_GRAY_JPEG: &[&str] = &[
    "ffd8ffe000104a46494600010100000100010000ffdb0043000201010101010201010102020202020403020202020504",
    "040304060506060605060606070908060709070606080b08090a0a0a0a0a06080b0c0b0a0c090a0a0affc0000b080003",
    "000501011100ffc40014000100000000000000000000000000000006ffc4001410010000000000000000000000000000",
    "0000ffda0008010100003f003effd9",
];
