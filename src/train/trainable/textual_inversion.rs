//! Textual inversion as a trainable (`[textual_inversion]`): `num_vectors` new token rows
//! (`<tok>`, `<tok>_1`, ...) added to the tokenizer and the text encoder
//! (`pipelines::embedding::add_token`), each a copy of the initializer token's embedding, are
//! the only trained parameters: the checkpoint's embedding matrix is never touched, which is what
//! diffusers' script gets by restoring every other row after each step. Saved in fp32 (resume is
//! exact whatever `save_dtype` is) as `learned_embeds.safetensors` in diffusers' format
//! (`{token: [n, D]}`, what `load_textual_inversion` and `--embedding` read) and as
//! `<stem>.safetensors` with kohya's `emb_params`, which A1111 and ComfyUI load under the file
//! name (`<stem>` is the token without its punctuation).
use super::Trainable;
use crate::pipelines::embedding::add_token;
use crate::pipelines::StableDiffusion;
use crate::train::checkpoint::TrainerState;
use crate::train::config::TextualInversionSection;
use crate::weights::embedding::{write_diffusers, write_emb_params, EmbeddingFile};
use anyhow::{bail, Context, Result};
use std::path::Path;
use tch::{Kind, Tensor};

/// The diffusers-format file of a checkpoint.
pub const LEARNED_EMBEDS: &str = "learned_embeds.safetensors";

/// The new token's rows.
pub struct TextualInversion {
    token: String,
    /// `[n, D]` fp32 leaf with gradients, owned by the text encoder's added rows.
    rows: Tensor,
}

/// The A1111 / ComfyUI file name of `token`: its letters, digits, `-` and `_`.
pub fn a1111_file_name(token: &str) -> String {
    let stem: String = token
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let stem = if stem.is_empty() { "embedding" } else { &stem };
    format!("{stem}.safetensors")
}

/// The id of `word` when it is one CLIP token (without start and end tokens).
fn single_token_id(sd: &StableDiffusion, word: &str) -> Result<i64> {
    let ids = sd.tokenizer.encode_raw(word)?;
    let inner: Vec<i64> = ids[1..]
        .iter()
        .copied()
        .take_while(|&i| i != sd.tokenizer.eos_id())
        .collect();
    match inner.as_slice() {
        [id] => Ok(*id),
        _ => bail!(
            "textual_inversion.initializer: {word:?} is {} CLIP tokens; it must be one (e.g. \"bag\")",
            inner.len()
        ),
    }
}

impl TextualInversion {
    /// Adds the token's rows to `sd`, initialised from the initializer's embedding.
    pub fn attach(sd: &mut StableDiffusion, ti: &TextualInversionSection) -> Result<Self> {
        let init = single_token_id(sd, &ti.initializer)?;
        let table = sd
            .text_encoder_vs
            .variables()
            .into_iter()
            .find(|(n, _)| n.ends_with("embeddings.token_embedding.weight"))
            .map(|(_, t)| t)
            .context("the text encoder has no token_embedding.weight")?;
        let rows = tch::no_grad(|| {
            table
                .get(init)
                .to_kind(Kind::Float)
                .unsqueeze(0)
                .repeat([ti.num_vectors, 1])
        })
        .set_requires_grad(true);
        add_token(sd, &ti.token, &rows).context("textual_inversion.token")?;
        Ok(Self {
            token: ti.token.clone(),
            rows,
        })
    }
}

impl Trainable for TextualInversion {
    fn name(&self) -> &'static str {
        "textual_inversion"
    }

    fn parameters(&self, _sd: &StableDiffusion) -> Vec<(String, Tensor)> {
        vec![(
            format!("textual_inversion.{}", self.token),
            self.rows.shallow_clone(),
        )]
    }

    fn trains_text_path(&self) -> bool {
        true
    }

    fn save(&self, _sd: &StableDiffusion, dir: &Path, _kind: Kind) -> Result<()> {
        let rows = self.rows.detach().to_device(tch::Device::Cpu);
        write_diffusers(&dir.join(LEARNED_EMBEDS), &self.token, &rows)?;
        write_emb_params(
            &dir.join(a1111_file_name(&self.token)),
            &self.token,
            None,
            &rows,
        )
    }

    fn load(&mut self, _sd: &StableDiffusion, dir: &Path, _state: &TrainerState) -> Result<()> {
        let file = EmbeddingFile::read(&dir.join(LEARNED_EMBEDS))?;
        if file.token != self.token || file.vectors.size() != self.rows.size() {
            bail!(
                "{}: holds {:?} with {:?}, but this run trains {:?} with {:?}",
                file.path.display(),
                file.token,
                file.vectors.size(),
                self.token,
                self.rows.size()
            );
        }
        tch::no_grad(|| self.rows.copy_(&file.vectors));
        Ok(())
    }
}
