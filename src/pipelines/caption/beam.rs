//! Beam search as transformers 5 runs it (`early_stopping=False`, `length_penalty`): per image,
//! `beams` running hypotheses; each step takes the `2 × beams` best continuations of the summed
//! log-probabilities; those ending in `[SEP]` (or reaching the length limit) among the first
//! `beams` become finished hypotheses scored by `sum_logprobs / generated_len ^ length_penalty`,
//! the best `beams` others keep running. An image is done when it has `beams` finished
//! hypotheses and the best running score can no longer beat the worst of them.
use super::logits::{process, to_f32};
use super::{DecodeOptions, Tokens};
use crate::models::blip::BlipTextDecoder;
use anyhow::Result;
use tch::{Device, Kind, Tensor};

/// What a hypothesis starts with: the score transformers gives a beam that must not be chosen.
const NEG: f32 = -1.0e9;

#[derive(Debug, Clone)]
struct Finished {
    score: f32,
    tokens: Vec<i64>,
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    score: f32,
    beam: usize,
    token: i64,
    hits_stop: bool,
}

pub(crate) fn decode(
    text: &BlipTextDecoder,
    features: &Tensor,
    prefix: &[i64],
    opts: &DecodeOptions,
    tokens: Tokens,
) -> Result<Vec<Vec<i64>>> {
    let images = features.size()[0] as usize;
    let k = opts.beams;
    let device = features.device();
    let rows = images * k;
    let mut cache = text.cache(&features.repeat_interleave_self_int(k as i64, 0, None));
    let mut running: Vec<Vec<i64>> = vec![prefix.to_vec(); rows];
    let mut running_scores: Vec<f32> = (0..rows)
        .map(|i| if i % k == 0 { 0.0 } else { NEG })
        .collect();
    let mut finished: Vec<Vec<Finished>> = vec![Vec::new(); images];
    let mut searching = vec![true; images];
    let prompt_len = prefix.len();
    let max_len = prompt_len + opts.max_new_tokens;
    let lp = opts.length_penalty as f32;
    let mut input = Tensor::from_slice(prefix)
        .view([1, -1])
        .repeat([rows as i64, 1])
        .to_device(device);
    let mut cur_len = prompt_len;
    loop {
        let logits = to_f32(text.step(&input, &mut cache));
        let vocab = logits.size()[1];
        let mut log_probs = logits.log_softmax(-1, Kind::Float);
        process(&mut log_probs, &running, cur_len - prompt_len, opts, tokens);
        let summed = log_probs
            + Tensor::from_slice(&running_scores)
                .view([rows as i64, 1])
                .to_device(device);
        let (top_v, top_i) = summed
            .view([images as i64, -1])
            .topk(2 * k as i64, -1, true, true);
        let top_v: Vec<f32> = Vec::try_from(top_v.to_device(Device::Cpu).flatten(0, -1))?;
        let top_i: Vec<i64> = Vec::try_from(top_i.to_device(Device::Cpu).flatten(0, -1))?;

        let mut next_running = Vec::with_capacity(rows);
        let mut next_scores = Vec::with_capacity(rows);
        let mut reorder = Vec::with_capacity(rows);
        let mut every_candidate_stops = true;
        for img in 0..images {
            let cands: Vec<Candidate> = (0..2 * k)
                .map(|j| {
                    let flat = top_i[img * 2 * k + j];
                    let token = flat % vocab;
                    Candidate {
                        score: top_v[img * 2 * k + j],
                        beam: (flat / vocab) as usize,
                        token,
                        hits_stop: token == tokens.eos || cur_len + 1 >= max_len,
                    }
                })
                .collect();
            every_candidate_stops &= cands.iter().all(|c| c.hits_stop);
            let extend = |c: &Candidate| {
                let mut t = running[img * k + c.beam].clone();
                t.push(c.token);
                t
            };
            // The best continuations that did not stop keep running.
            let mut order: Vec<(f32, usize)> = cands
                .iter()
                .enumerate()
                .map(|(j, c)| (if c.hits_stop { c.score + NEG } else { c.score }, j))
                .collect();
            order.sort_by(|a, b| b.0.total_cmp(&a.0));
            for &(score, j) in order.iter().take(k) {
                next_running.push(extend(&cands[j]));
                next_scores.push(score);
                reorder.push((img * k + cands[j].beam) as i64);
            }
            // Stopped continuations among the first `k` become finished hypotheses.
            if searching[img] {
                let len = (cur_len + 1 - prompt_len) as f32;
                for c in cands.iter().take(k).filter(|c| c.hits_stop) {
                    finished[img].push(Finished {
                        score: c.score / len.powf(lp),
                        tokens: extend(c),
                    });
                }
                // Stable: on equal scores the earlier hypothesis stays ahead.
                finished[img].sort_by(|a, b| b.score.total_cmp(&a.score));
                finished[img].truncate(k);
            }
        }
        cur_len += 1;
        for img in 0..images {
            if searching[img] && finished[img].len() == k {
                let best_running = next_scores[img * k] / ((cur_len - prompt_len) as f32).powf(lp);
                let worst_finished = finished[img]
                    .iter()
                    .map(|f| f.score)
                    .fold(f32::INFINITY, f32::min);
                if best_running <= worst_finished {
                    searching[img] = false;
                }
            }
        }
        if every_candidate_stops || searching.iter().all(|s| !s) {
            break;
        }
        cache.reorder(&Tensor::from_slice(&reorder).to_device(device));
        let last: Vec<i64> = next_running
            .iter()
            .map(|s| *s.last().expect("non-empty"))
            .collect();
        input = Tensor::from_slice(&last)
            .view([rows as i64, 1])
            .to_device(device);
        running = next_running;
        running_scores = next_scores;
    }
    Ok(finished
        .into_iter()
        .map(|mut f| f.swap_remove(0).tokens)
        .collect())
}
