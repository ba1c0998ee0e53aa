//! Image captioning with BLIP, as transformers' `BlipForConditionalGeneration.generate`: the
//! image features are computed once, the decoder starts from `[DEC]` (or `[DEC]` + the prompt's
//! tokens, the prompt being kept in the caption), and tokens are chosen greedily or by beam
//! search until `[SEP]` or `max_new_tokens`. Rows of a batch are independent: no padding is
//! needed because every row shares the same prefix.
mod beam;
mod greedy;
mod logits;

use crate::models::blip::processor::ImageProcessor;
use crate::models::blip::tokenizer::BlipTokenizer;
use crate::models::blip::BlipCaptioner;
use crate::pipelines::request::{Param, RequestError};
use crate::weights::hub;
use anyhow::{bail, Result};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// How captions are decoded (transformers' `generate` arguments of the same names).
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    /// 1 = greedy.
    pub beams: usize,
    pub max_new_tokens: usize,
    pub min_new_tokens: usize,
    /// 1.0 = none; > 1 discourages tokens already in the sequence (prompt included).
    pub repetition_penalty: f64,
    /// Beam search: finished scores are divided by `generated_length ^ length_penalty`.
    pub length_penalty: f64,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            beams: 1,
            max_new_tokens: 30,
            min_new_tokens: 0,
            repetition_penalty: 1.0,
            length_penalty: 1.0,
        }
    }
}

impl DecodeOptions {
    /// Refuses options `generate` cannot decode with (see [`RequestError`] for the wording).
    pub fn validate(&self) -> Result<()> {
        if self.beams == 0 {
            bail!(RequestError::BelowOne(Param::Beams));
        }
        if self.max_new_tokens == 0 {
            bail!(RequestError::BelowOne(Param::MaxNewTokens));
        }
        if self.min_new_tokens > self.max_new_tokens {
            bail!(RequestError::MinAboveMax {
                min: self.min_new_tokens,
                max: self.max_new_tokens,
            });
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            bail!(RequestError::NotPositive(Param::RepetitionPenalty));
        }
        Ok(())
    }
}

/// Special token ids the decoding loop needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tokens {
    pub eos: i64,
    pub pad: i64,
}

/// A BLIP model folder ready to caption: model, image processor and tokenizer.
pub struct Captioner {
    pub model: BlipCaptioner,
    pub processor: ImageProcessor,
    pub tokenizer: BlipTokenizer,
}

impl Captioner {
    /// Loads a BLIP folder; a `dir` that does not exist and parses as a Hugging Face repo id is
    /// the repo's snapshot in the hub cache, downloaded first where needed (see [`hub`]).
    pub fn load(dir: &Path, device: Device, kind: Kind) -> Result<Self> {
        crate::profile::on_device(device);
        let _stage = crate::profile::scope("load model");
        let resolved = hub::resolve(dir, &hub::Pipeline::Blip)?;
        let dir = resolved.as_path();
        let model = BlipCaptioner::load(dir, device, kind)?;
        let processor = ImageProcessor::from_dir(dir)?;
        let size = model.vision.image_size() as u32;
        if processor.width != size || processor.height != size {
            bail!(
                "{}: the image processor resizes to {}x{} but the vision model expects {size}x{size}",
                processor.source.display(),
                processor.width,
                processor.height
            );
        }
        let tokenizer = BlipTokenizer::from_dir(dir)?;
        let vocab = model.config.text_config.vocab_size as usize;
        if tokenizer.vocab_size() > vocab {
            bail!(
                "{}: the tokenizer has {} tokens but the text decoder only {vocab}",
                dir.display(),
                tokenizer.vocab_size()
            );
        }
        Ok(Self {
            model,
            processor,
            tokenizer,
        })
    }

    /// The decoder's starting tokens: `[DEC]`, then the prompt's tokens without `[CLS]`/`[SEP]`.
    pub fn prefix(&self, prompt: Option<&str>) -> Result<Vec<i64>> {
        let bos = self.model.config.text_config.bos_token_id;
        let mut ids = vec![bos];
        if let Some(p) = prompt.filter(|p| !p.trim().is_empty()) {
            let enc = self.tokenizer.encode(p)?;
            ids.extend_from_slice(&enc[1..enc.len() - 1]);
        }
        Ok(ids)
    }

    /// Image features `[B, 1 + patches, D]` of `pixel_values` `[B, 3, S, S]`.
    pub fn features(&self, pixel_values: &Tensor) -> Tensor {
        let kind = self.model.text.dtype();
        let _stage = crate::profile::scope("vision encoder");
        tch::no_grad(|| {
            self.model
                .vision
                .forward(&pixel_values.to_device(self.model.device()).to_kind(kind))
        })
    }

    /// Token ids (prefix included) of each image's caption, as `generate` returns them.
    pub fn generate(
        &self,
        pixel_values: &Tensor,
        prompt: Option<&str>,
        opts: &DecodeOptions,
    ) -> Result<Vec<Vec<i64>>> {
        opts.validate()?;
        let prefix = self.prefix(prompt)?;
        let max_len = prefix.len() + opts.max_new_tokens;
        let limit = self.model.text.max_positions() as usize;
        if max_len > limit {
            bail!(RequestError::TooManyTokens {
                prompt: prefix.len() - 1,
                max_new: opts.max_new_tokens,
                limit,
            });
        }
        let cfg = &self.model.config.text_config;
        let tokens = Tokens {
            eos: cfg.sep_token_id,
            pad: cfg.pad_token_id,
        };
        let _stage = crate::profile::scope("captions");
        let features = self.features(pixel_values);
        tch::no_grad(|| {
            if opts.beams == 1 {
                greedy::decode(&self.model.text, &features, &prefix, opts, tokens)
            } else {
                beam::decode(&self.model.text, &features, &prefix, opts, tokens)
            }
        })
    }

    /// Captions of a batch of preprocessed images.
    pub fn caption(
        &self,
        pixel_values: &Tensor,
        prompt: Option<&str>,
        opts: &DecodeOptions,
    ) -> Result<Vec<String>> {
        self.generate(pixel_values, prompt, opts)?
            .iter()
            .map(|ids| self.tokenizer.decode(ids))
            .collect()
    }
}
