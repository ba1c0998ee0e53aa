//! Loading a whole Stable Diffusion 1.x model: a diffusers folder (`model_index.json` and one
//! sub-folder per component) or an original single-file CompVis checkpoint plus a folder that
//! holds its configs and tokenizer (as diffusers' `from_single_file(config=...)`).
use crate::device::Precision;
use crate::models::clip::{ClipTextConfig, ClipTextModel, ClipTokenizer};
use crate::models::config::read_json;
use crate::models::unet::{UNet2DConditionModel, UNetConfig};
use crate::models::vae::{rename_legacy_vae_keys, AutoencoderKL, VaeConfig};
use crate::models::vars;
use crate::profile;
use crate::schedulers::{SchedulerClass, SchedulerConfig};
use crate::weights::compvis::{self, UNetLayout, VaeLayout};
use crate::weights::{hub, parameter_count, WeightSet};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Kind};

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: Device,
    pub precision: Precision,
    /// Weight variant to prefer (`fp16`); by default the plain files, else whatever variant exists.
    pub variant: Option<String>,
    /// For single-file checkpoints: a diffusers-layout folder with the components' configs and
    /// the tokenizer (weights in it, if any, are not read).
    pub config_dir: Option<PathBuf>,
    /// A UNet folder (`config.json` + weights) that replaces the model's own, e.g. a checkpoint
    /// written by `studioize train`.
    pub unet_override: Option<PathBuf>,
    /// A text-encoder folder (`config.json` + `model.safetensors`) that replaces the model's
    /// own, e.g. written by `studioize train` with `train_text_encoder`.
    pub text_encoder_override: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            precision: Precision::F32,
            variant: None,
            config_dir: None,
            unet_override: None,
            text_encoder_override: None,
        }
    }
}

/// Where a model came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelLayout {
    /// A diffusers folder with `model_index.json`.
    Diffusers {
        root: PathBuf,
        pipeline_class: String,
    },
    /// One CompVis-keyed `.safetensors` file, configured from `config_dir`.
    SingleFile { file: PathBuf, config_dir: PathBuf },
}

/// What `inspect` reports of one component.
#[derive(Debug, Clone)]
pub struct ComponentInfo {
    pub name: String,
    pub class: String,
    /// Exact number of scalar parameters (as `sum(p.numel())` in PyTorch); `None` for
    /// components without weights (tokenizer, scheduler).
    pub parameters: Option<i64>,
    /// The dtype the weights are stored in on disk (e.g. `float16`).
    pub stored_dtype: Option<String>,
    pub files: Vec<PathBuf>,
    pub detail: String,
}

/// A loaded Stable Diffusion 1.x model.
pub struct StableDiffusion {
    pub layout: ModelLayout,
    pub tokenizer: ClipTokenizer,
    pub text_encoder: ClipTextModel,
    pub unet: UNet2DConditionModel,
    pub vae: AutoencoderKL,
    /// `scheduler/scheduler_config.json` as written (absent keys unset), if the model has one;
    /// each sampler resolves it for its own class ([`SchedulerConfig::for_sampler`]).
    pub scheduler_config: Option<SchedulerConfig>,
    pub text_encoder_vs: VarStore,
    pub unet_vs: VarStore,
    pub vae_vs: VarStore,
    pub components: Vec<ComponentInfo>,
    /// The UNet's `config.json` (copied into training checkpoints).
    pub unet_config_file: PathBuf,
    /// The text encoder's `config.json` (likewise).
    pub text_encoder_config_file: PathBuf,
    pub device: Device,
    pub kind: Kind,
    /// The VAE's dtype: fp32 when its config asks for `force_upcast` (SD 1.x's VAE overflows
    /// in fp16), else `kind`.
    pub vae_kind: Kind,
}

fn is_text_encoder_buffer(name: &str) -> bool {
    name.ends_with("position_ids")
}

/// What `inspect` says of the scheduler: its class and the noise schedule that class reads.
fn scheduler_info(cfg: &SchedulerConfig, path: &Path) -> ComponentInfo {
    let class = cfg.class_name.clone().unwrap_or_else(|| "unknown".into());
    let detail = match SchedulerClass::from_class_name(&class).map(|c| cfg.resolve(c)) {
        Some(Ok(r)) => format!(
            "{} training steps, {}, {}",
            r.num_train_timesteps,
            if r.trained_betas.is_some() {
                "trained betas".to_string()
            } else {
                r.beta_schedule.to_string()
            },
            r.prediction_type
        ),
        Some(Err(e)) => format!("refused by its own class: {e}"),
        None => format!(
            "a class studioize does not implement (samplers: {})",
            crate::schedulers::SAMPLERS.join(", ")
        ),
    };
    ComponentInfo {
        name: "scheduler".into(),
        class,
        parameters: None,
        stored_dtype: None,
        files: vec![path.to_path_buf()],
        detail,
    }
}

/// transformers 4 (and the SD 1.x repositories) save `CLIPTextModel` as `text_model.*`;
/// transformers 5 saves it without the prefix. Both load.
pub fn normalize_text_encoder_names(w: WeightSet) -> WeightSet {
    w.map_names(|n| {
        Some(if n.starts_with("text_model.") {
            n.to_string()
        } else {
            format!("text_model.{n}")
        })
    })
}

impl StableDiffusion {
    /// Loads a diffusers folder or a single-file checkpoint (see [`LoadOptions`]). A `path`
    /// that does not exist and parses as a Hugging Face repo id (`org/name[@revision]`) is the
    /// repo's snapshot in the hub cache, downloaded first where needed (see [`hub`]).
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Self> {
        opts.precision.check_device(opts.device)?;
        crate::profile::on_device(opts.device);
        let _stage = crate::profile::scope("load model");
        let pipeline = hub::Pipeline::StableDiffusion {
            variant: opts.variant.clone(),
        };
        let resolved = hub::resolve(path, &pipeline)?;
        let path = resolved.as_path();
        if !path.exists() {
            bail!(
                "{}: no such file or folder{}",
                path.display(),
                hub::missing_path_hint(path)
            );
        }
        if path.is_dir() {
            let index = path.join("model_index.json");
            if !index.is_file() {
                bail!(
                    "{}: not a model folder (no model_index.json; expected a diffusers-layout Stable Diffusion folder or a .safetensors file)",
                    path.display()
                );
            }
            Self::load_diffusers(path, &index, opts)
        } else if path.is_file() {
            Self::load_single_file(path, opts)
        } else {
            bail!("{}: no such file or folder", path.display())
        }
    }

    fn load_diffusers(root: &Path, index: &Path, opts: &LoadOptions) -> Result<Self> {
        let model_index: BTreeMap<String, serde_json::Value> = read_json(index)?;
        let pipeline_class = model_index
            .get("_class_name")
            .and_then(|v| v.as_str())
            .unwrap_or("unknown")
            .to_string();
        crate::weights::layout::check_components(
            &model_index,
            &index.display().to_string(),
            &crate::weights::layout::SD_COMPONENTS,
        )?;
        let variant = opts.variant.as_deref();
        let unet_dir = opts
            .unet_override
            .clone()
            .unwrap_or_else(|| root.join("unet"));
        if let Some(v) = variant {
            // As diffusers: a variant no component has is an error, not a silent fallback.
            let parts = [
                (unet_dir.clone(), "diffusion_pytorch_model"),
                (root.join("vae"), "diffusion_pytorch_model"),
                (root.join("text_encoder"), "model"),
            ];
            if !parts
                .iter()
                .any(|(d, stem)| crate::weights::component_files(d, stem, Some(v)).is_ok())
            {
                bail!(
                    "{}: no component has weights of variant '{v}' (files like unet/diffusion_pytorch_model.{v}.safetensors)",
                    root.display()
                );
            }
        }
        let read = profile::scope("map weights");
        let unet_w = WeightSet::read_component(&unet_dir, "diffusion_pytorch_model", variant)
            .or_else(|e| {
                fallback_without_variant(e, &unet_dir, "diffusion_pytorch_model", variant)
            })?;
        let vae_dir = root.join("vae");
        let vae_w = WeightSet::read_component(&vae_dir, "diffusion_pytorch_model", variant)
            .or_else(|e| {
                fallback_without_variant(e, &vae_dir, "diffusion_pytorch_model", variant)
            })?;
        let te_dir = opts
            .text_encoder_override
            .clone()
            .unwrap_or_else(|| root.join("text_encoder"));
        let te_w = WeightSet::read_component(&te_dir, "model", variant)
            .or_else(|e| fallback_without_variant(e, &te_dir, "model", variant))?;
        drop(read);
        let layout = ModelLayout::Diffusers {
            root: root.to_path_buf(),
            pipeline_class,
        };
        Self::assemble(layout, root, &unet_dir, unet_w, vae_w, te_w, opts)
    }

    fn load_single_file(file: &Path, opts: &LoadOptions) -> Result<Self> {
        // tests/models.rs asserts that this message names `--config`.
        let config_dir = opts.config_dir.clone().with_context(|| {
            format!(
                "{}: a single-file checkpoint carries no configs or tokenizer; pass --config DIR, a diffusers-layout folder of the same model (its config.json files and tokenizer/)",
                file.display()
            )
        })?;
        let all = WeightSet::read_files(&[file.to_path_buf()])?;
        if !compvis::is_compvis(&all) {
            bail!("{}: not a CompVis Stable Diffusion checkpoint (no model.diffusion_model.* tensors)", file.display());
        }
        let unet_cfg = UNetConfig::from_file(&config_dir.join("unet").join("config.json"))?;
        let vae_cfg = VaeConfig::from_file(&config_dir.join("vae").join("config.json"))?;
        let unet_layout = UNetLayout {
            levels: unet_cfg.block_out_channels.len(),
            layers_per_block: unet_cfg.layers_per_block_uniform()?,
        };
        let vae_layout = VaeLayout {
            levels: vae_cfg.block_out_channels.len(),
            layers_per_block: vae_cfg.layers_per_block,
        };
        let parts = compvis::split_and_convert(all, &unet_layout, &vae_layout)?;
        let unet_dir = opts
            .unet_override
            .clone()
            .unwrap_or_else(|| config_dir.join("unet"));
        let unet_w = match &opts.unet_override {
            Some(d) => WeightSet::read_component(d, "diffusion_pytorch_model", None)?,
            None => parts.unet,
        };
        let te_w = match &opts.text_encoder_override {
            Some(d) => WeightSet::read_component(d, "model", None)?,
            None => parts.text_encoder,
        };
        let layout = ModelLayout::SingleFile {
            file: file.to_path_buf(),
            config_dir: config_dir.clone(),
        };
        Self::assemble(
            layout,
            &config_dir,
            &unet_dir,
            unet_w,
            parts.vae,
            te_w,
            opts,
        )
    }

    /// Builds the models from the configs under `config_root` (and `unet_dir`) and loads weights.
    fn assemble(
        layout: ModelLayout,
        config_root: &Path,
        unet_dir: &Path,
        unet_w: WeightSet,
        vae_w: WeightSet,
        te_w: WeightSet,
        opts: &LoadOptions,
    ) -> Result<Self> {
        let kind = opts.precision.kind();
        let device = opts.device;
        let tokenizer = profile::time("tokenizer", || {
            ClipTokenizer::from_dir(&config_root.join("tokenizer"))
        })?;
        let te_config_dir = opts
            .text_encoder_override
            .clone()
            .unwrap_or_else(|| config_root.join("text_encoder"));
        let te = profile::time("text encoder", || {
            load_text_encoder(&te_config_dir, te_w, device, kind)
        })?;
        let unet = profile::time("unet", || load_unet(unet_dir, unet_w, device, kind))?;
        let (vae, vae_kind) = profile::time("vae", || load_vae(config_root, vae_w, device, kind))?;
        let (sched_path, scheduler_config) = read_scheduler_config(config_root)?;
        let mut components = component_infos(&te, &unet, &vae, &tokenizer, config_root);
        if let Some(cfg) = &scheduler_config {
            components.push(scheduler_info(cfg, &sched_path));
        }
        Ok(Self {
            layout,
            tokenizer,
            text_encoder: te.model,
            unet: unet.model,
            vae: vae.model,
            scheduler_config,
            text_encoder_vs: te.vs,
            unet_vs: unet.vs,
            vae_vs: vae.vs,
            components,
            unet_config_file: unet_dir.join("config.json"),
            text_encoder_config_file: te_config_dir.join("config.json"),
            device,
            kind,
            vae_kind,
        })
    }
}

/// One component built and loaded: its model, variable store, config and the weights read.
struct Loaded<M, C> {
    model: M,
    vs: VarStore,
    cfg: C,
    weights: WeightSet,
}

/// An empty variable store whose variables will be created in `kind` on `device` (built with
/// [`vars::for_checkpoint`]: the weights loaded next are their only values).
fn store(device: Device, kind: Kind) -> VarStore {
    let mut vs = VarStore::new(device);
    vs.set_kind(kind);
    vs
}

/// Builds the text encoder from `config_dir/config.json` and loads `w` (names normalized).
fn load_text_encoder(
    config_dir: &Path,
    w: WeightSet,
    device: Device,
    kind: Kind,
) -> Result<Loaded<ClipTextModel, ClipTextConfig>> {
    let cfg = ClipTextConfig::from_file(&config_dir.join("config.json"))?;
    let vs = store(device, kind);
    let model = vars::for_checkpoint(|| ClipTextModel::new(&vs.root(), &cfg))?;
    let weights = normalize_text_encoder_names(w);
    weights.load_into(&vs, "text_encoder", is_text_encoder_buffer)?;
    Ok(Loaded {
        model,
        vs,
        cfg,
        weights,
    })
}

/// Builds the UNet from `unet_dir/config.json` and loads `w`.
fn load_unet(
    unet_dir: &Path,
    w: WeightSet,
    device: Device,
    kind: Kind,
) -> Result<Loaded<UNet2DConditionModel, UNetConfig>> {
    let cfg = UNetConfig::from_file(&unet_dir.join("config.json"))?;
    let vs = store(device, kind);
    let model = vars::for_checkpoint(|| UNet2DConditionModel::new(&vs.root(), &cfg))?;
    w.load_into(&vs, "unet", |_| false)?;
    Ok(Loaded {
        model,
        vs,
        cfg,
        weights: w,
    })
}

/// Builds the VAE from `config_root/vae/config.json` (fp32 when it asks for `force_upcast`)
/// and loads `w` (legacy names renamed); returns it with its dtype.
fn load_vae(
    config_root: &Path,
    w: WeightSet,
    device: Device,
    kind: Kind,
) -> Result<(Loaded<AutoencoderKL, VaeConfig>, Kind)> {
    let cfg = VaeConfig::from_file(&config_root.join("vae").join("config.json"))?;
    let vae_kind = if cfg.force_upcast { Kind::Float } else { kind };
    let vs = store(device, vae_kind);
    let model = vars::for_checkpoint(|| AutoencoderKL::new(&vs.root(), &cfg))?;
    let weights = w.map_names(|n| Some(rename_legacy_vae_keys(n)));
    weights.load_into(&vs, "vae", |_| false)?;
    let loaded = Loaded {
        model,
        vs,
        cfg,
        weights,
    };
    Ok((loaded, vae_kind))
}

/// `config_root/scheduler/scheduler_config.json`'s path, and the config where the file exists.
fn read_scheduler_config(config_root: &Path) -> Result<(PathBuf, Option<SchedulerConfig>)> {
    let sched_path = config_root.join("scheduler").join("scheduler_config.json");
    let scheduler_config = if sched_path.is_file() {
        Some(SchedulerConfig::from_file(&sched_path)?)
    } else {
        None
    };
    Ok((sched_path, scheduler_config))
}

/// What `inspect` reports of the text encoder, UNet, VAE and tokenizer, in that order.
fn component_infos(
    te: &Loaded<ClipTextModel, ClipTextConfig>,
    unet: &Loaded<UNet2DConditionModel, UNetConfig>,
    vae: &Loaded<AutoencoderKL, VaeConfig>,
    tokenizer: &ClipTokenizer,
    config_root: &Path,
) -> Vec<ComponentInfo> {
    let mut components = vec![
        weight_info("text_encoder", "CLIPTextModel", &te.vs, &te.weights),
        weight_info("unet", "UNet2DConditionModel", &unet.vs, &unet.weights),
        weight_info("vae", "AutoencoderKL", &vae.vs, &vae.weights),
    ];
    components[0].detail = format!(
        "hidden {}, {} layers, {} heads",
        te.cfg.hidden_size, te.cfg.num_hidden_layers, te.cfg.num_attention_heads
    );
    components[1].detail = format!(
        "blocks {:?}, cross-attention {}",
        unet.cfg.block_out_channels, unet.cfg.cross_attention_dim
    );
    components[2].detail = format!(
        "blocks {:?}, scaling factor {}",
        vae.cfg.block_out_channels, vae.cfg.scaling_factor
    );
    components.push(ComponentInfo {
        name: "tokenizer".into(),
        class: "CLIPTokenizer".into(),
        parameters: None,
        stored_dtype: None,
        files: vec![config_root.join("tokenizer")],
        detail: format!(
            "vocabulary {}, max length {}",
            tokenizer.vocab_size(),
            tokenizer.max_length()
        ),
    });
    components
}

impl StableDiffusion {
    /// Replaces the UNet with the one in `unet_dir` (`config.json` + weights, e.g. a training
    /// checkpoint's `unet/`), keeping the text encoder, VAE and tokenizer: comparing checkpoints
    /// of one base model loads those once. The result equals a fresh [`StableDiffusion::load`]
    /// with `unet_override = unet_dir`.
    pub fn swap_unet(&mut self, unet_dir: &Path) -> Result<()> {
        let unet_w = WeightSet::read_component(unet_dir, "diffusion_pytorch_model", None)?;
        let unet_cfg = UNetConfig::from_file(&unet_dir.join("config.json"))?;
        let unet_vs = store(self.device, self.kind);
        let unet = vars::for_checkpoint(|| UNet2DConditionModel::new(&unet_vs.root(), &unet_cfg))?;
        unet_w
            .load_into(&unet_vs, "unet", |_| false)
            .with_context(|| format!("{}", unet_dir.display()))?;
        let mut info = weight_info("unet", "UNet2DConditionModel", &unet_vs, &unet_w);
        info.detail = format!(
            "blocks {:?}, cross-attention {}",
            unet_cfg.block_out_channels, unet_cfg.cross_attention_dim
        );
        if let Some(c) = self.components.iter_mut().find(|c| c.name == "unet") {
            *c = info;
        }
        self.unet = unet;
        self.unet_vs = unet_vs;
        self.unet_config_file = unet_dir.join("config.json");
        Ok(())
    }
}

/// Retries without a variant when the requested variant is absent for one component
/// (diffusers does the same: variants are per file, and not every component has one).
fn fallback_without_variant(
    err: anyhow::Error,
    dir: &Path,
    stem: &str,
    variant: Option<&str>,
) -> Result<WeightSet> {
    match variant {
        Some(_) if dir.is_dir() => WeightSet::read_component(dir, stem, None).map_err(|_| err),
        _ => Err(err),
    }
}

fn weight_info(name: &str, class: &str, vs: &VarStore, w: &WeightSet) -> ComponentInfo {
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for (_, e) in w.iter() {
        *kinds
            .entry(kind_name(e.tensor.kind()).to_string())
            .or_default() += 1;
    }
    let stored_dtype = kinds.into_iter().max_by_key(|(_, n)| *n).map(|(k, _)| k);
    ComponentInfo {
        name: name.into(),
        class: class.into(),
        parameters: Some(parameter_count(vs)),
        stored_dtype,
        files: w.files().into_iter().map(Path::to_path_buf).collect(),
        detail: String::new(),
    }
}

/// PyTorch's name for a dtype.
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Float => "float32",
        Kind::Half => "float16",
        Kind::BFloat16 => "bfloat16",
        Kind::Double => "float64",
        Kind::Int64 => "int64",
        Kind::Int => "int32",
        Kind::Int16 => "int16",
        Kind::Int8 => "int8",
        Kind::Uint8 => "uint8",
        Kind::Bool => "bool",
        _ => "other",
    }
}
