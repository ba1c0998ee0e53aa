//! Beam search as transformers 5 runs it (`early_stopping=False`, `length_penalty`): per image,
//! `beams` running hypotheses; each step takes the `2 × beams` best continuations of the summed
//! log-probabilities; those ending in `[SEP]` (or reaching the length limit) among the first
//! `beams` become finished hypotheses scored by `sum_logprobs / generated_len ^ length_penalty`,
//! the best `beams` others keep running. An image is done when it has `beams` finished
//! hypotheses and the best running score can no longer beat the worst of them.
use super::logits::{process, to_f32};
use super::{DecodeOptions, Tokens};
use crate::models::blip::{BlipTextDecoder, DecoderCache};
use crate::profile;
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

/// The search's state: per row a running hypothesis and its summed log-probability, per image
/// its finished hypotheses and whether it is still searching.
struct Search {
    images: usize,
    k: usize,
    rows: usize,
    prompt_len: usize,
    max_len: usize,
    lp: f32,
    cur_len: usize,
    running: Vec<Vec<i64>>,
    running_scores: Vec<f32>,
    finished: Vec<Vec<Finished>>,
    searching: Vec<bool>,
}

/// One step's outcome: the hypotheses that keep running, their scores, the rows they extend.
struct Next {
    running: Vec<Vec<i64>>,
    scores: Vec<f32>,
    reorder: Vec<i64>,
    every_candidate_stops: bool,
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
    let mut cache = profile::time("cross-attention cache", || {
        text.cache(&features.repeat_interleave_self_int(k as i64, 0, None))
    });
    let mut search = Search::new(images, prefix, opts);
    let rows = search.rows;
    let mut input = Tensor::from_slice(prefix)
        .view([1, -1])
        .repeat([rows as i64, 1])
        .to_device(device);
    loop {
        let (top_v, top_i, vocab) =
            search.top_continuations(text, &input, &mut cache, opts, tokens, device)?;
        let stage = profile::scope("beam search");
        let next = search.advance(&top_v, &top_i, vocab, tokens);
        search.cur_len += 1;
        search.stop_settled(&next.scores);
        if next.every_candidate_stops || search.searching.iter().all(|s| !s) {
            break;
        }
        drop(stage);
        profile::time("cache reorder", || {
            cache.reorder(&Tensor::from_slice(&next.reorder).to_device(device))
        });
        let last: Vec<i64> = next
            .running
            .iter()
            .map(|s| *s.last().expect("non-empty"))
            .collect();
        input = Tensor::from_slice(&last)
            .view([rows as i64, 1])
            .to_device(device);
        search.running = next.running;
        search.running_scores = next.scores;
    }
    Ok(search
        .finished
        .into_iter()
        .map(|mut f| f.swap_remove(0).tokens)
        .collect())
}

impl Search {
    /// The start: `beams` copies of `prefix` per image, only the first of each scored 0.
    fn new(images: usize, prefix: &[i64], opts: &DecodeOptions) -> Self {
        let k = opts.beams;
        let rows = images * k;
        let running: Vec<Vec<i64>> = vec![prefix.to_vec(); rows];
        let running_scores: Vec<f32> = (0..rows)
            .map(|i| if i % k == 0 { 0.0 } else { NEG })
            .collect();
        let finished: Vec<Vec<Finished>> = vec![Vec::new(); images];
        let searching = vec![true; images];
        let prompt_len = prefix.len();
        Search {
            images,
            k,
            rows,
            prompt_len,
            max_len: prompt_len + opts.max_new_tokens,
            lp: opts.length_penalty as f32,
            cur_len: prompt_len,
            running,
            running_scores,
            finished,
            searching,
        }
    }

    /// Runs the decoder one step on `input`; returns per image the `2 × beams` best summed
    /// log-probabilities and their flat (beam × vocabulary) indices, and the vocabulary size.
    fn top_continuations(
        &self,
        text: &BlipTextDecoder,
        input: &Tensor,
        cache: &mut DecoderCache,
        opts: &DecodeOptions,
        tokens: Tokens,
        device: Device,
    ) -> Result<(Vec<f32>, Vec<i64>, i64)> {
        let (images, k, rows) = (self.images, self.k, self.rows);
        let logits = profile::time("text decoder", || to_f32(text.step(input, cache)));
        let _stage = profile::scope("beam search");
        let vocab = logits.size()[1];
        let mut log_probs = logits.log_softmax(-1, Kind::Float);
        let generated = self.cur_len - self.prompt_len;
        process(&mut log_probs, &self.running, generated, opts, tokens);
        let summed = log_probs
            + Tensor::from_slice(&self.running_scores)
                .view([rows as i64, 1])
                .to_device(device);
        let (top_v, top_i) = summed
            .view([images as i64, -1])
            .topk(2 * k as i64, -1, true, true);
        let top_v: Vec<f32> = Vec::try_from(top_v.to_device(Device::Cpu).flatten(0, -1))?;
        let top_i: Vec<i64> = Vec::try_from(top_i.to_device(Device::Cpu).flatten(0, -1))?;
        Ok((top_v, top_i, vocab))
    }

    /// Image `img`'s `2 × beams` candidates of this step, best first.
    fn candidates(
        &self,
        top_v: &[f32],
        top_i: &[i64],
        vocab: i64,
        img: usize,
        tokens: Tokens,
    ) -> Vec<Candidate> {
        let k = self.k;
        (0..2 * k)
            .map(|j| {
                let flat = top_i[img * 2 * k + j];
                let token = flat % vocab;
                Candidate {
                    score: top_v[img * 2 * k + j],
                    beam: (flat / vocab) as usize,
                    token,
                    hits_stop: token == tokens.eos || self.cur_len + 1 >= self.max_len,
                }
            })
            .collect()
    }

    /// Candidate `c` of image `img`: its beam's hypothesis with its token appended.
    fn extended(&self, img: usize, c: &Candidate) -> Vec<i64> {
        let mut t = self.running[img * self.k + c.beam].clone();
        t.push(c.token);
        t
    }

    /// Sorts every image's candidates into the next running hypotheses and its finished ones.
    fn advance(&mut self, top_v: &[f32], top_i: &[i64], vocab: i64, tokens: Tokens) -> Next {
        let mut next = Next {
            running: Vec::with_capacity(self.rows),
            scores: Vec::with_capacity(self.rows),
            reorder: Vec::with_capacity(self.rows),
            every_candidate_stops: true,
        };
        for img in 0..self.images {
            let cands = self.candidates(top_v, top_i, vocab, img, tokens);
            next.every_candidate_stops &= cands.iter().all(|c| c.hits_stop);
            self.keep_running(img, &cands, &mut next);
            if self.searching[img] {
                self.finish(img, &cands);
            }
        }
        next
    }

    /// The best `beams` continuations of image `img` that did not stop keep running.
    fn keep_running(&self, img: usize, cands: &[Candidate], next: &mut Next) {
        let k = self.k;
        let mut order: Vec<(f32, usize)> = cands
            .iter()
            .enumerate()
            .map(|(j, c)| (if c.hits_stop { c.score + NEG } else { c.score }, j))
            .collect();
        order.sort_by(|a, b| b.0.total_cmp(&a.0));
        for &(score, j) in order.iter().take(k) {
            next.running.push(self.extended(img, &cands[j]));
            next.scores.push(score);
            next.reorder.push((img * k + cands[j].beam) as i64);
        }
    }

    /// Stopped continuations among image `img`'s first `beams` become finished hypotheses
    /// (the best `beams` of them kept).
    fn finish(&mut self, img: usize, cands: &[Candidate]) {
        let k = self.k;
        let len = (self.cur_len + 1 - self.prompt_len) as f32;
        for c in cands.iter().take(k).filter(|c| c.hits_stop) {
            let done = Finished {
                score: c.score / len.powf(self.lp),
                tokens: self.extended(img, c),
            };
            self.finished[img].push(done);
        }
        // Stable: on equal scores the earlier hypothesis stays ahead.
        self.finished[img].sort_by(|a, b| b.score.total_cmp(&a.score));
        self.finished[img].truncate(k);
    }

    /// Ends the search of each image whose best running score (`next_scores`) can no longer
    /// beat the worst of its `beams` finished hypotheses.
    fn stop_settled(&mut self, next_scores: &[f32]) {
        let k = self.k;
        for img in 0..self.images {
            if self.searching[img] && self.finished[img].len() == k {
                let best_running =
                    next_scores[img * k] / ((self.cur_len - self.prompt_len) as f32).powf(self.lp);
                let worst_finished = self.finished[img]
                    .iter()
                    .map(|f| f.score)
                    .fold(f32::INFINITY, f32::min);
                if best_running <= worst_finished {
                    self.searching[img] = false;
                }
            }
        }
    }
}
