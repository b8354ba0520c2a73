//! Helpers shared by the end-to-end tests of the `kiln` binary.
#![allow(dead_code)]

use kiln_gan::idx::{write_idx_images, IdxImages};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Flags that make a toy run take well under a second.
pub const TINY: &[&str] = &[
    "--steps",
    "20",
    "--batch",
    "32",
    "--g-hidden",
    "16",
    "--d-hidden",
    "16",
    "--quiet",
];

/// Runs the `kiln` binary in `cwd` with `args` (and extra environment variables).
pub fn kiln_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.args(args).current_dir(cwd).env_remove("RUST_BACKTRACE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the kiln binary runs")
}

/// Runs the `kiln` binary in `cwd`.
pub fn kiln(cwd: &Path, args: &[&str]) -> Output {
    kiln_env(cwd, args, &[])
}

/// Runs `kiln` and asserts exit 0; returns stdout.
pub fn kiln_ok(cwd: &Path, args: &[&str]) -> String {
    let out = kiln(cwd, args);
    assert!(
        out.status.success(),
        "kiln {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

/// Asserts that a run failed cleanly: non-zero exit, stderr exactly one
/// `kiln: error:` line, no panic text. Returns that line.
pub fn assert_one_line_error(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "{what}: expected failure, got success; stderr: {stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{what}: panic: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: stderr must be one line, got {stderr:?}");
    assert!(lines[0].starts_with("kiln: error: "), "{what}: {stderr:?}");
    lines[0].to_string()
}

/// Every file under `dir` (recursively), relative to `dir`, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Asserts that no temporary file (`.NAME.tmp-…`) is left anywhere under `dir`.
pub fn assert_no_temp_files(dir: &Path) {
    for f in files_under(dir) {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            !name.contains(".tmp"),
            "temporary file left behind: {}",
            dir.join(&f).display()
        );
    }
}

/// Decodes a PNG file; returns (width, height).
pub fn png_size(path: &Path) -> (u32, u32) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(file)
        .read_info()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut buf = vec![0; reader.output_buffer_size()];
    let frame = reader
        .next_frame(&mut buf)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(frame.width > 0 && frame.height > 0);
    (frame.width, frame.height)
}

/// A safetensors file as name → (shape, values as f64).
pub fn tensors(path: &Path) -> BTreeMap<String, (Vec<usize>, Vec<f64>)> {
    let (named, _) = kiln_nn::load_tensors(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    named
        .into_iter()
        .map(|(n, t)| {
            (
                n,
                (
                    t.shape().to_vec(),
                    t.to_dtype(kiln_core::DType::F64).unwrap().to_vec::<f64>().unwrap(),
                ),
            )
        })
        .collect()
}

/// Names and shapes of a safetensors file.
pub fn shapes(path: &Path) -> BTreeMap<String, Vec<usize>> {
    tensors(path).into_iter().map(|(n, (s, _))| (n, s)).collect()
}

/// Writes `count` random `rows`×`cols` grey images as an IDX file.
pub fn write_random_idx(path: &Path, count: usize, rows: usize, cols: usize, seed: u64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let pixels = (0..count * rows * cols).map(|_| rng.gen::<u8>()).collect();
    write_idx_images(
        path,
        &IdxImages {
            count,
            rows,
            cols,
            pixels,
        },
    )
    .unwrap();
}

/// The lines of metrics.jsonl as JSON objects.
pub fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad metrics line {l:?}: {e}")))
        .collect()
}

/// The `step` of every metrics line.
pub fn metric_steps(dir: &Path) -> Vec<u64> {
    metrics(dir).iter().map(|v| v["step"].as_u64().unwrap()).collect()
}

/// A fresh temporary directory.
pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}
