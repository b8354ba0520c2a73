//! safetensors files as untrusted input and atomic output: round trips keep
//! names, shapes, dtypes and metadata; any truncation or corruption is an
//! error, never a panic; writes never leave partial or temporary files.

use kiln_core::{DType, Device, Error, Result, Tensor};
use kiln_nn::state_dict::parse_tensors;
use kiln_nn::{load_tensors, save_tensors};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-nn-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sample_tensors() -> Vec<(String, Tensor)> {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    vec![
        (
            "a.weight".into(),
            Tensor::randn(&[3, 4], DType::F32, Device::Cpu, &mut rng).unwrap(),
        ),
        (
            "b.exp_avg".into(),
            Tensor::randn(&[5], DType::F64, Device::Cpu, &mut rng).unwrap(),
        ),
        ("c.scalar".into(), Tensor::scalar(7.0, DType::F32, Device::Cpu).unwrap()),
        (
            "d.empty".into(),
            Tensor::zeros(&[0, 2], DType::F32, Device::Cpu).unwrap(),
        ),
    ]
}

fn sample_bytes() -> Vec<u8> {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(write_sample).clone()
}

fn write_sample() -> Vec<u8> {
    let dir = temp_dir("bytes");
    let path = dir.join("sample.safetensors");
    save_tensors(&sample_tensors(), HashMap::from([("step".into(), "42".into())]), &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    bytes
}

#[test]
fn tensors_and_metadata_round_trip_exactly() -> Result<()> {
    let dir = temp_dir("roundtrip");
    let path = dir.join("ckpt.safetensors");
    let meta = HashMap::from([
        ("step".to_string(), "42".to_string()),
        ("rng".to_string(), "123456789".to_string()),
    ]);
    save_tensors(&sample_tensors(), meta.clone(), &path)?;
    let (loaded, loaded_meta) = load_tensors(&path)?;
    assert_eq!(loaded_meta, meta);
    assert_eq!(loaded.len(), 4);
    for ((n0, t0), (n1, t1)) in sample_tensors().iter().zip(&loaded) {
        assert_eq!(n0, n1);
        assert_eq!(t0.shape(), t1.shape());
        assert_eq!(t0.dtype(), t1.dtype());
        assert_eq!(t0.to_vec_f64()?, t1.to_vec_f64()?);
    }
    std::fs::remove_dir_all(&dir).unwrap();
    Ok(())
}

#[test]
fn the_same_checkpoint_gives_the_same_bytes() -> Result<()> {
    // Metadata arrives in a HashMap (random iteration order per map); the
    // file must not depend on it. Names and values that need JSON escaping
    // round-trip, and the safetensors crate accepts the file.
    let dir = temp_dir("samebytes");
    let meta = || {
        (0..20)
            .map(|i| (format!("key {i} \"quoted\" ü"), format!("value\\{i}\n")))
            .collect::<HashMap<String, String>>()
    };
    let mut tensors = sample_tensors();
    tensors.reverse();
    tensors.push(("e.\"odd\" name".into(), Tensor::scalar(1.5, DType::F64, Device::Cpu)?));
    let (p1, p2) = (dir.join("one.safetensors"), dir.join("two.safetensors"));
    save_tensors(&tensors, meta(), &p1)?;
    save_tensors(&tensors, meta(), &p2)?;
    let bytes = std::fs::read(&p1).unwrap();
    assert_eq!(bytes, std::fs::read(&p2).unwrap());
    assert!(safetensors::SafeTensors::deserialize(&bytes).is_ok());
    let (loaded, loaded_meta) = load_tensors(&p1)?;
    assert_eq!(loaded_meta, meta());
    let names: Vec<&str> = loaded.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["a.weight", "b.exp_avg", "c.scalar", "d.empty", "e.\"odd\" name"]
    );
    assert_eq!(loaded[4].1.to_vec_f64()?, vec![1.5]);
    std::fs::remove_dir_all(&dir).unwrap();
    Ok(())
}

#[test]
fn saving_overwrites_atomically_and_leaves_no_temporary_files() -> Result<()> {
    let dir = temp_dir("atomic");
    let path = dir.join("model.safetensors");
    std::fs::write(&path, b"old contents").unwrap();
    save_tensors(&sample_tensors(), HashMap::new(), &path)?;
    save_tensors(&sample_tensors(), HashMap::new(), &path)?;
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["model.safetensors"]);
    assert_eq!(load_tensors(&path)?.0.len(), 4);
    std::fs::remove_dir_all(&dir).unwrap();
    Ok(())
}

#[test]
fn a_failed_save_keeps_the_old_file_and_removes_its_temporary() {
    let dir = temp_dir("failed-save");
    // The target is a non-empty directory, so the final rename fails.
    let target = dir.join("taken");
    std::fs::create_dir_all(target.join("inside")).unwrap();
    let err = save_tensors(&sample_tensors(), HashMap::new(), &target).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["taken"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn duplicate_names_are_refused() {
    let dir = temp_dir("dup");
    let t = Tensor::zeros(&[2], DType::F32, Device::Cpu).unwrap();
    let err = save_tensors(
        &[("x".into(), t.clone()), ("x".into(), t)],
        HashMap::new(),
        dir.join("d.safetensors"),
    );
    assert!(err.unwrap_err().to_string().contains("\"x\" appears twice"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_truncation_is_a_bad_file_error() {
    let bytes = sample_bytes();
    for len in 0..bytes.len() {
        match parse_tensors(&bytes[..len], "cut.safetensors") {
            Err(Error::BadFile { path, .. }) => assert_eq!(path, "cut.safetensors"),
            other => panic!("truncated to {len} of {} bytes: {other:?}", bytes.len()),
        }
    }
    assert!(parse_tensors(&bytes, "whole").is_ok());
}

#[test]
fn header_claiming_huge_shapes_or_lengths_is_an_error() {
    for header in [
        r#"{"w":{"dtype":"F32","shape":[18446744073709551615,2],"data_offsets":[0,8]}}"#,
        r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}}"#,
        r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#,
        r#"{"w":{"dtype":"F32","shape":[2]}}"#,
        r#"[1, 2, 3]"#,
    ] {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&[0; 8]);
        assert!(parse_tensors(&bytes, "evil").is_err(), "{header}");
    }
    let mut huge_len = u64::MAX.to_le_bytes().to_vec();
    huge_len.extend_from_slice(b"{}");
    assert!(parse_tensors(&huge_len, "evil").is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_tensors(&bytes, "random");
    }

    #[test]
    fn corrupted_files_never_panic(flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = sample_bytes();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if let Ok((tensors, _)) = parse_tensors(&bytes, "flipped") {
            // A flip inside the data is undetectable; the structure still holds.
            for (_, t) in tensors {
                prop_assert_eq!(t.numel(), t.to_vec_f64().unwrap().len());
            }
        }
    }
}
