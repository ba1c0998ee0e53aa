//! The arguments several commands share, flattened into theirs (`#[command(flatten)]`): the
//! device, the model and its files, the sampling request; and the parser of named values.
use super::common::spinner;
use crate::device::{DeviceSpec, Precision};
use crate::pipelines::embedding::{self, AppliedEmbedding, EmbeddingSpec};
use crate::pipelines::img2img::ImageToImage;
use crate::pipelines::lora::{self, AppliedLora, LoraSpec};
use crate::pipelines::{LoadOptions, StableDiffusion};
use crate::schedulers::Sampler;
use crate::weights::hub;
use anyhow::Result;
use clap::builder::{PossibleValue, TypedValueParser};
use clap::ValueEnum;
use std::ffi::OsStr;
use std::marker::PhantomData;
use std::path::PathBuf;

/// `--device` and `--precision`.
#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArgs {
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceSpec,
    /// The working precision (default: fp32 on CPU, fp16 on CUDA).
    #[arg(long, ignore_case = true, value_parser = Named::<Precision>::new("precision"))]
    pub precision: Option<Precision>,
}

impl DeviceArgs {
    /// The device (it must exist) and the precision, by default the one of the device.
    pub fn resolve(&self) -> Result<(tch::Device, Precision)> {
        let device = self.device.resolve()?;
        let precision = self
            .precision
            .unwrap_or_else(|| Precision::default_for(device));
        Ok((device, precision))
    }
}

/// `--config` and `--variant`: how a model's files are read.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ModelFiles {
    /// For a single-file checkpoint: a diffusers-layout folder of the same model, with its
    /// configs and tokenizer.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Weight variant to read from a diffusers folder (e.g. fp16).
    #[arg(long)]
    pub variant: Option<String>,
}

/// The Stable Diffusion model a command samples with, and where it runs.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// A diffusers-layout folder, a single-file CompVis .safetensors, or a Hugging Face repo id
    /// (`CompVis/stable-diffusion-v1-4`, `ORG/NAME@REVISION`) read from the hub cache
    /// (HF_HUB_CACHE / HF_HOME) and downloaded there when missing, unless HF_HUB_OFFLINE=1.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub files: ModelFiles,
    #[command(flatten)]
    pub device: DeviceArgs,
}

impl ModelArgs {
    /// Loads the model on its device, with the UNet and the text encoder replaced by those
    /// folders where given; a repo id is resolved (downloaded, with its own progress bar)
    /// before the loading spinner starts.
    pub fn load(
        &self,
        unet: Option<PathBuf>,
        text_encoder: Option<PathBuf>,
    ) -> Result<StableDiffusion> {
        let (device, precision) = self.device.resolve()?;
        let opts = LoadOptions {
            device,
            precision,
            variant: self.files.variant.clone(),
            config_dir: self.files.config.clone(),
            unet_override: unet,
            text_encoder_override: text_encoder,
        };
        let pipeline = hub::Pipeline::StableDiffusion {
            variant: self.files.variant.clone(),
        };
        let model = hub::resolve(&self.model, &pipeline)?;
        let spinner = spinner(&format!("loading {}", self.model.display()));
        let sd = StableDiffusion::load(&model, &opts);
        spinner.finish_and_clear();
        sd
    }
}

/// `--lora PATH[:SCALE]`, repeatable.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LoraArgs {
    /// A LoRA to apply: a .safetensors file (diffusers / PEFT, or kohya keys as A1111 and
    /// ComfyUI use, LoCon included) or a folder with pytorch_lora_weights.safetensors, with its
    /// weight after a colon (`style.safetensors:0.7`, default 1). Repeatable: several LoRAs at
    /// once, each with its own weight.
    #[arg(long = "lora", value_name = "PATH[:SCALE]")]
    pub loras: Vec<LoraSpec>,
}

impl LoraArgs {
    /// Attaches every LoRA to `sd`, saying on stderr what each one changed.
    pub fn apply(&self, sd: &StableDiffusion) -> Result<Vec<AppliedLora>> {
        let applied = lora::apply(sd, &self.loras)?;
        for a in &applied {
            eprintln!(
                "lora {} (scale {}): {} UNet and {} text-encoder layers",
                a.file.display(),
                a.spec.scale,
                a.unet_modules,
                a.text_encoder_modules
            );
        }
        Ok(applied)
    }

    /// The LoRAs for an image's parameters record: `[{"path", "name", "scale"}]`.
    pub fn params(&self) -> serde_json::Value {
        self.loras
            .iter()
            .map(|l| {
                // A1111 names a LoRA by its file stem; a diffusers folder by its name.
                let name = match l.path.is_dir() {
                    true => l.path.file_name(),
                    false => l.path.file_stem(),
                };
                let name = name.map(|s| s.to_string_lossy().into_owned());
                serde_json::json!({"path": l.path.to_string_lossy(), "name": name, "scale": l.scale})
            })
            .collect()
    }
}

/// `--embedding PATH[:TOKEN]`, repeatable.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct EmbeddingArgs {
    /// A textual-inversion embedding: a .safetensors file (diffusers' learned_embeds, or
    /// kohya's emb_params as A1111 and ComfyUI load) or a folder with
    /// learned_embeds.safetensors, with the token that names it in prompts after a colon
    /// (`mug.safetensors:<mug>`; default: the file's own token, or the file stem for
    /// emb_params). A token of several vectors stands for all of them. Repeatable.
    #[arg(long = "embedding", value_name = "PATH[:TOKEN]")]
    pub embeddings: Vec<EmbeddingSpec>,
}

impl EmbeddingArgs {
    /// Adds every embedding's tokens to `sd`, saying on stderr what each one added.
    pub fn apply(&self, sd: &mut StableDiffusion) -> Result<Vec<AppliedEmbedding>> {
        let applied = embedding::apply(sd, &self.embeddings)?;
        for a in &applied {
            eprintln!(
                "embedding {}: token '{}' ({} vector(s), ids {}..={})",
                a.file.display(),
                a.token,
                a.ids.len(),
                a.ids[0],
                a.ids[a.ids.len() - 1]
            );
        }
        Ok(applied)
    }
}

/// What to sample: the prompts, the sampler and its steps, guidance and seed.
#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    #[arg(long)]
    pub prompt: String,
    #[arg(long, default_value = "")]
    pub negative_prompt: String,
    /// The sampler (default: the model's own scheduler).
    #[arg(long, value_parser = Named::<Sampler>::new("sampler"))]
    pub sampler: Option<Sampler>,
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    #[arg(long, default_value_t = 7.5)]
    pub guidance: f64,
    /// The seed of the CPU generator, as diffusers' `generator` (`generate`: of the first batch).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SamplingArgs {
    /// The image-to-image request of these arguments.
    pub fn img2img(&self, strength: f64, variations: i64) -> ImageToImage {
        ImageToImage {
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            steps: self.steps,
            guidance: self.guidance,
            seed: self.seed,
            strength,
            variations,
        }
    }
}

/// Parses a [`ValueEnum`] as clap's own parser does (the help lists the values, aliases and
/// `ignore_case` apply), but names an unknown value as the library does: `unknown sampler
/// 'heun' (one of: pndm, ...)`.
#[derive(Debug)]
pub struct Named<E> {
    what: &'static str,
    values: PhantomData<fn() -> E>,
}

impl<E> Clone for Named<E> {
    fn clone(&self) -> Self {
        Self::new(self.what)
    }
}

impl<E> Named<E> {
    /// `what`: the kind of value, for the error (`sampler`).
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            values: PhantomData,
        }
    }
}

impl<E: ValueEnum + Clone + Send + Sync + 'static> TypedValueParser for Named<E> {
    type Value = E;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<E, clap::Error> {
        let text = value.to_string_lossy();
        let ignore_case = arg.is_some_and(clap::Arg::is_ignore_case_set);
        E::from_str(&text, ignore_case).map_err(|_| {
            let names: Vec<String> = E::value_variants()
                .iter()
                .filter_map(|v| Some(v.to_possible_value()?.get_name().to_string()))
                .collect();
            let arg = arg.map(ToString::to_string).unwrap_or_default();
            let message = format!(
                "invalid value '{text}' for '{arg}': unknown {} '{text}' (one of: {})\n",
                self.what,
                names.join(", ")
            );
            clap::Error::raw(clap::error::ErrorKind::InvalidValue, message).with_cmd(cmd)
        })
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            E::value_variants()
                .iter()
                .filter_map(ValueEnum::to_possible_value),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        sampling: SamplingArgs,
        #[command(flatten)]
        device: DeviceArgs,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from([&["x", "--prompt", "p"][..], args].concat())
    }

    #[test]
    fn named_values_parse_with_their_spellings_and_aliases() {
        let c = parse(&["--sampler", "dpmpp-2m-karras", "--precision", "HALF"]).unwrap();
        assert_eq!(c.sampling.sampler, Some(Sampler::DpmPp2mKarras));
        assert_eq!(c.device.precision, Some(Precision::F16));
        assert_eq!(c.device.device, DeviceSpec::Auto);
        let c = parse(&["--device", "cuda:1"]).unwrap();
        assert_eq!(c.device.device, DeviceSpec::Cuda(1));
        assert_eq!((c.sampling.sampler, c.device.precision), (None, None));
        assert_eq!((c.sampling.steps, c.sampling.guidance), (50, 7.5));
    }

    #[test]
    fn unknown_values_are_named_with_the_choices() {
        let e = parse(&["--sampler", "heun"]).unwrap_err().to_string();
        assert!(
            e.contains("unknown sampler 'heun' (one of: pndm, ddim, euler, euler-a"),
            "{e}"
        );
        assert!(e.contains("--sampler <SAMPLER>"), "{e}");
        let e = parse(&["--sampler", "DDIM"]).unwrap_err().to_string();
        assert!(e.contains("unknown sampler 'DDIM'"), "{e}");
        let e = parse(&["--precision", "fp8"]).unwrap_err().to_string();
        assert!(
            e.contains("unknown precision 'fp8' (one of: fp32, fp16, bf16)"),
            "{e}"
        );
        let e = parse(&["--device", "tpu"]).unwrap_err().to_string();
        assert!(e.contains("invalid device 'tpu'"), "{e}");
    }

    #[test]
    fn the_help_lists_the_samplers() {
        use clap::CommandFactory;
        let help = Cli::command().render_help().to_string();
        assert!(
            help.contains("pndm, ddim, euler, euler-a, dpmpp-2m, dpmpp-2m-karras, lms"),
            "{help}"
        );
    }
}
