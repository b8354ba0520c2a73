//! End-to-end tests of the `kiln` binary: train on each kind of data, check
//! every output file, sample from the runs, gradcheck and info.

mod common;

use common::*;
use kiln_core::{no_grad, Device, Tensor};
use kiln_gan::npy::{read_npy, write_npy};
use kiln_gan::png_out::{image_grid, GridOptions};
use kiln_gan::trainer::build_models;
use kiln_gan::TrainConfig;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::path::Path;

const KEYS: &[&str] = &[
    "step",
    "loss_d",
    "loss_g",
    "d_real",
    "d_fake",
    "grad_norm_d",
    "grad_norm_g",
    "steps_per_sec",
];
const MODE_KEYS: &[&str] = &["modes_covered", "high_quality", "reverse_kl"];

fn config_of(dir: &Path) -> TrainConfig {
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let c: TrainConfig = serde_json::from_str(&text).unwrap();
    // Round trip: what we read serialises back to the same config.
    let again: TrainConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(c, again);
    c
}

/// Expected size of a sample grid of `n` images of `shape`.
fn grid_size(n: usize, shape: (usize, usize, usize)) -> (u32, u32) {
    let dim = shape.0 * shape.1 * shape.2;
    let img = image_grid(&vec![0.0; n * dim], n, shape, &GridOptions::default()).unwrap();
    (img.width as u32, img.height as u32)
}

/// Checks what every run writes; returns the metrics lines.
fn check_run_dir(dir: &Path, steps: u64, mixture: bool) -> Vec<serde_json::Value> {
    let m = metrics(dir);
    assert!(!m.is_empty());
    let mut last = 0;
    for line in &m {
        for k in KEYS {
            let v = line[k]
                .as_f64()
                .unwrap_or_else(|| panic!("metrics key {k} missing in {line}"));
            assert!(v.is_finite(), "{k} = {v}");
        }
        let step = line["step"].as_u64().unwrap();
        assert!(step > last && step <= steps, "steps out of order: {step} after {last}");
        last = step;
        for k in ["d_real", "d_fake"] {
            let p = line[k].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&p), "{k} = {p} is not a probability");
        }
        if mixture && dir.join("samples").join(format!("step_{step:06}.png")).exists() {
            for k in MODE_KEYS {
                assert!(line[k].is_number(), "{k} missing at sample step {step}: {line}");
            }
            let covered = line["modes_covered"].as_u64().unwrap();
            assert!(covered <= line["modes_total"].as_u64().unwrap());
        } else if !mixture {
            assert!(line.get("modes_covered").is_none());
        }
    }
    assert_eq!(last, steps, "the last step is logged");
    assert!(dir.join("checkpoints/last.safetensors").is_file());
    let ck = kiln_gan::checkpoint::load(&dir.join("checkpoints/last.safetensors")).unwrap();
    assert_eq!(ck.step, steps);
    for prefix in ["G.", "D.", "opt_g.", "opt_d."] {
        assert!(
            ck.tensors.iter().any(|(n, _)| n.starts_with(prefix)),
            "no {prefix} tensors"
        );
    }
    assert_eq!(png_size(&dir.join("losses.png")), (720, 420));
    assert_no_temp_files(dir);
    m
}

#[test]
fn train_ring8_writes_every_output() {
    let tmp = tmp();
    let dir = tmp.path().join("run");
    let stdout = kiln_ok(
        tmp.path(),
        &[
            &["train", "--out", dir.to_str().unwrap()],
            TINY,
            &["--sample-every", "10", "--log-every", "5", "--checkpoint-every", "10"],
        ]
        .concat(),
    );
    assert!(stdout.contains("trained 20 steps of toy on ring8"), "{stdout}");
    assert!(stdout.contains("modes "), "{stdout}");
    let c = config_of(&dir);
    assert_eq!(
        (c.preset.as_str(), c.data.as_str(), c.steps, c.batch),
        ("toy", "ring8", 20, 32)
    );
    assert_eq!((c.g_hidden.clone(), c.d_hidden.clone()), (vec![16], vec![16]));
    let m = check_run_dir(&dir, 20, true);
    assert_eq!(metric_steps(&dir), vec![5, 10, 15, 20]);
    assert!(
        m[0].get("modes_covered").is_none(),
        "no mode metrics between sample steps"
    );
    for s in [10, 20] {
        assert_eq!(png_size(&dir.join(format!("samples/step_{s:06}.png"))), (512, 512));
    }
    assert_eq!(files_under(&dir.join("samples")).len(), 2);
    let expected: BTreeMap<String, Vec<usize>> = [
        ("0.weight", vec![16, 2]),
        ("0.bias", vec![16]),
        ("2.weight", vec![2, 16]),
        ("2.bias", vec![2]),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_string(), s))
    .collect();
    assert_eq!(shapes(&dir.join("generator.safetensors")), expected);
    let ck = kiln_gan::checkpoint::load(&dir.join("checkpoints/last.safetensors")).unwrap();
    assert!(
        ck.tensors.iter().any(|(n, _)| n == "G_ema.0.weight"),
        "toy keeps an EMA of G"
    );
}

#[test]
fn train_shapes64_seed_preset() {
    let tmp = tmp();
    let dir = tmp.path().join("seed");
    let args = [
        "train",
        "--preset",
        "seed",
        "--steps",
        "3",
        "--batch",
        "8",
        "--g-hidden",
        "16",
        "--d-hidden",
        "16",
        "--quiet",
        "--out",
        dir.to_str().unwrap(),
    ];
    let stdout = kiln_ok(tmp.path(), &args);
    assert!(stdout.contains("trained 3 steps of seed on shapes64"), "{stdout}");
    let c = config_of(&dir);
    assert_eq!(
        (c.preset.as_str(), c.data.as_str(), c.steps, c.batch),
        ("seed", "shapes64", 3, 8)
    );
    check_run_dir(&dir, 3, false);
    assert_eq!(metric_steps(&dir), vec![3]);
    assert_eq!(
        png_size(&dir.join("samples/step_000003.png")),
        grid_size(64, (3, 64, 64))
    );
    let g = shapes(&dir.join("generator.safetensors"));
    assert_eq!(g["0.weight"], vec![16, 100]);
    assert_eq!(g["0.bias"], vec![16]);
    assert_eq!(g["2.weight"], vec![3 * 64 * 64, 16]);
    assert_eq!(g["2.bias"], vec![3 * 64 * 64]);
    assert_eq!(g.len(), 4);

    // Samples: [N, C, H, W] in the sigmoid's range, and a grid picture.
    kiln_ok(
        tmp.path(),
        &["sample", "--run", dir.to_str().unwrap(), "--n", "7", "--out", "x.npy"],
    );
    let x = read_npy(tmp.path().join("x.npy")).unwrap();
    assert_eq!(x.shape, vec![7, 3, 64, 64]);
    assert!(x.data.iter().all(|v| (0.0..=1.0).contains(v)));
    kiln_ok(
        tmp.path(),
        &[
            "sample",
            "--run",
            dir.to_str().unwrap(),
            "--n",
            "7",
            "--out",
            "grid.png",
        ],
    );
    assert_eq!(png_size(&tmp.path().join("grid.png")), grid_size(7, (3, 64, 64)));
    assert_no_temp_files(tmp.path());
}

#[test]
fn train_idx_mlp_preset() {
    let tmp = tmp();
    let idx = tmp.path().join("images-idx3-ubyte");
    write_random_idx(&idx, 64, 28, 28, 7);
    let dir = tmp.path().join("mlp");
    let data = format!("idx:{}", idx.display());
    let args = [
        &[
            "train",
            "--preset",
            "mlp",
            "--data",
            &data,
            "--out",
            dir.to_str().unwrap(),
        ],
        TINY,
        &["--sample-every", "10", "--log-every", "10"],
    ]
    .concat();
    kiln_ok(tmp.path(), &args);
    let c = config_of(&dir);
    assert_eq!(
        (c.preset.as_str(), c.data.as_str(), c.steps),
        ("mlp", data.as_str(), 20)
    );
    check_run_dir(&dir, 20, false);
    assert_eq!(metric_steps(&dir), vec![10, 20]);
    for s in [10, 20] {
        assert_eq!(
            png_size(&dir.join(format!("samples/step_{s:06}.png"))),
            grid_size(64, (1, 28, 28))
        );
    }
    let g = shapes(&dir.join("generator.safetensors"));
    assert_eq!(g["0.weight"], vec![16, 100]);
    assert_eq!(g["2.weight"], vec![784, 16]);
    assert_eq!(g["2.bias"], vec![784]);
    assert_eq!(g.len(), 4);

    kiln_ok(
        tmp.path(),
        &["sample", "--run", dir.to_str().unwrap(), "--n", "7", "--out", "x.npy"],
    );
    let x = read_npy(tmp.path().join("x.npy")).unwrap();
    assert_eq!(x.shape, vec![7, 1, 28, 28]);
    assert!(x.data.iter().all(|v| (-1.0..=1.0).contains(v)), "tanh outputs");
    kiln_ok(
        tmp.path(),
        &["sample", "--run", dir.to_str().unwrap(), "--out", "grid.png"],
    );
    assert_eq!(png_size(&tmp.path().join("grid.png")), grid_size(64, (1, 28, 28)));
}

#[test]
fn sample_ring8_npy_png_and_given_noise() {
    let tmp = tmp();
    let cwd = tmp.path();
    let dir = cwd.join("run");
    let run = dir.to_str().unwrap();
    kiln_ok(cwd, &[&["train", "--out", run], TINY].concat());

    let out = kiln_ok(cwd, &["sample", "--run", run, "--n", "7", "--out", "x.npy"]);
    assert!(out.contains("wrote 7 samples"), "{out}");
    let x = read_npy(cwd.join("x.npy")).unwrap();
    assert_eq!(x.shape, vec![7, 2]);
    assert!(x.data.iter().all(|v| v.is_finite()));
    // Same seed → same samples; another seed → others.
    kiln_ok(cwd, &["sample", "--run", run, "--n", "7", "--out", "y.npy"]);
    assert_eq!(read_npy(cwd.join("y.npy")).unwrap(), x);
    kiln_ok(
        cwd,
        &["sample", "--run", run, "--n", "7", "--seed", "3", "--out", "z.npy"],
    );
    assert_ne!(read_npy(cwd.join("z.npy")).unwrap().data, x.data);

    kiln_ok(cwd, &["sample", "--run", run, "--n", "50", "--out", "grid.png"]);
    assert_eq!(png_size(&cwd.join("grid.png")), (512, 512));

    // Given noise: the output is G(noise), computed here with the library.
    let noise: Vec<f32> = (0..10).map(|i| (i as f32 - 4.5) * 0.37).collect();
    write_npy(cwd.join("noise.npy"), &noise, &[5, 2]).unwrap();
    kiln_ok(cwd, &["sample", "--run", run, "--noise", "noise.npy", "--out", "g.npy"]);
    let got = read_npy(cwd.join("g.npy")).unwrap();
    assert_eq!(got.shape, vec![5, 2]);
    let config: TrainConfig = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let (g, _) = build_models(&config, 2, &mut rand_chacha::ChaCha8Rng::seed_from_u64(99)).unwrap();
    kiln_nn::load_state_dict(&g, dir.join("generator.safetensors")).unwrap();
    let z = Tensor::from_vec(noise.clone(), &[5, 2], Device::Cpu).unwrap();
    let want = no_grad(|| kiln_nn::Module::forward(&g, &z))
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(got.data, want);
    kiln_ok(
        cwd,
        &["sample", "--run", run, "--noise", "noise.npy", "--out", "g2.npy"],
    );
    assert_eq!(read_npy(cwd.join("g2.npy")).unwrap(), got);

    // Noise of the wrong width: one-line error, no output.
    write_npy(cwd.join("bad.npy"), &[0.0; 15], &[5, 3]).unwrap();
    let out = kiln(
        cwd,
        &["sample", "--run", run, "--noise", "bad.npy", "--out", "bad_out.npy"],
    );
    let line = assert_one_line_error(&out, "wrong noise shape");
    assert!(line.contains("[5, 3]"), "{line}");
    assert!(!cwd.join("bad_out.npy").exists());
    assert_no_temp_files(cwd);
}

fn generator_after(cwd: &Path, name: &str, extra: &[&str]) -> BTreeMap<String, (Vec<usize>, Vec<f64>)> {
    let dir = cwd.join(name);
    kiln_ok(
        cwd,
        &[
            &["train", "--out", dir.to_str().unwrap(), "--steps", "10", "--quiet"],
            extra,
        ]
        .concat(),
    );
    tensors(&dir.join("generator.safetensors"))
}

/// The generator's weights after training with `flags` at 1 and at 2 threads, which must agree.
fn same_weights_at_1_and_2_threads(cwd: &Path, what: &str, flags: &[&str]) -> BTreeMap<String, (Vec<usize>, Vec<f64>)> {
    let one = generator_after(cwd, &format!("{what}-1"), &[flags, &["--threads", "1"]].concat());
    let two = generator_after(cwd, &format!("{what}-2"), &[flags, &["--threads", "2"]].concat());
    assert_eq!(one, two, "{what}: --threads 1 and 2 give different weights");
    one
}

#[test]
fn same_seed_same_weights_for_any_thread_count() {
    let tmp = tmp();
    let cwd = tmp.path();
    // Default toy widths (128) so that the kernels have work to split.
    let one = same_weights_at_1_and_2_threads(cwd, "toy", &[]);
    let other = generator_after(cwd, "s1", &["--threads", "2", "--seed", "1"]);
    assert_eq!(other.keys().collect::<Vec<_>>(), one.keys().collect::<Vec<_>>());
    assert_ne!(other, one, "seeds 0 and 1 give the same weights");

    // Image data: a wider GEMM (784 outputs).
    let idx = cwd.join("img.idx");
    write_random_idx(&idx, 40, 28, 28, 1);
    let data = format!("idx:{}", idx.display());
    let small = ["--g-hidden", "64", "--d-hidden", "64", "--batch", "32"];
    same_weights_at_1_and_2_threads(
        cwd,
        "images",
        &[&["--preset", "mlp", "--data", &data][..], &small].concat(),
    );

    // shapes64: the real batches render in parallel, one generator stream per image.
    let small = ["--g-hidden", "8", "--d-hidden", "8", "--batch", "12"];
    same_weights_at_1_and_2_threads(cwd, "shapes64", &[&["--preset", "seed"][..], &small].concat());
}

#[test]
fn gradcheck_passes_and_filters() {
    let tmp = tmp();
    let out = kiln_ok(tmp.path(), &["gradcheck"]);
    let lines: Vec<&str> = out.lines().collect();
    let rows: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| op "))
        .collect();
    assert!(rows.len() >= 10, "{out}");
    assert!(rows.iter().all(|r| r.ends_with("| ok |")), "{out}");
    let last = lines.last().unwrap();
    assert_eq!(*last, format!("{} passed, 0 failed", rows.len()));

    let out = kiln_ok(tmp.path(), &["gradcheck", "--op", "tanh"]);
    assert!(out.lines().last().unwrap().ends_with("passed, 0 failed"), "{out}");
    assert!(out.contains("tanh"));

    let out = kiln(tmp.path(), &["gradcheck", "--op", "nonexistent"]);
    let line = assert_one_line_error(&out, "gradcheck --op nonexistent");
    assert!(line.contains("nonexistent"), "{line}");
}

#[test]
fn info_prints_threads_and_cpu_features() {
    let tmp = tmp();
    let out = kiln_ok(tmp.path(), &["info"]);
    assert!(out.starts_with("kiln "), "{out}");
    let threads = out
        .lines()
        .find_map(|l| l.strip_prefix("threads: "))
        .unwrap_or_else(|| panic!("no threads line: {out}"));
    let n: usize = threads.split_whitespace().next().unwrap().parse().unwrap();
    assert!(n >= 1);
    let features = out
        .lines()
        .find_map(|l| l.strip_prefix("cpu features: "))
        .unwrap_or_else(|| panic!("no cpu features line: {out}"));
    if cfg!(target_arch = "x86_64") {
        assert!(features.contains("sse"), "{features}");
    }
    assert!(out.contains("cuda: "), "{out}");
}

/// Whether the gan-step JSON at `path` has no phase times in its rows.
fn doc_without_phases(path: &std::path::Path) -> bool {
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["rows"].as_array().unwrap().iter().all(|r| r["phases_ms"].is_null())
}

#[test]
fn bench_gan_step_reports_the_gemm_rate_against_the_peak() {
    let tmp = tmp();
    let json = tmp.path().join("step.json");
    let json_arg = json.to_str().unwrap();
    let args = [
        "bench",
        "gan-step",
        "--preset",
        "toy",
        "--threads",
        "1",
        "--steps",
        "3",
        "--repeats",
        "1",
    ];
    let out = kiln_ok(tmp.path(), &[&args[..], &["--json", json_arg]].concat());
    assert!(
        out.lines().any(|l| l.starts_with("peak: ") && l.contains("GFLOP/s")),
        "{out}"
    );
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let peak = doc["peak"]["gflops"].as_f64().unwrap();
    let row = &doc["rows"][0];
    assert_eq!(row["config"], "toy2d");
    // The toy's products at batch 256, counted here by layer: G forward; D
    // forward ×3, D weight gradients ×3 (two in the D step, none in the G
    // step), D input gradients inside D ×2 and through D ×1; G weight
    // gradients and G input gradients inside G.
    let l = |i: f64, o: f64| 2.0 * 256.0 * i * o;
    let g = [l(2.0, 128.0), l(128.0, 128.0), l(128.0, 2.0)];
    let d = [l(2.0, 128.0), l(128.0, 128.0), l(128.0, 1.0)];
    let (g_all, d_all): (f64, f64) = (g.iter().sum(), d.iter().sum());
    let want = g_all + 3.0 * d_all + 2.0 * d_all + 2.0 * (d[1] + d[2]) + d_all + g_all + (g[1] + g[2]);
    let per_step = row["gemm_gflop_per_step"].as_f64().unwrap();
    assert!((per_step - want / 1e9).abs() < 1e-12, "{per_step} vs {}", want / 1e9);
    let (rate, ms) = (row["gemm_gflops"].as_f64().unwrap(), row["median_ms"].as_f64().unwrap());
    assert!(
        (rate - per_step / (ms / 1e3)).abs() < 1e-6 * rate,
        "{rate} vs {per_step} GFLOP in {ms} ms"
    );
    let frac = row["frac_of_peak"].as_f64().unwrap();
    assert!((frac - rate / peak).abs() < 1e-9 && frac > 0.0 && frac < 3.0, "{frac}");
    // The ceiling: the products alone at the peak.
    let params = 2 * 128 + 128 + 128 * 128 + 128 + 128 * 2 + 2 + (2 * 128 + 128 + 128 * 128 + 128 + 128 + 1);
    assert_eq!(row["params"].as_u64(), Some(params));
    let at_peak = row["steps_per_sec_at_peak"].as_f64().unwrap();
    assert!(
        (at_peak - peak / per_step).abs() < 1e-9 * at_peak,
        "{at_peak} vs {}",
        peak / per_step
    );
    assert!(
        (at_peak * ms / 1e3 - 1.0 / frac).abs() < 1e-9 / frac,
        "{at_peak} steps/s, {ms} ms, {frac}"
    );

    // --breakdown: the seven phases of the reference script, each timed in
    // every step; their medians add up to about a step (not exactly: medians
    // of parts), in milliseconds, not seconds or microseconds.
    // Seven repeats: the step's median then stands a preempted step or two
    // on a busy machine, as the phases' medians do.
    let bd = tmp.path().join("phases.json");
    let out = kiln_ok(
        tmp.path(),
        &[
            &args[..6],
            &[
                "--steps",
                "2",
                "--repeats",
                "7",
                "--breakdown",
                "--json",
                bd.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    assert!(
        out.contains("| config | G fwd | D fwd x2 + loss | D bwd | D Adam |"),
        "{out}"
    );
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&bd).unwrap()).unwrap();
    let row = &doc["rows"][0];
    let phases = row["phases_ms"].as_array().unwrap();
    let names: Vec<&str> = phases.iter().map(|p| p["phase"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "G fwd",
            "D fwd x2 + loss",
            "D bwd",
            "D Adam",
            "D fwd + loss (G step)",
            "bwd through D and G",
            "G Adam"
        ]
    );
    let times: Vec<f64> = phases.iter().map(|p| p["median_ms"].as_f64().unwrap()).collect();
    assert!(times.iter().all(|&t| t > 0.0), "{times:?}");
    let (sum, step_ms) = (times.iter().sum::<f64>(), row["median_ms"].as_f64().unwrap());
    assert!(
        sum > 0.2 * step_ms && sum < 3.0 * step_ms,
        "{sum} ms of phases in a {step_ms} ms step"
    );
    // Without --breakdown the rows carry no phases.
    assert!(doc_without_phases(&json));
    let line = assert_one_line_error(
        &kiln(tmp.path(), &["bench", "gemm", "--breakdown"]),
        "bench gemm --breakdown",
    );
    assert!(line.contains("--breakdown"), "{line}");

    // No plot for gan-step: one line, exit 1, no file.
    let png = tmp.path().join("step.png");
    let out = kiln(tmp.path(), &[&args[..], &["--plot", png.to_str().unwrap()]].concat());
    let line = assert_one_line_error(&out, "bench gan-step --plot");
    assert!(line.contains("--plot"), "{line}");
    assert!(!png.exists());
    assert_no_temp_files(tmp.path());
}
