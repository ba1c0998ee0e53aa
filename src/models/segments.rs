//! A network's forward pass as a sequence of segments (a resnet, a transformer block, a text
//! encoder layer), so that training can run it with gradient checkpointing: the same walk runs
//! each segment at once ([`Direct`], the plain forward pass) or hands it to a recorder that
//! keeps only the segment's inputs and recomputes it in the backward pass
//! (`train::checkpointing`).
//!
//! A segment is a function of the network's root `M` and its input tensors, holding no
//! borrow (the indices of its layer are captured by value), so that it can be stored and run
//! again after the forward pass. Every tensor a segment reads is among its inputs.
use tch::Tensor;

/// One segment: the network's root and the segment's inputs to its outputs.
pub type Segment<M> = Box<dyn Fn(&M, &[Tensor]) -> Vec<Tensor>>;

/// Runs the segments of a forward pass through network `M`.
pub trait Segments<M> {
    /// A tensor computed outside the segments that several of them read (the time embedding,
    /// the text embeddings): its gradient is gathered over all of them before it flows on.
    fn input(&mut self, x: &Tensor) -> Tensor;
    /// Runs segment `f` on `inputs`; returns its outputs.
    fn run(&mut self, inputs: Vec<Tensor>, f: Segment<M>) -> Vec<Tensor>;
}

/// Runs a segment that has one output.
pub fn run1<M>(
    run: &mut dyn Segments<M>,
    inputs: Vec<Tensor>,
    f: impl Fn(&M, &[Tensor]) -> Tensor + 'static,
) -> Tensor {
    let mut out = run.run(inputs, Box::new(move |m, x| vec![f(m, x)]));
    out.pop().expect("a one-output segment returns one tensor")
}

/// The plain forward pass: each segment runs at once, with autograd as usual.
pub struct Direct<'a, M>(pub &'a M);

impl<M> Segments<M> for Direct<'_, M> {
    fn input(&mut self, x: &Tensor) -> Tensor {
        x.shallow_clone()
    }

    fn run(&mut self, inputs: Vec<Tensor>, f: Segment<M>) -> Vec<Tensor> {
        f(self.0, &inputs)
    }
}
