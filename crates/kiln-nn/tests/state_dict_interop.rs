//! State dicts against PyTorch: files written by `safetensors.torch.save_file`
//! load into identical kiln nets and give PyTorch's outputs; kiln's files use
//! PyTorch's names and layouts. The test also exports kiln's state dicts to
//! `$TMPDIR/kiln-nn-export/` for `make_optim_fixtures.py --check-kiln`.

use kiln_core::{DType, Device, Result, Tensor};
use kiln_nn::state_dict::{load_state_dict_from, parse_tensors, state_dict};
use kiln_nn::{
    load_state_dict, load_tensors, save_state_dict, Activation, BatchNorm1d, Linear, Module, Optimizer, Sequential,
    Sgd, SgdConfig,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

fn fixture_path(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn interop() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture_path("interop.json")).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn generator(rng: &mut ChaCha8Rng) -> Result<Sequential> {
    Ok(Sequential::new()
        .push(Linear::new(100, 128, true, rng)?)
        .push(Activation::Relu)
        .push(Linear::new(128, 784, true, rng)?)
        .push(Activation::Sigmoid))
}

fn bn_net(rng: &mut ChaCha8Rng) -> Result<Sequential> {
    Ok(Sequential::new()
        .push(Linear::new(6, 5, true, rng)?)
        .push(BatchNorm1d::new(5)?)
        .push(Activation::Relu)
        .push(Linear::new(5, 3, true, rng)?))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-nn-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn torch_generator_state_dict_loads_and_matches_torch_outputs() -> Result<()> {
    let fx = interop();
    let net = generator(&mut ChaCha8Rng::seed_from_u64(3))?;
    load_state_dict(&net, fixture_path("generator.safetensors"))?;
    let z = Tensor::from_vec(floats(&fx["generator_input"]), &[2, 100], Device::Cpu)?;
    let y = net.forward(&z)?.to_vec::<f32>()?;
    let err = max_abs_diff(&y, &floats(&fx["generator_output"]));
    assert!(err < 1e-5, "max |kiln − torch| = {err}");
    Ok(())
}

#[test]
fn torch_batchnorm_net_with_int64_counter_loads_and_matches_in_eval_mode() -> Result<()> {
    let fx = interop();
    let mut net = bn_net(&mut ChaCha8Rng::seed_from_u64(4))?;
    load_state_dict(&net, fixture_path("bn_net.safetensors"))?;
    net.set_training(false);
    let x = Tensor::from_vec(floats(&fx["bn_net_input"]), &[4, 6], Device::Cpu)?;
    let err = max_abs_diff(&net.forward(&x)?.to_vec::<f32>()?, &floats(&fx["bn_net_output"]));
    assert!(err < 1e-5, "max |kiln − torch| = {err}");
    let sd = state_dict(&net);
    let counter = &sd.iter().find(|(n, _)| n == "1.num_batches_tracked").unwrap().1;
    assert_eq!(counter.item()?, 3.0);
    Ok(())
}

#[test]
fn kiln_state_dict_uses_torch_names_and_layouts_and_exports_for_torch() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let dir = std::env::temp_dir().join("kiln-nn-export");
    std::fs::create_dir_all(&dir).unwrap();
    let mut outputs = serde_json::Map::new();
    for (name, mut net, n_in) in [
        ("generator", generator(&mut rng)?, 100),
        ("bn_net", bn_net(&mut rng)?, 6),
    ] {
        // Move BatchNorm's running stats off their initial values first.
        for _ in 0..2 {
            net.forward(&Tensor::randn(&[8, n_in], DType::F32, Device::Cpu, &mut rng)?)?;
        }
        net.set_training(false);
        let path = dir.join(format!("{name}.safetensors"));
        save_state_dict(&net, &path)?;
        let (tensors, _) = load_tensors(&path)?;
        let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
        let shape = |n: &str| tensors.iter().find(|(k, _)| k == n).unwrap().1.shape().to_vec();
        if name == "generator" {
            assert_eq!(names, ["0.bias", "0.weight", "2.bias", "2.weight"]);
            assert_eq!(shape("2.weight"), [784, 128]);
        } else {
            assert_eq!(
                names,
                [
                    "0.bias",
                    "0.weight",
                    "1.bias",
                    "1.num_batches_tracked",
                    "1.running_mean",
                    "1.running_var",
                    "1.weight",
                    "3.bias",
                    "3.weight"
                ]
            );
            assert_eq!(shape("1.num_batches_tracked"), Vec::<usize>::new());
        }
        let x = Tensor::randn(&[3, n_in], DType::F32, Device::Cpu, &mut rng)?;
        let y = net.forward(&x)?;
        outputs.insert(format!("{name}_input"), serde_json::json!(x.to_vec::<f32>()?));
        outputs.insert(format!("{name}_output"), serde_json::json!(y.to_vec::<f32>()?));
    }
    std::fs::write(dir.join("outputs.json"), Value::Object(outputs).to_string()).unwrap();
    Ok(())
}

#[test]
fn load_state_dict_copies_in_place_so_an_optimizer_keeps_training_the_loaded_values() -> Result<()> {
    let dir = temp_dir("inplace");
    let path = dir.join("net.safetensors");
    let source = bn_net(&mut ChaCha8Rng::seed_from_u64(10))?;
    save_state_dict(&source, &path)?;

    let net = bn_net(&mut ChaCha8Rng::seed_from_u64(11))?;
    let mut opt = Sgd::new(
        net.parameters(),
        SgdConfig {
            lr: 0.1,
            ..Default::default()
        },
    )?;
    let handles = net.parameters();
    load_state_dict(&net, &path)?;
    for (a, b) in state_dict(&source).iter().zip(state_dict(&net)) {
        assert_eq!(a.1.to_vec_f32()?, b.1.to_vec_f32()?, "{}", a.0);
    }
    // The same handles, not replacements.
    for (p, h) in net.parameters().iter().zip(&handles) {
        assert!(p.same(h));
    }
    let before = net.parameters()[0].to_vec::<f32>()?;
    let x = Tensor::randn(&[4, 6], DType::F32, Device::Cpu, &mut ChaCha8Rng::seed_from_u64(12))?;
    net.forward(&x)?.powf(2.0)?.mean()?.backward()?;
    opt.step()?;
    let after = net.parameters()[0].to_vec::<f32>()?;
    assert_ne!(before, after, "the optimizer updates the loaded parameters");
    std::fs::remove_dir_all(&dir).unwrap();
    Ok(())
}

#[test]
fn load_state_dict_reports_missing_unexpected_and_mismatched_keys_and_leaves_the_module_untouched() -> Result<()> {
    let dir = temp_dir("mismatch");
    let net = generator(&mut ChaCha8Rng::seed_from_u64(1))?;
    let before: Vec<Vec<f32>> = net.parameters().iter().map(|p| p.to_vec::<f32>().unwrap()).collect();

    // bn_net's file into the generator: wrong keys.
    let other = dir.join("other.safetensors");
    save_state_dict(&bn_net(&mut ChaCha8Rng::seed_from_u64(2))?, &other)?;
    let msg = load_state_dict(&net, &other).unwrap_err().to_string();
    assert!(
        msg.contains("other.safetensors") && msg.contains("missing keys") && msg.contains("1.running_mean"),
        "{msg}"
    );

    // Same keys, one transposed weight.
    let mut tensors = state_dict(&net);
    tensors[0].1 = tensors[0].1.t()?.contiguous()?;
    let msg = load_state_dict_from(&net, &tensors, "in-memory")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("shape mismatch for 0.weight") && msg.contains("[100, 128]"),
        "{msg}"
    );

    // Nothing was copied by either failed load.
    for (p, b) in net.parameters().iter().zip(&before) {
        assert_eq!(&p.to_vec::<f32>()?, b);
    }
    std::fs::remove_dir_all(&dir).unwrap();
    Ok(())
}

#[test]
fn unsupported_dtype_is_a_bad_file_error() {
    // A valid safetensors file with one F16 tensor.
    let header = br#"{"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    let err = parse_tensors(&bytes, "half.safetensors").unwrap_err();
    assert!(matches!(err, kiln_core::Error::BadFile { .. }), "{err}");
    assert!(err.to_string().contains("F16"), "{err}");
}

#[test]
fn missing_file_is_an_io_error_with_the_path() {
    let err = load_tensors("/nonexistent/kiln/model.safetensors").unwrap_err();
    assert!(err.to_string().contains("/nonexistent/kiln/model.safetensors"), "{err}");
}
