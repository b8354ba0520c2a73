//! The linear → relu → sum graph drawn in docs/autograd.md: its DOT export
//! has the nodes and edges the document shows. Run with `--nocapture` to
//! print the DOT text (docs/img/autograd-example.svg is rendered from it).

use kiln_core::{Device, Tensor};

#[test]
fn linear_relu_sum_graph_matches_the_docs() {
    let x = Tensor::from_vec(vec![1.0f32, -2.0, 0.5, 3.0, 0.0, -1.0], &[2, 3], Device::Cpu).unwrap();
    let w_values: Vec<f32> = (0..12).map(|i| 0.1 * i as f32 - 0.5).collect();
    let w = Tensor::from_vec(w_values, &[4, 3], Device::Cpu)
        .unwrap()
        .requires_grad(true);
    let b = Tensor::zeros(&[4], kiln_core::DType::F32, Device::Cpu)
        .unwrap()
        .requires_grad(true);
    let loss = x.linear(&w, Some(&b)).unwrap().relu().unwrap().sum().unwrap();
    let dot = loss.to_dot();
    println!("{dot}");

    // three ops, two leaves (x does not require grad, so it is not in the graph)
    assert_eq!(dot.matches("shape=box").count(), 2, "{dot}");
    for label in [
        "linear\\n[2, 4]",
        "relu\\n[2, 4]",
        "sum\\n[]",
        "leaf\\n[4, 3]",
        "leaf\\n[4]",
    ] {
        assert!(dot.contains(label), "missing {label}: {dot}");
    }
    assert_eq!(
        dot.matches(" -> ").count(),
        4,
        "linear←w, linear←b, relu←linear, sum←relu: {dot}"
    );
    assert!(
        dot.contains("graph_doc.rs:"),
        "nodes name their forward call site: {dot}"
    );

    // after backward without retain_graph the nodes are marked freed
    loss.backward().unwrap();
    assert_eq!(loss.to_dot().matches("(freed)").count(), 3);
    assert_eq!(b.grad().unwrap().to_vec::<f32>().unwrap().len(), 4);
}
