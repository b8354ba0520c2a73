//! Stopping a run and resuming it gives the same result, bit for bit, as
//! training straight through; a diverging run keeps its last good checkpoint.

mod common;

use common::*;
use std::path::Path;

/// Asserts that two runs ended in the same state: same generator file, same
/// checkpoint tensors and metadata, same metrics (except timings), same samples.
fn assert_same_run(a: &Path, b: &Path) {
    assert_eq!(
        std::fs::read(a.join("generator.safetensors")).unwrap(),
        std::fs::read(b.join("generator.safetensors")).unwrap(),
        "generator.safetensors differs"
    );
    let (ca, cb) = (
        a.join("checkpoints/last.safetensors"),
        b.join("checkpoints/last.safetensors"),
    );
    let (_, ma) = kiln_nn::load_tensors(&ca).unwrap();
    let (_, mb) = kiln_nn::load_tensors(&cb).unwrap();
    assert_eq!(ma, mb, "checkpoint metadata differs");
    let (ta, tb) = (tensors(&ca), tensors(&cb));
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (name, x) in &ta {
        assert!(tb[name] == *x, "checkpoint tensor {name} differs");
    }
    let strip = |dir: &Path| {
        metrics(dir)
            .into_iter()
            .map(|mut v| {
                v.as_object_mut().unwrap().remove("steps_per_sec");
                v
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(a), strip(b), "metrics differ");
    let steps = metric_steps(b);
    assert!(
        steps.windows(2).all(|w| w[0] < w[1]),
        "duplicated or unordered steps: {steps:?}"
    );
    assert_eq!(files_under(&a.join("samples")), files_under(&b.join("samples")));
    assert_no_temp_files(a);
    assert_no_temp_files(b);
}

/// Trains A straight through and B with a stop at step 25 and a resume.
fn straight_vs_resumed(cwd: &Path, flags: &[&str]) {
    let (a, b) = (cwd.join("a"), cwd.join("b"));
    let common = [
        "--steps",
        "40",
        "--checkpoint-every",
        "10",
        "--log-every",
        "5",
        "--sample-every",
        "20",
        "--quiet",
    ];
    kiln_ok(
        cwd,
        &[&["train", "--out", a.to_str().unwrap()], &common[..], flags].concat(),
    );
    let out = kiln_ok(
        cwd,
        &[
            &["train", "--out", b.to_str().unwrap(), "--stop-at", "25"],
            &common[..],
            flags,
        ]
        .concat(),
    );
    assert!(out.contains("stopped after 25 steps"), "{out}");
    assert!(out.contains("--resume"), "{out}");
    let ck = kiln_gan::checkpoint::load(&b.join("checkpoints/last.safetensors")).unwrap();
    assert_eq!(ck.step, 25, "the stop writes a checkpoint at the stop step");
    assert_eq!(*metric_steps(&b).last().unwrap(), 25);
    let out = kiln_ok(cwd, &["train", "--resume", "--out", b.to_str().unwrap(), "--quiet"]);
    assert!(out.contains("trained 40 steps"), "{out}");
    assert_same_run(&a, &b);
}

#[test]
fn resume_ring8_bit_for_bit() {
    let tmp = tmp();
    straight_vs_resumed(tmp.path(), &["--batch", "32", "--g-hidden", "16", "--d-hidden", "16"]);
}

#[test]
fn resume_idx_images_bit_for_bit() {
    // 45 images and batches of 16: epochs end mid-batch, and the stop at
    // step 25 (400 images) falls inside an epoch.
    let tmp = tmp();
    let idx = tmp.path().join("train.idx.gz");
    write_random_idx(&idx, 45, 12, 10, 3);
    let data = format!("idx:{}", idx.display());
    straight_vs_resumed(
        tmp.path(),
        &[
            "--preset",
            "mlp",
            "--data",
            &data,
            "--batch",
            "16",
            "--g-hidden",
            "16",
            "--d-hidden",
            "16",
        ],
    );
    let ck = kiln_gan::checkpoint::load(&tmp.path().join("b/checkpoints/last.safetensors")).unwrap();
    let epoch = ck.epoch.expect("an image set saves its epoch state");
    assert_eq!(
        (epoch.epoch, epoch.cursor),
        (15, 10),
        "640 images = 14 epochs of 45 and 10"
    );
}

#[test]
fn resume_twice_and_extend_steps() {
    // Stops at 10 and 30 with two resumes, then --steps extends the run to 50:
    // the same weights as 50 steps straight (with a constant LR schedule, which
    // does not depend on the total).
    let tmp = tmp();
    let cwd = tmp.path();
    let flags = [
        "--batch",
        "32",
        "--g-hidden",
        "16",
        "--d-hidden",
        "16",
        "--schedule",
        "constant",
        "--checkpoint-every",
        "7",
        "--log-every",
        "10",
        "--quiet",
    ];
    let (a, b) = (cwd.join("a"), cwd.join("b"));
    kiln_ok(
        cwd,
        &[&["train", "--out", a.to_str().unwrap(), "--steps", "50"], &flags[..]].concat(),
    );
    let b_str = b.to_str().unwrap();
    kiln_ok(
        cwd,
        &[
            &["train", "--out", b_str, "--steps", "30", "--stop-at", "10"],
            &flags[..],
        ]
        .concat(),
    );
    kiln_ok(
        cwd,
        &["train", "--resume", "--out", b_str, "--stop-at", "30", "--quiet"],
    );
    kiln_ok(cwd, &["train", "--resume", "--out", b_str, "--steps", "50", "--quiet"]);
    assert_eq!(
        std::fs::read(a.join("generator.safetensors")).unwrap(),
        std::fs::read(b.join("generator.safetensors")).unwrap()
    );
    let steps = metric_steps(&b);
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
    assert_eq!(steps, metric_steps(&a));
}

#[test]
fn divergence_names_step_and_op_and_keeps_the_last_good_checkpoint() {
    let tmp = tmp();
    let cwd = tmp.path();
    let dir = cwd.join("run");
    let run = dir.to_str().unwrap();
    // A good start: 7 steps, checkpoint at 5 and at the stop.
    kiln_ok(
        cwd,
        &[
            &["train", "--out", run, "--checkpoint-every", "5", "--stop-at", "7"],
            TINY,
        ]
        .concat(),
    );
    let ck_path = dir.join("checkpoints/last.safetensors");
    let before = std::fs::read(&ck_path).unwrap();
    let gen_before = std::fs::read(dir.join("generator.safetensors")).unwrap();
    // Make the rest of the run explode: a learning rate of 1e30.
    let cfg_path = dir.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["lr_g"] = serde_json::json!(1e30);
    cfg["lr_d"] = serde_json::json!(1e30);
    cfg["schedule"] = serde_json::json!("constant");
    std::fs::write(&cfg_path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();

    let out = kiln(cwd, &["train", "--resume", "--out", run, "--quiet"]);
    let line = assert_one_line_error(&out, "divergence");
    assert!(line.contains("diverged at step"), "{line}");
    let step: u64 = line
        .split("diverged at step ")
        .nth(1)
        .unwrap()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(step > 7, "{line}");
    assert!(
        line.contains("op `") || line.contains("gradient of"),
        "the message names the op: {line}"
    );
    assert_eq!(
        std::fs::read(&ck_path).unwrap(),
        before,
        "the last good checkpoint was changed"
    );
    assert_eq!(std::fs::read(dir.join("generator.safetensors")).unwrap(), gen_before);
    let ck = kiln_gan::checkpoint::load(&ck_path).unwrap();
    assert!(ck.step < step);
    assert_eq!(ck.step, 7);
    assert!(tensors(&ck_path).values().all(|(_, v)| v.iter().all(|x| x.is_finite())));
    assert_no_temp_files(&dir);
}

#[test]
fn divergence_in_a_fresh_run() {
    // lsgan with lr 1e3 overflows at step 2; checkpoint every step.
    let tmp = tmp();
    let cwd = tmp.path();
    let dir = cwd.join("run");
    let out = kiln(
        cwd,
        &[
            &[
                "train",
                "--out",
                dir.to_str().unwrap(),
                "--checkpoint-every",
                "1",
                "--lr",
                "1e3",
            ][..],
            &["--loss", "lsgan", "--act", "leaky-relu", "--schedule", "constant"][..],
            TINY,
        ]
        .concat(),
    );
    let line = assert_one_line_error(&out, "fresh divergence");
    assert!(line.contains("diverged at step"), "{line}");
    let ck_path = dir.join("checkpoints/last.safetensors");
    let ck = kiln_gan::checkpoint::load(&ck_path).unwrap();
    assert!(ck.step >= 1);
    assert!(line.contains(&format!("step {}", ck.step + 1)), "{line}");
    // Everything in the kept checkpoint is finite, Adam's moments included: a
    // gradient whose square would overflow f32 stops the run before the update.
    for (name, (_, v)) in tensors(&ck_path) {
        assert!(v.iter().all(|x| x.is_finite()), "{name} is not finite");
    }
    assert_no_temp_files(&dir);
}
