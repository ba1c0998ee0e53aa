//! Textual inversion's prompts, as diffusers' `textual_inversion.py` makes them: with
//! `prompts = "object"` (or `"style"`) every image of every step is captioned with one of the
//! script's templates drawn at random, the token in place of `{}` (the tokenizer then expands a
//! multi-vector token into all its tokens); with `"captions"` each image's own caption, whose
//! `{token}` becomes the token. The draws come from `(seed, micro-batch, row)`, so a resumed
//! run draws the same prompts. The fixed validation set is captioned with the first template.
use super::{Example, Source};
use crate::data::dataset::Sample;
use crate::data::rng::SplitMix64;
use crate::data::Dataset;
use crate::pipelines::StableDiffusion;
use crate::train::config::{TextualInversionSection, TiPrompts};
use anyhow::{bail, Context, Result};

/// diffusers' `imagenet_templates_small`.
pub const OBJECT_TEMPLATES: [&str; 27] = [
    "a photo of a {}",
    "a rendering of a {}",
    "a cropped photo of the {}",
    "the photo of a {}",
    "a photo of a clean {}",
    "a photo of a dirty {}",
    "a dark photo of the {}",
    "a photo of my {}",
    "a photo of the cool {}",
    "a close-up photo of a {}",
    "a bright photo of the {}",
    "a cropped photo of a {}",
    "a photo of the {}",
    "a good photo of the {}",
    "a photo of one {}",
    "a close-up photo of the {}",
    "a rendition of the {}",
    "a photo of the clean {}",
    "a rendition of a {}",
    "a photo of a nice {}",
    "a good photo of a {}",
    "a photo of the nice {}",
    "a photo of the small {}",
    "a photo of the weird {}",
    "a photo of the large {}",
    "a photo of a cool {}",
    "a photo of a small {}",
];

/// diffusers' `imagenet_style_templates_small` (two entries appear twice there, and here).
pub const STYLE_TEMPLATES: [&str; 19] = [
    "a painting in the style of {}",
    "a rendering in the style of {}",
    "a cropped painting in the style of {}",
    "the painting in the style of {}",
    "a clean painting in the style of {}",
    "a dirty painting in the style of {}",
    "a dark painting in the style of {}",
    "a picture in the style of {}",
    "a cool painting in the style of {}",
    "a close-up painting in the style of {}",
    "a bright painting in the style of {}",
    "a cropped painting in the style of {}",
    "a good painting in the style of {}",
    "a close-up painting in the style of {}",
    "a rendition in the style of {}",
    "a nice painting in the style of {}",
    "a small painting in the style of {}",
    "a weird painting in the style of {}",
    "a large painting in the style of {}",
];

/// The placeholder of the token in captions (`prompts = "captions"`).
pub const TOKEN_PLACEHOLDER: &str = "{token}";

/// Salt of the template draws.
const SALT: u64 = 0x5445_4D50_4C41_5445;

/// The templates of a prompt source (none for captions).
pub fn templates(prompts: TiPrompts) -> &'static [&'static str] {
    match prompts {
        TiPrompts::Object => &OBJECT_TEMPLATES,
        TiPrompts::Style => &STYLE_TEMPLATES,
        TiPrompts::Captions => &[],
    }
}

/// The training images of a textual-inversion run: every image of `images` captioned with the
/// first template, or, for `"captions"`, `dataset`'s captions with the token put in (a caption
/// without `{token}` is an error naming the image).
pub fn captioned(ti: &TextualInversionSection, dataset: Dataset) -> Result<Dataset> {
    let root = dataset.root().to_path_buf();
    let samples = dataset
        .samples()
        .iter()
        .map(|s| -> Result<Sample> {
            let caption = match templates(ti.prompts).first() {
                Some(t) => t.replace("{}", &ti.token),
                None if s.caption.contains(TOKEN_PLACEHOLDER) => {
                    s.caption.replace(TOKEN_PLACEHOLDER, &ti.token)
                }
                None => bail!(
                    "{}: its caption has no {TOKEN_PLACEHOLDER} for textual_inversion.token (prompts = \"captions\"): {:?}",
                    s.path.display(),
                    s.caption
                ),
            };
            Ok(Sample {
                caption,
                ..s.clone()
            })
        })
        .collect::<Result<Vec<_>>>()
        .context("textual inversion")?;
    Ok(Dataset::from_samples(root, samples))
}

/// A stream whose captions are replaced by templates drawn per row (see the module docs);
/// dropped (empty) captions stay empty.
pub struct Templated {
    inner: Box<dyn Source>,
    templates: &'static [&'static str],
    token: String,
    seed: u64,
    /// The next micro-batch's index.
    k: u64,
}

impl Templated {
    pub fn new(
        inner: Box<dyn Source>,
        ti: &TextualInversionSection,
        seed: u64,
        start: u64,
    ) -> Self {
        Self {
            inner,
            templates: templates(ti.prompts),
            token: ti.token.clone(),
            seed,
            k: start,
        }
    }
}

impl Source for Templated {
    fn next(&mut self, sd: &StableDiffusion) -> Result<Example> {
        let mut e = self.inner.next(sd)?;
        let n = self.templates.len() as u64;
        for (row, caption) in e.captions.iter_mut().enumerate() {
            if n == 0 || caption.is_empty() {
                continue;
            }
            let i = SplitMix64::derived(&[self.seed, SALT, self.k, row as u64]).below(n);
            *caption = self.templates[i as usize].replace("{}", &self.token);
        }
        self.k += 1;
        Ok(e)
    }
}
