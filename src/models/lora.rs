//! Low-rank adapters (LoRA, and LoCon on convolutions) on the models' linear and convolution
//! layers: `W x + scale * up(down(dropout(x)))`, with `scale = alpha / rank` times the user's
//! weight, several adapters per layer summed (PEFT's and kohya's arithmetic).
//!
//! Every linear and convolution layer built through [`linear`] / [`conv2d`] (the constructors
//! behind `layers::linear` and `blocks::conv*`) is *adaptable*: it owns a slot that adapters can
//! be put into after the model is built, without rebuilding it. A model collects the slots of
//! the layers it builds with [`collect`] (a scope on the building thread, so that the layer
//! constructors keep their plain `(path, sizes)` signatures) into [`AdaptableLayers`], keyed by
//! the module path in the reference library's names (`down_blocks.0.attentions.0.
//! transformer_blocks.0.attn1.to_q`, `text_model.encoder.layers.0.self_attn.q_proj`). An empty
//! slot costs one uncontended lock per forward.
use anyhow::{bail, Result};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// One adapter on one layer: `down` is `[rank, in]` (linear) or `[rank, in, kh, kw]` (conv,
/// the base layer's kernel), `up` is `[out, rank]` or `[out, rank, 1, 1]`.
#[derive(Debug)]
pub struct Adapter {
    pub down: Tensor,
    pub up: Tensor,
    /// `alpha / rank` times the adapter's weight.
    pub scale: f64,
    /// Dropout on the adapter's input while training (PEFT's `lora_dropout`).
    pub dropout: f64,
}

impl Adapter {
    pub fn rank(&self) -> i64 {
        self.down.size()[0]
    }

    /// `scale * up @ down` in the base weight's shape (what merging adds to it).
    pub fn delta(&self, weight_shape: &[i64]) -> Tensor {
        let r = self.rank();
        let out = self.up.size()[0];
        let up = self.up.reshape([out, r]);
        let down = self.down.reshape([r, -1]);
        (up.matmul(&down) * self.scale).reshape(weight_shape)
    }
}

/// What a layer computes, for shape checks and the adapter's own convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerShape {
    Linear {
        c_in: i64,
        c_out: i64,
    },
    Conv {
        c_in: i64,
        c_out: i64,
        kernel: i64,
        stride: i64,
        padding: i64,
    },
}

impl LayerShape {
    pub fn c_in(&self) -> i64 {
        match *self {
            Self::Linear { c_in, .. } | Self::Conv { c_in, .. } => c_in,
        }
    }

    pub fn c_out(&self) -> i64 {
        match *self {
            Self::Linear { c_out, .. } | Self::Conv { c_out, .. } => c_out,
        }
    }

    pub fn is_conv(&self) -> bool {
        matches!(self, Self::Conv { .. })
    }

    /// The shapes `down` and `up` must have for an adapter of `rank`.
    pub fn adapter_shapes(&self, rank: i64) -> (Vec<i64>, Vec<i64>) {
        match *self {
            Self::Linear { c_in, c_out } => (vec![rank, c_in], vec![c_out, rank]),
            Self::Conv {
                c_in,
                c_out,
                kernel,
                ..
            } => (vec![rank, c_in, kernel, kernel], vec![c_out, rank, 1, 1]),
        }
    }
}

#[derive(Debug, Default)]
struct SlotState {
    adapters: Vec<Adapter>,
    training: bool,
}

type Slot = Arc<Mutex<SlotState>>;

/// One adaptable layer as its model lists it.
#[derive(Debug)]
pub struct AdaptableLayer {
    pub shape: LayerShape,
    /// The base weight (shares storage with the model's variable).
    pub weight: Tensor,
    slot: Slot,
}

impl AdaptableLayer {
    /// The adapters now on the layer.
    pub fn adapter_count(&self) -> usize {
        self.slot.lock().expect("adapter slot lock").adapters.len()
    }
}

/// The adaptable layers of one model by module path.
#[derive(Debug, Default)]
pub struct AdaptableLayers(BTreeMap<String, AdaptableLayer>);

impl AdaptableLayers {
    pub fn get(&self, path: &str) -> Option<&AdaptableLayer> {
        self.0.get(path)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &AdaptableLayer)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds `adapter` to the layer at `path` after checking its shapes against the layer.
    pub fn attach(&self, path: &str, adapter: Adapter) -> Result<()> {
        let Some(layer) = self.0.get(path) else {
            bail!("the model has no adaptable layer '{path}'");
        };
        let (down, up) = layer.shape.adapter_shapes(adapter.rank());
        if adapter.down.size() != down || adapter.up.size() != up {
            bail!(
                "'{path}': the adapter's down {:?} / up {:?} do not fit the layer (want {down:?} / {up:?})",
                adapter.down.size(),
                adapter.up.size()
            );
        }
        layer
            .slot
            .lock()
            .expect("adapter slot lock")
            .adapters
            .push(adapter);
        Ok(())
    }

    /// Removes every adapter from every layer.
    pub fn clear(&self) {
        for l in self.0.values() {
            l.slot.lock().expect("adapter slot lock").adapters.clear();
        }
    }

    /// Adapters on the model in all.
    pub fn adapter_count(&self) -> usize {
        self.0.values().map(AdaptableLayer::adapter_count).sum()
    }

    /// Switches the adapters' dropout on (training) or off (validation, sampling).
    pub fn set_training(&self, training: bool) {
        for l in self.0.values() {
            l.slot.lock().expect("adapter slot lock").training = training;
        }
    }

    /// Folds every adapter into its layer's base weight (in place, in the weight's kind) and
    /// removes it, so the model computes the same without them.
    pub fn merge(&self) {
        tch::no_grad(|| {
            for l in self.0.values() {
                let mut st = l.slot.lock().expect("adapter slot lock");
                for a in st.adapters.drain(..) {
                    let delta = a.delta(&l.weight.size()).to_kind(l.weight.kind());
                    let mut w = l.weight.shallow_clone();
                    let _ = w.g_add_(&delta.to_device(w.device()));
                }
            }
        })
    }
}

thread_local! {
    static COLLECTING: RefCell<Vec<BTreeMap<String, AdaptableLayer>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `build` and returns what it built with the adaptable layers it created.
pub fn collect<T>(build: impl FnOnce() -> T) -> (T, AdaptableLayers) {
    COLLECTING.with(|c| c.borrow_mut().push(BTreeMap::new()));
    let built = build();
    let layers = COLLECTING.with(|c| c.borrow_mut().pop().unwrap_or_default());
    (built, AdaptableLayers(layers))
}

/// A new slot for the layer at `p`, listed in the innermost [`collect`] scope if there is one.
fn register(p: &nn::Path, shape: LayerShape, weight: &Tensor) -> Slot {
    let slot = Slot::default();
    COLLECTING.with(|c| {
        if let Some(top) = c.borrow_mut().last_mut() {
            let path = p.components().collect::<Vec<_>>().join(".");
            let layer = AdaptableLayer {
                shape,
                weight: weight.shallow_clone(),
                slot: slot.clone(),
            };
            top.insert(path, layer);
        }
    });
    slot
}

/// The adapters' sum for input `x` (of the base layer), or `None` with no adapter.
fn adapters_out(
    slot: &Slot,
    x: &Tensor,
    apply: impl Fn(&Tensor, &Adapter) -> Tensor,
) -> Option<Tensor> {
    let st = slot.lock().expect("adapter slot lock");
    st.adapters
        .iter()
        .map(|a| {
            let h = if a.dropout > 0.0 && st.training {
                x.dropout(a.dropout, true)
            } else {
                x.shallow_clone()
            };
            apply(&h, a) * a.scale
        })
        .reduce(|a, b| a + b)
}

/// An adaptable linear layer.
#[derive(Debug)]
pub struct Linear {
    base: nn::Linear,
    slot: Slot,
}

/// A linear layer `c_in -> c_out` (with a bias if `bias`) under `p`.
pub fn linear(p: nn::Path, c_in: i64, c_out: i64, bias: bool) -> Linear {
    let base = crate::models::vars::linear(&p, c_in, c_out, bias);
    let slot = register(&p, LayerShape::Linear { c_in, c_out }, &base.ws);
    Linear { base, slot }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Tensor {
        let y = x.apply(&self.base);
        let kind = x.kind();
        let lora = adapters_out(&self.slot, x, |h, a| {
            h.linear::<Tensor>(&cast(&a.down, kind), None)
                .linear::<Tensor>(&cast(&a.up, kind), None)
        });
        match lora {
            Some(l) => y + l,
            None => y,
        }
    }
}

/// An adaptable 2-D convolution.
#[derive(Debug)]
pub struct Conv2d {
    base: crate::models::vars::Conv2D,
    stride: i64,
    padding: i64,
    slot: Slot,
}

/// A `kernel` x `kernel` convolution `c_in -> c_out` with a bias under `p`.
pub fn conv2d(
    p: nn::Path,
    c_in: i64,
    c_out: i64,
    kernel: i64,
    stride: i64,
    padding: i64,
) -> Conv2d {
    let base = crate::models::vars::conv2d(&p, c_in, c_out, kernel, stride, padding);
    let shape = LayerShape::Conv {
        c_in,
        c_out,
        kernel,
        stride,
        padding,
    };
    let slot = register(&p, shape, &base.ws);
    Conv2d {
        base,
        stride,
        padding,
        slot,
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        let y = x.apply(&self.base);
        let kind = x.kind();
        let (s, pad) = (self.stride, self.padding);
        let lora = adapters_out(&self.slot, x, |h, a| {
            h.conv2d::<Tensor>(&cast(&a.down, kind), None, [s, s], [pad, pad], [1, 1], 1)
                .conv2d::<Tensor>(&cast(&a.up, kind), None, [1, 1], [0, 0], [1, 1], 1)
        });
        match lora {
            Some(l) => y + l,
            None => y,
        }
    }
}

/// `t` in `kind` (no copy when it already is).
fn cast(t: &Tensor, kind: Kind) -> Tensor {
    if t.kind() == kind {
        t.shallow_clone()
    } else {
        t.to_kind(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn randn(s: &[i64]) -> Tensor {
        Tensor::randn(s, (Kind::Float, Device::Cpu))
    }

    #[test]
    fn linear_adapter_adds_scaled_low_rank_term_and_merges_to_the_same() {
        let vs = nn::VarStore::new(Device::Cpu);
        let (l, layers) = collect(|| linear(vs.root() / "blk" / "to_q", 6, 5, true));
        assert_eq!(
            layers.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            ["blk.to_q"]
        );
        let x = randn(&[2, 3, 6]);
        let base = x.apply(&l);
        let (down, up) = (randn(&[2, 6]), randn(&[5, 2]));
        let want = &base + x.matmul(&down.tr()).matmul(&up.tr()) * 0.75;
        let a = Adapter {
            down,
            up,
            scale: 0.75,
            dropout: 0.0,
        };
        layers.attach("blk.to_q", a).unwrap();
        let got = x.apply(&l);
        assert!(got.allclose(&want, 1e-5, 1e-5, false));
        layers.merge();
        assert_eq!(layers.adapter_count(), 0);
        assert!(x.apply(&l).allclose(&want, 1e-4, 1e-4, false));
    }

    #[test]
    fn conv_adapter_uses_the_base_geometry_and_merges_to_the_same() {
        let vs = nn::VarStore::new(Device::Cpu);
        let (c, layers) = collect(|| conv2d(vs.root() / "conv", 3, 4, 3, 2, 1));
        let x = randn(&[1, 3, 9, 9]);
        let a = Adapter {
            down: randn(&[2, 3, 3, 3]),
            up: randn(&[4, 2, 1, 1]),
            scale: 0.5,
            dropout: 0.0,
        };
        let want = x.apply(&c)
            + x.conv2d::<Tensor>(&a.down, None, [2, 2], [1, 1], [1, 1], 1)
                .conv2d::<Tensor>(&a.up, None, [1, 1], [0, 0], [1, 1], 1)
                * 0.5;
        layers.attach("conv", a).unwrap();
        assert!(x.apply(&c).allclose(&want, 1e-4, 1e-4, false));
        layers.merge();
        assert!(x.apply(&c).allclose(&want, 1e-4, 1e-4, false));
    }

    #[test]
    fn attach_checks_the_path_and_the_shapes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let (_l, layers) = collect(|| linear(vs.root() / "fc", 6, 5, false));
        let bad = Adapter {
            down: randn(&[2, 7]),
            up: randn(&[5, 2]),
            scale: 1.0,
            dropout: 0.0,
        };
        let e = layers.attach("fc", bad).unwrap_err().to_string();
        assert!(e.contains("'fc'") && e.contains("[2, 7]"), "{e}");
        let a = Adapter {
            down: randn(&[2, 6]),
            up: randn(&[5, 2]),
            scale: 1.0,
            dropout: 0.0,
        };
        let e = layers.attach("nope", a).unwrap_err().to_string();
        assert!(e.contains("'nope'"), "{e}");
    }

    #[test]
    fn layers_outside_a_collect_scope_are_not_listed() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _outside = linear(vs.root() / "a", 2, 2, true);
        let (_, layers) = collect(|| linear(vs.root() / "b", 2, 2, true));
        assert_eq!(layers.len(), 1);
        assert!(layers.get("b").is_some());
    }
}
