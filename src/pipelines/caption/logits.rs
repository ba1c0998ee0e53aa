//! The logits processors captioning uses, as transformers applies them: a minimum number of new
//! tokens (the end token is forbidden until then) and the repetition penalty (CTRL-style: a
//! score of a token already in the sequence is divided by the penalty if positive, multiplied
//! if negative).
use super::{DecodeOptions, Tokens};
use tch::{Kind, Tensor};

/// Applies the processors in place to `scores` `[rows, vocab]`; `sequences` are the rows' tokens
/// so far (prefix included), `generated` how many of them are new.
pub(crate) fn process(
    scores: &mut Tensor,
    sequences: &[Vec<i64>],
    generated: usize,
    opts: &DecodeOptions,
    tokens: Tokens,
) {
    if generated < opts.min_new_tokens {
        let _ = scores.narrow(1, tokens.eos, 1).fill_(f64::NEG_INFINITY);
    }
    if opts.repetition_penalty != 1.0 {
        let flat: Vec<i64> = sequences.iter().flatten().copied().collect();
        let rows = sequences.len() as i64;
        let len = sequences.first().map_or(0, Vec::len) as i64;
        let index = Tensor::from_slice(&flat)
            .view([rows, len])
            .to_device(scores.device());
        let seen = scores.gather(1, &index, false);
        let p = opts.repetition_penalty;
        let penalised = (&seen * p)
            .where_self(&seen.lt(0.0), &(&seen / p))
            .to_kind(scores.kind());
        let _ = scores.scatter_(1, &index, &penalised);
    }
}

/// `scores` as f32 (the decoding loop works in single precision whatever the model's dtype).
pub(crate) fn to_f32(t: Tensor) -> Tensor {
    t.to_kind(Kind::Float)
}
