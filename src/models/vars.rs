//! How the models create their variables, and the parameter layers built on them.
//!
//! Every variable goes through [`var`]: by default it is initialised as tch's layer
//! constructors do (same `Init`, same order, so random models are unchanged), but inside
//! [`for_checkpoint`] it is left uninitialised (`Tensor::empty`: no kernel runs, no page is
//! touched), because the strict checkpoint load that follows replaces every variable's values
//! (see `WeightSet::load_into`). The layers mirror tch's `GroupNorm`, `LayerNorm`, `Embedding`
//! and `Conv2D` (whose settings tch keeps private) with the same forward calls.
use std::cell::Cell;
use tch::nn::{self, Init, Module};
use tch::Tensor;

thread_local! {
    static UNINITIALISED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `build` (a model's constructor) with uninitialised variables: only for a model whose
/// every variable a checkpoint is loaded into right after. Variables created later (LoRA
/// adapters, added token rows) are initialised as usual.
pub fn for_checkpoint<R>(build: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            UNINITIALISED.with(|u| u.set(self.0));
        }
    }
    let _restore = Restore(UNINITIALISED.with(|u| u.replace(true)));
    build()
}

/// A trainable variable `name` of shape `dims` under `p`, initialised by `init` (see the
/// module's documentation for when it is not).
pub fn var(p: &nn::Path, name: &str, dims: &[i64], init: Init) -> Tensor {
    if UNINITIALISED.with(Cell::get) {
        p.add(name, Tensor::empty(dims, (p.kind(), p.device())), true)
    } else {
        p.var(name, dims, init)
    }
}

/// tch's `nn::linear` with its default initialisation (bias first, as tch creates them).
pub fn linear(p: &nn::Path, c_in: i64, c_out: i64, bias: bool) -> nn::Linear {
    let bound = 1.0 / (c_in as f64).sqrt();
    let bs = bias.then(|| var(p, "bias", &[c_out], uniform(bound)));
    let ws = var(
        p,
        "weight",
        &[c_out, c_in],
        nn::init::DEFAULT_KAIMING_UNIFORM,
    );
    nn::Linear { ws, bs }
}

fn uniform(bound: f64) -> Init {
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// A 2-D convolution with a bias, square kernel, stride and zero padding (tch's `Conv2D`).
#[derive(Debug)]
pub struct Conv2D {
    pub ws: Tensor,
    pub bs: Tensor,
    stride: i64,
    padding: i64,
}

/// tch's `nn::conv2d` with its default initialisation (zero bias first, then the weight).
pub fn conv2d(
    p: &nn::Path,
    c_in: i64,
    c_out: i64,
    kernel: i64,
    stride: i64,
    padding: i64,
) -> Conv2D {
    let bs = var(p, "bias", &[c_out], Init::Const(0.));
    let ws = var(
        p,
        "weight",
        &[c_out, c_in, kernel, kernel],
        nn::init::DEFAULT_KAIMING_UNIFORM,
    );
    Conv2D {
        ws,
        bs,
        stride,
        padding,
    }
}

impl Module for Conv2D {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let (s, p) = (self.stride, self.padding);
        xs.conv2d(&self.ws, Some(&self.bs), [s, s], [p, p], [1, 1], 1)
    }
}

/// Group normalisation with learnable affine parameters (tch's `GroupNorm`).
#[derive(Debug)]
pub struct GroupNorm {
    pub ws: Tensor,
    pub bs: Tensor,
    groups: i64,
    eps: f64,
}

/// `weight` ones and `bias` zeros of `channels`, as tch's `nn::group_norm`.
pub fn group_norm(p: &nn::Path, groups: i64, channels: i64, eps: f64) -> GroupNorm {
    let (ws, bs) = affine(p, &[channels]);
    GroupNorm {
        ws,
        bs,
        groups,
        eps,
    }
}

/// The `weight` (ones) and `bias` (zeros) of a normalisation layer.
fn affine(p: &nn::Path, dims: &[i64]) -> (Tensor, Tensor) {
    let ws = var(p, "weight", dims, Init::Const(1.));
    let bs = var(p, "bias", dims, Init::Const(0.));
    (ws, bs)
}

impl Module for GroupNorm {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.group_norm(self.groups, Some(&self.ws), Some(&self.bs), self.eps, true)
    }
}

/// Layer normalisation over the last dimension with learnable affine parameters.
#[derive(Debug)]
pub struct LayerNorm {
    pub ws: Tensor,
    pub bs: Tensor,
    eps: f64,
}

/// `weight` ones and `bias` zeros of `dim`, as tch's `nn::layer_norm`.
pub fn layer_norm(p: &nn::Path, dim: i64, eps: f64) -> LayerNorm {
    let (ws, bs) = affine(p, &[dim]);
    LayerNorm { ws, bs, eps }
}

impl Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let dim = self.ws.size();
        xs.layer_norm(&dim, Some(&self.ws), Some(&self.bs), self.eps, true)
    }
}

/// A lookup table of `n` rows (tch's `Embedding`, standard-normal initialised).
#[derive(Debug)]
pub struct Embedding {
    pub ws: Tensor,
}

pub fn embedding(p: &nn::Path, n: i64, dim: i64) -> Embedding {
    let init = Init::Randn {
        mean: 0.,
        stdev: 1.,
    };
    Embedding {
        ws: var(p, "weight", &[n, dim], init),
    }
}

impl Module for Embedding {
    fn forward(&self, ids: &Tensor) -> Tensor {
        Tensor::embedding(&self.ws, ids, -1, false, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn random_layers_draw_what_tch_draws() {
        let ours = nn::VarStore::new(Device::Cpu);
        let theirs = nn::VarStore::new(Device::Cpu);
        tch::manual_seed(3);
        let l = linear(&ours.root(), 5, 4, true);
        let c = conv2d(&ours.root(), 2, 3, 3, 1, 1);
        tch::manual_seed(3);
        let tl = nn::linear(theirs.root(), 5, 4, Default::default());
        let padded = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        let tc = nn::conv2d(theirs.root(), 2, 3, 3, padded);
        assert!(l.ws.equal(&tl.ws) && l.bs.unwrap().equal(&tl.bs.unwrap()));
        assert!(c.ws.equal(&tc.ws) && c.bs.equal(tc.bs.as_ref().unwrap()));
        let x = Tensor::randn([1, 2, 5, 5], (Kind::Float, Device::Cpu));
        assert!(x.apply(&c).equal(&x.apply(&tc)));
    }

    #[test]
    fn checkpoint_builds_make_trainable_uninitialised_variables() {
        let vs = nn::VarStore::new(Device::Cpu);
        let n = for_checkpoint(|| layer_norm(&(vs.root() / "n"), 6, 1e-5));
        assert_eq!(n.ws.size(), vec![6]);
        assert!(n.ws.requires_grad());
        assert_eq!(vs.trainable_variables().len(), 2);
        let after = group_norm(&(vs.root() / "g"), 2, 4, 1e-5);
        assert!(after
            .ws
            .equal(&Tensor::ones([4], (Kind::Float, Device::Cpu))));
    }
}
