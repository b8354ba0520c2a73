//! GAN objectives on the discriminator's raw outputs. With a logit D
//! (`d_sigmoid = false`) the BCE-family losses use the stable
//! `bce_with_logits`; with the article's sigmoid D they use `bce_loss` on
//! probabilities.

use crate::config::GanLoss;
use kiln_core::{autograd, Result, Tensor};
use kiln_nn::Module;

fn target(like: &Tensor, value: f64) -> Result<Tensor> {
    Tensor::full(like.shape(), value, like.dtype(), like.device())
}

fn bce(out: &Tensor, value: f64, d_sigmoid: bool) -> Result<Tensor> {
    let t = target(out, value)?;
    if d_sigmoid {
        out.bce_loss(&t)
    } else {
        out.bce_with_logits(&t)
    }
}

/// The discriminator's loss from its outputs on a real and a fake batch
/// (without the gradient penalty, see [`gradient_penalty`]).
pub fn d_loss(loss: GanLoss, d_real: &Tensor, d_fake: &Tensor, d_sigmoid: bool) -> Result<Tensor> {
    match loss {
        GanLoss::Bce | GanLoss::Ns => bce(d_real, 1.0, d_sigmoid)?.add(&bce(d_fake, 0.0, d_sigmoid)?),
        GanLoss::Lsgan => d_real
            .mse_loss(&target(d_real, 1.0)?)?
            .add(&d_fake.mse_loss(&target(d_fake, 0.0)?)?),
        GanLoss::Hinge => d_real
            .rsub_scalar(1.0)?
            .relu()?
            .mean()?
            .add(&d_fake.add_scalar(1.0)?.relu()?.mean()?),
        GanLoss::WganGp => d_fake.mean()?.sub(&d_real.mean()?),
    }
}

/// The generator's loss from D's output on the fake batch.
pub fn g_loss(loss: GanLoss, d_fake: &Tensor, d_sigmoid: bool) -> Result<Tensor> {
    match loss {
        // Minimax: G minimises log(1 − D(G(z))) = −BCE(D(G(z)), 0).
        GanLoss::Bce => bce(d_fake, 0.0, d_sigmoid)?.neg(),
        GanLoss::Ns => bce(d_fake, 1.0, d_sigmoid),
        GanLoss::Lsgan => d_fake.mse_loss(&target(d_fake, 1.0)?),
        GanLoss::Hinge | GanLoss::WganGp => d_fake.mean()?.neg(),
    }
}

/// WGAN-GP penalty mean((‖∇ₓ̂ D(x̂)‖₂ − 1)²) at x̂ = ε·real + (1 − ε)·fake,
/// ε ~ U[0, 1) per sample. Built with `create_graph`, so its gradient
/// reaches D's parameters (a second-order derivative).
pub fn gradient_penalty(d: &dyn Module, real: &Tensor, fake: &Tensor, eps: &Tensor) -> Result<Tensor> {
    let mix = real
        .mul(eps)?
        .add(&fake.mul(&eps.rsub_scalar(1.0)?)?)?
        .detach()
        .requires_grad(true);
    let out = d.forward(&mix)?.sum()?;
    let g = autograd::grad(&[out], &[mix], None, true, true)?.remove(0);
    let norm = g.mul(&g)?.sum_dims(&[1], false)?.add_scalar(1e-12)?.sqrt()?;
    let dev = norm.sub_scalar(1.0)?;
    dev.mul(&dev)?.mean()
}
