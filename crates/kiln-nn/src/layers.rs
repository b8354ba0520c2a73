//! The `Module` trait and the basic layers: Linear, activations, Sequential.

use kiln_core::smallvec::SmallVec;
use kiln_core::{DType, Device, Error, Result, Tensor, Tensors};
use kiln_cpu::elementwise::UnaryOp;
use rand::Rng;

/// A layer or a network of layers: a forward function plus named parameters
/// (PyTorch's naming: `0.weight`, `0.bias`, … for a Sequential).
pub trait Module: Send + Sync {
    /// Applies the module.
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
    /// Learnable tensors with their state-dict names, in a fixed order.
    fn named_parameters(&self) -> Vec<(String, Tensor)>;
    /// Non-learnable state saved in state dicts (e.g. BatchNorm running stats).
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
    /// Learnable tensors, in the order of [`Module::named_parameters`].
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters().into_iter().map(|(_, t)| t).collect()
    }
    /// Switches training mode (dropout, batch statistics) on or off.
    fn set_training(&mut self, _on: bool) {}
    /// A linear layer's weight and bias, so that [`Sequential`] can run it
    /// and the activation after it as one fused op (`Tensor::linear_act`).
    fn linear_parts(&self) -> Option<(&Tensor, Option<&Tensor>)> {
        None
    }
    /// This module as an activation `Tensor::linear_act` can fuse, if it is one.
    fn fusable_activation(&self) -> Option<UnaryOp> {
        None
    }
    /// Moves parameters and buffers to `device`. Parameters are re-created there as leaves
    /// that require grad, so build optimizers after the move. A no-op for tensors already
    /// there. The default suits modules without tensors.
    fn to_device(&mut self, device: Device) -> Result<()> {
        if self.named_parameters().is_empty() && self.named_buffers().is_empty() {
            Ok(())
        } else {
            Err(Error::Unsupported {
                op: "Module::to_device",
                what: format!(
                    "{} (it holds tensors but does not implement to_device) on {device}",
                    self.describe()
                ),
            })
        }
    }
    /// A short description for summaries, e.g. `Linear(100 → 128)`.
    fn describe(&self) -> String;
}

/// A copy of a parameter or buffer on `device`: a fresh leaf with the same `requires_grad`
/// (the handle itself when it already lives there, so CPU modules keep their tensors).
pub fn tensor_to_device(t: &Tensor, device: Device) -> Result<Tensor> {
    if t.device() == device {
        return Ok(t.clone());
    }
    Ok(t.detach().to(device)?.requires_grad(t.requires_grad_flag()))
}

/// y = x·Wᵀ + b with W of shape [out, in], as `torch.nn.Linear`.
pub struct Linear {
    /// [out_features, in_features]
    pub weight: Tensor,
    /// `[out_features]`
    pub bias: Option<Tensor>,
}

impl Linear {
    /// PyTorch's default initialisation: W and b uniform in ±1/√in
    /// (kaiming_uniform with a = √5 reduces to this bound for W).
    pub fn new<R: Rng + ?Sized>(in_features: usize, out_features: usize, bias: bool, rng: &mut R) -> Result<Self> {
        if in_features == 0 || out_features == 0 {
            return Err(Error::Invalid(format!(
                "Linear({in_features} → {out_features}): feature counts must be positive"
            )));
        }
        let bound = 1.0 / (in_features as f64).sqrt();
        let weight = Tensor::uniform(
            &[out_features, in_features],
            -bound,
            bound,
            DType::F32,
            Device::Cpu,
            rng,
        )?
        .requires_grad(true);
        let bias = if bias {
            Some(Tensor::uniform(&[out_features], -bound, bound, DType::F32, Device::Cpu, rng)?.requires_grad(true))
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    /// A layer from given tensors (weight `[out, in]`, bias `[out]`).
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        if weight.rank() != 2 {
            return Err(Error::BadShape {
                op: "Linear::from_tensors",
                msg: format!("weight must be [out, in], got {:?}", weight.shape()),
            });
        }
        Ok(Linear {
            weight: weight.requires_grad(true),
            bias: bias.map(|b| b.requires_grad(true)),
        })
    }

    /// in_features
    pub fn in_features(&self) -> usize {
        self.weight.shape()[1]
    }
    /// out_features
    pub fn out_features(&self) -> usize {
        self.weight.shape()[0]
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.linear(&self.weight, self.bias.as_ref())
    }
    fn linear_parts(&self) -> Option<(&Tensor, Option<&Tensor>)> {
        Some((&self.weight, self.bias.as_ref()))
    }
    fn to_device(&mut self, device: Device) -> Result<()> {
        self.weight = tensor_to_device(&self.weight, device)?;
        if let Some(b) = &self.bias {
            self.bias = Some(tensor_to_device(b, device)?);
        }
        Ok(())
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            v.push(("bias".to_string(), b.clone()));
        }
        v
    }
    fn describe(&self) -> String {
        format!("Linear({} → {})", self.in_features(), self.out_features())
    }
}

/// Parameter-free activation layers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// max(x, 0)
    Relu,
    /// x or slope·x
    LeakyRelu(f64),
    /// 1/(1 + e⁻ˣ)
    Sigmoid,
    /// tanh
    Tanh,
    /// GELU (tanh approximation)
    Gelu,
    /// ln(1 + eˣ)
    Softplus,
    /// x
    Identity,
}

impl Module for Activation {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Relu => x.relu(),
            Activation::LeakyRelu(s) => x.leaky_relu(*s),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Tanh => x.tanh(),
            Activation::Gelu => x.gelu(),
            Activation::Softplus => x.softplus(),
            Activation::Identity => Ok(x.clone()),
        }
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
    fn fusable_activation(&self) -> Option<UnaryOp> {
        let op = match *self {
            Activation::Relu => UnaryOp::Relu,
            Activation::LeakyRelu(s) => UnaryOp::LeakyRelu(s),
            Activation::Sigmoid => UnaryOp::Sigmoid,
            Activation::Tanh => UnaryOp::Tanh,
            _ => return None,
        };
        Tensor::linear_act_fuses(op).then_some(op)
    }
    fn describe(&self) -> String {
        match self {
            Activation::LeakyRelu(s) => format!("LeakyReLU({s})"),
            other => format!("{other:?}"),
        }
    }
}

/// Modules applied in order; parameters are named `<index>.<name>`.
///
/// A [`Linear`] followed by a relu, leaky relu (positive slope), sigmoid or
/// tanh [`Activation`] runs as one fused op (`Tensor::linear_act`, a
/// `linear_relu`… node in the graph): same values, one pass over the output
/// fewer.
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Module>>,
}

impl Sequential {
    /// An empty Sequential.
    pub fn new() -> Self {
        Sequential { layers: Vec::new() }
    }
    /// Appends a layer (builder style).
    pub fn push(mut self, layer: impl Module + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }
    /// Appends a boxed layer.
    pub fn push_boxed(&mut self, layer: Box<dyn Module>) {
        self.layers.push(layer);
    }
    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }
    /// True when there are no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
    /// The layers.
    pub fn layers(&self) -> &[Box<dyn Module>] {
        &self.layers
    }

    /// [`Module::forward`] of each of `xs`: the graph, the values and the
    /// gradients are those of one `forward` per input, but each linear layer
    /// runs all inputs together ([`Tensor::linear_many`]), so a weight is
    /// read from memory once for them (a discriminator's real and fake
    /// batches). Other layers run input by input; a layer with random state
    /// (dropout) draws for the inputs in their order, as one forward per
    /// input in turn would.
    pub fn forward_many(&self, xs: &[&Tensor]) -> Result<Tensors> {
        let mut hs: Tensors = xs.iter().map(|&x| x.clone()).collect();
        let mut i = 0;
        while let Some(layer) = self.layers.get(i) {
            let act = self.layers.get(i + 1).and_then(|l| l.fusable_activation());
            match layer.linear_parts() {
                Some((w, b)) => {
                    let next = {
                        let refs: SmallVec<[&Tensor; 2]> = hs.iter().collect();
                        Tensor::linear_many(&refs, w, b, act)?
                    };
                    hs = next;
                    i += if act.is_some() { 2 } else { 1 };
                }
                None => {
                    hs = hs.iter().map(|h| layer.forward(h)).collect::<Result<_>>()?;
                    i += 1;
                }
            }
        }
        Ok(hs)
    }
}

impl Module for Sequential {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut ys = self.forward_many(&[x])?;
        Ok(ys.remove(0))
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| {
                l.named_parameters()
                    .into_iter()
                    .map(move |(n, t)| (format!("{i}.{n}"), t))
            })
            .collect()
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.named_buffers().into_iter().map(move |(n, t)| (format!("{i}.{n}"), t)))
            .collect()
    }
    fn set_training(&mut self, on: bool) {
        for l in &mut self.layers {
            l.set_training(on);
        }
    }
    fn to_device(&mut self, device: Device) -> Result<()> {
        self.layers.iter_mut().try_for_each(|l| l.to_device(device))
    }
    fn describe(&self) -> String {
        let inner: Vec<String> = self.layers.iter().map(|l| l.describe()).collect();
        inner.join(" → ")
    }
}
