//! The trainer through its library API: divergence mid-run keeps the last
//! good checkpoint, and a resumed trainer continues bit for bit.

use kiln_gan::{checkpoint, TrainConfig, Trainer};
use kiln_nn::Module;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-gan-trainer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn tiny(out: PathBuf) -> TrainConfig {
    let mut c = TrainConfig::preset("toy", None).unwrap();
    c.steps = 30;
    c.batch = 32;
    c.g_hidden = vec![16];
    c.d_hidden = vec![16];
    c.checkpoint_every = 5;
    c.log_every = 5;
    c.sample_every = 1000;
    c.schedule = kiln_gan::config::Schedule::Constant;
    c.out = out;
    c
}

#[test]
fn divergence_after_a_checkpoint_keeps_it() {
    let dir = scratch_dir("diverge");
    let mut t = Trainer::new(tiny(dir.clone())).unwrap();
    t.init_run_dir().unwrap();
    let stop = AtomicBool::new(false);
    let s = t.run(&stop, Some(10), false).unwrap();
    assert!(s.interrupted);
    assert_eq!(t.step, 10);
    let ck_path = dir.join("checkpoints").join(checkpoint::FILE);
    let before = std::fs::read(&ck_path).unwrap();

    // The learning rate explodes mid-run: the next steps diverge.
    t.config.lr_g = 1e30;
    t.config.lr_d = 1e30;
    let err = t.run(&stop, None, false).unwrap_err().to_string();
    let step: u64 = err
        .split("diverged at step ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no step in {err:?}"));
    assert!((11..15).contains(&step), "diverges before the next checkpoint: {err}");
    assert!(err.contains("op `") || err.contains("gradient of"), "{err}");
    assert_eq!(std::fs::read(&ck_path).unwrap(), before);

    // The kept checkpoint resumes (with the learning rate of config.json) to the end.
    let mut r = Trainer::resume(&dir, None).unwrap();
    assert_eq!(r.step, 10);
    let s = r.run(&stop, None, false).unwrap();
    assert!(!s.interrupted);
    assert_eq!(s.steps, 30);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resumed_trainer_matches_a_straight_one() {
    let (a, b) = (scratch_dir("straight"), scratch_dir("resumed"));
    let stop = AtomicBool::new(false);
    let mut ta = Trainer::new(tiny(a.clone())).unwrap();
    ta.init_run_dir().unwrap();
    ta.run(&stop, None, false).unwrap();

    let mut tb = Trainer::new(tiny(b.clone())).unwrap();
    tb.init_run_dir().unwrap();
    tb.run(&stop, Some(13), false).unwrap();
    drop(tb);
    let mut tb = Trainer::resume(&b, None).unwrap();
    assert_eq!(tb.step, 13);
    tb.run(&stop, None, false).unwrap();

    for (x, y) in ta.g.parameters().iter().zip(tb.g.parameters().iter()) {
        assert_eq!(x.to_vec::<f32>().unwrap(), y.to_vec::<f32>().unwrap());
    }
    for (x, y) in ta.d.parameters().iter().zip(tb.d.parameters().iter()) {
        assert_eq!(x.to_vec::<f32>().unwrap(), y.to_vec::<f32>().unwrap());
    }
    std::fs::remove_dir_all(&a).unwrap();
    std::fs::remove_dir_all(&b).unwrap();
}
