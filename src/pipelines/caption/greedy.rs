//! Greedy decoding (transformers' `_sample` without sampling): the processed logits' argmax at
//! each step; a row that produced the end token is padded until every row is done.
use super::logits::{process, to_f32};
use super::{DecodeOptions, Tokens};
use crate::models::blip::BlipTextDecoder;
use crate::profile;
use anyhow::Result;
use tch::Tensor;

pub(crate) fn decode(
    text: &BlipTextDecoder,
    features: &Tensor,
    prefix: &[i64],
    opts: &DecodeOptions,
    tokens: Tokens,
) -> Result<Vec<Vec<i64>>> {
    let rows = features.size()[0];
    let device = features.device();
    let mut cache = profile::time("cross-attention cache", || text.cache(features));
    let mut sequences: Vec<Vec<i64>> = vec![prefix.to_vec(); rows as usize];
    let mut unfinished = vec![true; rows as usize];
    let max_len = prefix.len() + opts.max_new_tokens;
    let mut input = Tensor::from_slice(prefix)
        .view([1, -1])
        .repeat([rows, 1])
        .to_device(device);
    loop {
        let mut scores = profile::time("text decoder", || to_f32(text.step(&input, &mut cache)));
        let _stage = profile::scope("greedy search");
        let generated = sequences[0].len() - prefix.len();
        process(&mut scores, &sequences, generated, opts, tokens);
        let next: Vec<i64> = Vec::try_from(scores.argmax(-1, false).to_device(tch::Device::Cpu))?;
        for (r, &tok) in next.iter().enumerate() {
            let tok = if unfinished[r] { tok } else { tokens.pad };
            sequences[r].push(tok);
            if tok == tokens.eos {
                unfinished[r] = false;
            }
        }
        if sequences[0].len() >= max_len || unfinished.iter().all(|u| !u) {
            break;
        }
        let last: Vec<i64> = sequences
            .iter()
            .map(|s| *s.last().expect("non-empty"))
            .collect();
        input = Tensor::from_slice(&last).view([rows, 1]).to_device(device);
    }
    Ok(sequences)
}
