//! Bad input never panics: every failure is one `kiln: error:` line on
//! stderr, a non-zero exit, and no partial or temporary files.

mod common;

use common::*;
use std::path::Path;

/// Runs `kiln args` in `cwd` (with `env`), asserts a clean one-line failure
/// that leaves no temporary files and no run directory `out` behind (when
/// given); returns the error line.
fn fails(cwd: &Path, args: &[&str], env: &[(&str, &str)], out: Option<&Path>) -> String {
    let before = files_under(cwd);
    let o = kiln_env(cwd, args, env);
    let line = assert_one_line_error(&o, &format!("kiln {args:?}"));
    assert!(o.stdout.is_empty(), "kiln {args:?} printed to stdout");
    assert_no_temp_files(cwd);
    if let Some(out) = out {
        assert!(!out.exists(), "kiln {args:?} created {}", out.display());
    }
    assert_eq!(files_under(cwd), before, "kiln {args:?} changed files");
    line
}

fn train_fails(cwd: &Path, extra: &[&str], env: &[(&str, &str)]) -> String {
    let out = cwd.join("out");
    fails(
        cwd,
        &[&["train", "--quiet", "--out", out.to_str().unwrap()], extra].concat(),
        env,
        Some(&out),
    )
}

#[test]
fn bad_flags_and_settings() {
    let tmp = tmp();
    let cwd = tmp.path();
    let check = |extra: &[&str], needle: &str| {
        let line = train_fails(cwd, extra, &[]);
        assert!(line.contains(needle), "{extra:?}: {line:?} lacks {needle:?}");
    };
    check(&["--bogus"], "--bogus");
    check(&["--preset", "nope"], "unknown preset \"nope\"");
    check(&["--loss", "nope"], "unknown loss \"nope\"");
    check(&["--data", "nope"], "unknown data set");
    check(&["--batch", "0"], "--batch");
    check(&["--steps", "0"], "--steps");
    check(&["--lr", "-1"], "learning rates must be positive");
    check(&["--lr=-1"], "learning rates must be positive");
    check(&["--lr-d", "0"], "learning rates must be positive");
    check(&["--threads", "0"], "--threads");
    check(&["--batch", "30", "--pack", "4"], "--pack");
    check(&["--g-hidden", "16,x"], "--g-hidden");
    check(&["--act", "sigmoid"], "--act");
    check(&["--schedule", "exp"], "unknown schedule");
    check(&["--ema", "1.5"], "--ema");
    check(&["--preset", "seed", "--loss", "hinge"], "sigmoid");
    check(&["--preset", "seed", "--loss", "wgan-gp"], "sigmoid");
    if !Path::new("/dev/nvidiactl").exists() {
        // No GPU here: every CUDA request is one readable line, nothing on stdout
        // (the benchmarks print no table header before finding out).
        let line = train_fails(cwd, &["--device", "cuda"], &[]);
        assert!(line.contains("no device") && line.contains("cuda"), "{line}");
        for what in ["gan-step", "reduce", "gemm"] {
            let line = fails(cwd, &["bench", what, "--device", "cuda"], &[], None);
            assert!(line.contains("no device"), "bench {what}: {line}");
        }
    }
    // No step to time: one line, not a table of infinities (or a panic with
    // --breakdown).
    for extra in [&[][..], &["--breakdown"][..]] {
        let line = fails(
            cwd,
            &[&["bench", "gan-step", "--steps", "0"][..], extra].concat(),
            &[],
            None,
        );
        assert!(line.contains("--steps 0"), "{line}");
    }
    // Benchmark options that would be dropped without a word.
    for (args, needle) in [
        (&["bench", "gemm", "--repeats", "0"][..], "--repeats"),
        (&["bench", "gan-step", "--repeats", "0"][..], "--repeats"),
        (&["bench", "gemm", "--impls", "v9"][..], "unknown implementation `v9`"),
        (&["bench", "adam", "--impls", "v4"][..], "--impls"),
        (&["bench", "layers", "--sizes", "64"][..], "--sizes"),
        (&["bench", "gemm-layers", "--sizes", "64"][..], "--sizes"),
        (&["bench", "gan-step", "--impls", "v4"][..], "--impls does not apply"),
        (&["bench", "gan-step", "--sizes", "64"][..], "--sizes does not apply"),
        (
            &["bench", "gemm", "--device", "cuda", "--impls", "v4"][..],
            "--impls does not apply",
        ),
        (
            &["bench", "reduce", "--full-g-backward"][..],
            "--full-g-backward does not apply",
        ),
        (&["bench", "gemm", "--shapes", "3x4"][..], "bad GEMM shape `3x4`"),
        (&["bench", "gemm", "--shapes", "3x4x5:q"][..], "bad GEMM shape"),
        (&["bench", "gemm", "--shapes", "3x4x5", "--sizes", "64"][..], "not both"),
        (&["bench", "adam", "--shapes", "3x4x5"][..], "--shapes"),
    ] {
        let line = fails(cwd, args, &[], None);
        assert!(line.contains(needle), "{args:?}: {line}");
    }
    let line = train_fails(cwd, &["--device", "tpu"], &[]);
    assert!(line.contains("unknown device"), "{line}");
    fails(cwd, &["frobnicate"], &[], None);
    fails(cwd, &["sample"], &[], None);
}

#[test]
fn missing_and_malformed_data() {
    let tmp = tmp();
    let cwd = tmp.path();
    let line = train_fails(cwd, &["--preset", "mlp", "--data", "idx:/nonexistent"], &[]);
    assert!(line.contains("/nonexistent"), "{line}");
    let line = train_fails(cwd, &["--preset", "mlp", "--data", "idx:"], &[]);
    assert!(line.contains("path"), "{line}");

    // Truncated: the header promises 10 images, the file holds 9.5.
    let good = cwd.join("good.idx");
    write_random_idx(&good, 10, 28, 28, 0);
    let bytes = std::fs::read(&good).unwrap();
    std::fs::remove_file(&good).unwrap();
    std::fs::write(cwd.join("short.idx"), &bytes[..bytes.len() - 392]).unwrap();
    let line = train_fails(cwd, &["--preset", "mlp", "--data", "idx:short.idx"], &[]);
    assert!(line.contains("short.idx"), "{line}");
    // Only the header, and only part of it.
    std::fs::write(cwd.join("header.idx"), &bytes[..16]).unwrap();
    train_fails(cwd, &["--preset", "mlp", "--data", "idx:header.idx"], &[]);
    std::fs::write(cwd.join("half-header.idx"), &bytes[..6]).unwrap();
    train_fails(cwd, &["--preset", "mlp", "--data", "idx:half-header.idx"], &[]);
    // Bad magic: a labels file (2049) and garbage.
    let mut labels = bytes.clone();
    labels[3] = 0x01;
    std::fs::write(cwd.join("labels.idx"), &labels).unwrap();
    let line = train_fails(cwd, &["--preset", "mlp", "--data", "idx:labels.idx"], &[]);
    assert!(line.contains("labels.idx"), "{line}");
    let mut garbage = bytes.clone();
    garbage[..4].copy_from_slice(b"GIF8");
    std::fs::write(cwd.join("garbage.idx"), &garbage).unwrap();
    train_fails(cwd, &["--preset", "mlp", "--data", "idx:garbage.idx"], &[]);
    // A gzip file cut short.
    write_random_idx(&cwd.join("a.idx.gz"), 10, 28, 28, 0);
    let gz = std::fs::read(cwd.join("a.idx.gz")).unwrap();
    std::fs::write(cwd.join("cut.idx.gz"), &gz[..gz.len() / 2]).unwrap();
    train_fails(cwd, &["--preset", "mlp", "--data", "idx:cut.idx.gz"], &[]);

    // An empty image directory, a missing one, and one with a broken PNG.
    std::fs::create_dir(cwd.join("empty")).unwrap();
    let line = train_fails(cwd, &["--preset", "mlp", "--data", "images:empty"], &[]);
    assert!(line.contains("empty"), "{line}");
    train_fails(cwd, &["--preset", "mlp", "--data", "images:missing"], &[]);
    std::fs::create_dir(cwd.join("broken")).unwrap();
    std::fs::write(cwd.join("broken/a.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let line = train_fails(cwd, &["--preset", "mlp", "--data", "images:broken"], &[]);
    assert!(line.contains("a.png"), "{line}");

    // Fashion-MNIST not installed: the message says how to get it.
    let line = train_fails(cwd, &["--preset", "mlp"], &[("KILN_FASHION_MNIST_DIR", "/nonexistent")]);
    assert!(line.contains("apt-get install dataset-fashion-mnist"), "{line}");
    assert!(line.contains("/nonexistent"), "{line}");
}

/// A finished tiny run in `cwd/name`.
fn tiny_run(cwd: &Path, name: &str) -> std::path::PathBuf {
    let dir = cwd.join(name);
    kiln_ok(cwd, &[&["train", "--out", dir.to_str().unwrap()], TINY].concat());
    dir
}

#[test]
fn resume_without_a_usable_checkpoint() {
    let tmp = tmp();
    let cwd = tmp.path();
    // No run at all, then a run directory without a checkpoint.
    std::fs::create_dir(cwd.join("nothing")).unwrap();
    let line = fails(cwd, &["train", "--resume", "--out", "nothing"], &[], None);
    assert!(line.contains("resume"), "{line}");
    fails(
        cwd,
        &["train", "--resume", "--out", "missing"],
        &[],
        Some(&cwd.join("missing")),
    );
    let dir = tiny_run(cwd, "run");
    let ck = dir.join("checkpoints/last.safetensors");
    let good = std::fs::read(&ck).unwrap();
    std::fs::remove_file(&ck).unwrap();
    let line = fails(cwd, &["train", "--resume", "--out", "run"], &[], None);
    assert!(line.contains("no checkpoint"), "{line}");

    // Truncated, garbage, and valid safetensors that is not a kiln checkpoint:
    // each refused, and neither the checkpoint nor the metrics are touched.
    let generator = std::fs::read(dir.join("generator.safetensors")).unwrap();
    for (what, bytes) in [
        ("truncated", good[..good.len() / 2].to_vec()),
        ("header only", good[..20].to_vec()),
        ("garbage", vec![0xff; 64]),
        ("empty", Vec::new()),
        ("generator instead", generator.clone()),
    ] {
        std::fs::write(&ck, &bytes).unwrap();
        let metrics = std::fs::read(dir.join("metrics.jsonl")).unwrap();
        let line = fails(cwd, &["train", "--resume", "--out", "run"], &[], None);
        assert!(line.contains("last.safetensors"), "{what}: {line}");
        assert_eq!(std::fs::read(&ck).unwrap(), bytes, "{what}: checkpoint changed");
        assert_eq!(std::fs::read(dir.join("metrics.jsonl")).unwrap(), metrics);
    }
    // A checkpoint of another model (other widths) is refused too.
    std::fs::write(&ck, &good).unwrap();
    let cfg_path = dir.join("config.json");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    v["g_hidden"] = serde_json::json!([8]);
    std::fs::write(&cfg_path, v.to_string()).unwrap();
    fails(cwd, &["train", "--resume", "--out", "run"], &[], None);
    assert_eq!(std::fs::read(&ck).unwrap(), good);
    // A broken config.json.
    std::fs::write(&cfg_path, "{ not json").unwrap();
    let line = fails(cwd, &["train", "--resume", "--out", "run"], &[], None);
    assert!(line.contains("config.json"), "{line}");
}

#[test]
fn sample_refuses_bad_runs_and_outputs() {
    let tmp = tmp();
    let cwd = tmp.path();
    let dir = tiny_run(cwd, "run");
    let run = dir.to_str().unwrap();
    // `kiln sample --run RUN EXTRA… --out OUT` fails and leaves no OUT.
    let sample_fails = |run: &str, extra: &[&str], out: &str| {
        fails(
            cwd,
            &[&["sample", "--run", run], extra, &["--out", out]].concat(),
            &[],
            Some(&cwd.join(out)),
        )
    };
    let line = sample_fails(run, &[], "x.txt");
    assert!(line.contains("x.txt"), "{line}");
    sample_fails(run, &[], "x");
    sample_fails(run, &["--n", "0"], "x.npy");
    sample_fails(run, &["--noise", "none.npy"], "x.npy");
    std::fs::write(cwd.join("notnpy.npy"), b"hello").unwrap();
    sample_fails(run, &["--noise", "notnpy.npy"], "x.npy");
    sample_fails("nope", &[], "x.npy");

    let gen = dir.join("generator.safetensors");
    let good = std::fs::read(&gen).unwrap();
    for bytes in [good[..good.len() - 7].to_vec(), vec![1, 2, 3], b"{}".to_vec()] {
        std::fs::write(&gen, &bytes).unwrap();
        let line = sample_fails(run, &[], "x.npy");
        assert!(line.contains("generator.safetensors"), "{line}");
        assert_eq!(std::fs::read(&gen).unwrap(), bytes);
    }
    // The discriminator's weights are not a generator.
    let (d, _) = kiln_nn::load_tensors(dir.join("checkpoints/last.safetensors")).unwrap();
    let d: Vec<_> = d
        .into_iter()
        .filter_map(|(n, t)| n.strip_prefix("D.").map(|n| (n.to_string(), t)))
        .collect();
    kiln_nn::save_tensors(&d, Default::default(), &gen).unwrap();
    let line = sample_fails(run, &[], "x.npy");
    assert!(line.contains("generator.safetensors"), "{line}");
}
