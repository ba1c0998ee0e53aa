//! Gradient checkpointing (`train.gradient_checkpointing`): the networks' segments
//! (`models::segments`) run without autograd in the forward pass, keeping only their inputs;
//! the backward pass runs them again, last first, with autograd, and back-propagates the
//! gradient of their outputs, which gives the parameters' gradients and their inputs'.
//!
//! Every tensor between segments is a leaf of its own: a segment's outputs are detached leaves
//! that require grad, and the tensors from outside the segments ([`Segments::input`]: the time
//! embedding, the text embeddings, the text encoder's token embeddings) are detached too. A
//! leaf gathers its gradient from every segment that reads it (a skip connection from the next
//! down block and its up block, the time embedding from every resnet), so by the time its own
//! segment is recomputed (all its readers come later in the pass) its gradient is complete.
//! The gradient of an outside input is pushed into the real tensor's graph once, when the
//! backward pass reaches the point where it was taken.
//!
//! Segments that draw random numbers are not replayed exactly (libtorch's generator state is
//! not reachable from tch): the config refuses LoRA dropout with checkpointing.
use crate::models::segments::{Segment, Segments};
use tch::{Kind, Tensor};

/// A segment as stored: it finds its network in the root `R` (the pipeline) itself.
type Recompute<R> = Box<dyn Fn(&R, &[Tensor]) -> Vec<Tensor>>;

enum Entry<R> {
    /// A tensor with a graph of its own, detached into `leaf`.
    Input { original: Tensor, leaf: Tensor },
    /// A segment, its saved inputs and its output leaves; `autocast`: recompute it under the
    /// UNet's autocast.
    Segment {
        inputs: Vec<Tensor>,
        outputs: Vec<Tensor>,
        f: Recompute<R>,
        autocast: bool,
    },
}

/// The segments of one training forward pass through networks found in `R` (the pipeline),
/// in order.
pub struct Tape<R> {
    entries: Vec<Entry<R>>,
}

impl<R> Default for Tape<R> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<R: 'static> Tape<R> {
    /// Records the segments of network `M` (found in the root by `net`) as `model` runs
    /// them; `autocast` marks those run under the UNet's autocast.
    pub fn recorder<'t, M: 'static>(
        &'t mut self,
        model: &'t M,
        net: fn(&R) -> &M,
        autocast: bool,
    ) -> Recorder<'t, R, M> {
        Recorder {
            tape: self,
            model,
            net,
            autocast,
        }
    }

    /// Back-propagates: the gradients of the output leaves (set by the loss's own backward
    /// pass) through each segment recomputed, last first. `autocast` runs a recompute under
    /// the autocast of the forward pass.
    pub fn backward(mut self, root: &R, autocast: &dyn Fn(&mut dyn FnMut())) {
        while let Some(entry) = self.entries.pop() {
            match entry {
                Entry::Input { original, leaf } => push(&[original], &[leaf]),
                Entry::Segment {
                    inputs,
                    outputs,
                    f,
                    autocast: under,
                } => {
                    let mut recompute = || push(&f(root, &inputs), &outputs);
                    if outputs.iter().any(|o| o.grad().defined()) {
                        if under {
                            autocast(&mut recompute)
                        } else {
                            recompute()
                        }
                    }
                }
            }
        }
    }

    fn input(&mut self, x: &Tensor) -> Tensor {
        if !x.requires_grad() {
            return x.shallow_clone();
        }
        let leaf = x.detach().set_requires_grad(true);
        self.entries.push(Entry::Input {
            original: x.shallow_clone(),
            leaf: leaf.shallow_clone(),
        });
        leaf
    }
}

/// Back-propagates the gradients gathered in `leaves` into `tensors`, their counterparts with
/// a graph: `sum(tensor * grad)` has exactly `grad` as its gradient with respect to `tensor`.
fn push(tensors: &[Tensor], leaves: &[Tensor]) {
    let mut total: Option<Tensor> = None;
    for (t, leaf) in tensors.iter().zip(leaves) {
        let g = leaf.grad();
        if g.defined() && t.requires_grad() {
            let term = (t * g).sum(Kind::Float);
            total = Some(match total {
                Some(s) => s + term,
                None => term,
            });
        }
    }
    if let Some(total) = total {
        tch::with_grad(|| total.backward());
    }
}

/// Records segments of network `M` on a [`Tape`] (see [`Tape::recorder`]).
pub struct Recorder<'t, R, M> {
    tape: &'t mut Tape<R>,
    model: &'t M,
    net: fn(&R) -> &M,
    autocast: bool,
}

impl<R: 'static, M: 'static> Segments<M> for Recorder<'_, R, M> {
    fn input(&mut self, x: &Tensor) -> Tensor {
        self.tape.input(x)
    }

    fn run(&mut self, inputs: Vec<Tensor>, f: Segment<M>) -> Vec<Tensor> {
        // An input with a graph that is no segment's output is cut off here like `input`.
        let inputs: Vec<Tensor> = inputs
            .iter()
            .map(|x| {
                if x.is_leaf() {
                    x.shallow_clone()
                } else {
                    self.tape.input(x)
                }
            })
            .collect();
        let outputs: Vec<Tensor> = tch::no_grad(|| f(self.model, &inputs))
            .into_iter()
            .map(|o| o.detach().set_requires_grad(true))
            .collect();
        let net = self.net;
        self.tape.entries.push(Entry::Segment {
            inputs,
            outputs: outputs.iter().map(Tensor::shallow_clone).collect(),
            f: Box::new(move |root, x| tch::with_grad(|| f(net(root), x))),
            autocast: self.autocast,
        });
        outputs
    }
}
