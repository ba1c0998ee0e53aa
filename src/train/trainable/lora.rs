//! LoRA adapters as a trainable (`[lora]`): the UNet and the text encoder stay frozen, new
//! low-rank matrices are attached to the targeted layers and are all that gets gradients and
//! optimizer state. Initialised as PEFT's default (A Kaiming-uniform with `a = sqrt(5)`, B
//! zero), so step 0 computes the base model. A checkpoint holds the adapters only, in both
//! formats the ecosystem loads: `pytorch_lora_weights.safetensors` (diffusers / PEFT, with the
//! adapter configs in the header) and `lora_kohya.safetensors` (kohya, for A1111 / ComfyUI);
//! with half-precision saving, `resume/lora.safetensors` keeps the fp32 masters.
use super::Trainable;
use crate::models::lora::{AdaptableLayers, Adapter, LayerShape};
use crate::pipelines::StableDiffusion;
use crate::train::checkpoint::{TrainerState, RESUME_DIR};
use crate::train::config::LoraSection;
use crate::weights::lora::write::{write_diffusers, write_kohya, NamedAdapter};
use crate::weights::lora::{AdapterConfig, Component, DIFFUSERS_FILE, KOHYA_FILE};
use crate::weights::{write_safetensors, SaveOptions};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Kind, Tensor};

/// The fp32 master copy of the adapters in `resume/` (half-precision checkpoints only).
const RESUME_FILE: &str = "lora.safetensors";

/// The convolutions LoCon adapts (kohya's ResNet and resampler targets).
const CONV_TARGETS: [&str; 5] = [
    "conv1",
    "conv2",
    "conv_shortcut",
    "downsamplers.0.conv",
    "upsamplers.0.conv",
];

/// One trained adapter.
struct Trained {
    component: Component,
    path: String,
    /// The `[lora]` target it matched (PEFT's `target_modules` entry).
    target: String,
    down: Tensor,
    up: Tensor,
    alpha: f64,
}

impl Trained {
    /// The names of its two matrices in the optimizer state and the resume file.
    fn names(&self) -> (String, String) {
        let stem = format!("{}.{}", self.component.prefix(), self.path);
        (
            format!("{stem}.lora_A.weight"),
            format!("{stem}.lora_B.weight"),
        )
    }
}

/// The adapters of a LoRA run.
pub struct Lora {
    cfg: LoraSection,
    adapters: Vec<Trained>,
}

/// A layer to adapt: its path, the target it matched, its rank and alpha.
type Target<'a> = (&'a str, &'a str, i64, f64);

/// PEFT's target rule: the module is the target or ends with `.` + target.
pub fn matches(path: &str, target: &str) -> bool {
    path == target || path.ends_with(&format!(".{target}"))
}

impl Lora {
    /// Creates the adapters (from the global generator, which the trainer has seeded) and
    /// attaches them. Fails when a target list matches no layer.
    pub fn attach(sd: &StableDiffusion, cfg: &LoraSection) -> Result<Self> {
        let mut adapters = Vec::new();
        let mut plan: Vec<(Component, &AdaptableLayers, Vec<Target>)> = Vec::new();
        let unet = sd.unet.lora_layers();
        let mut on_unet = Vec::new();
        for (path, layer) in unet.iter() {
            if let Some(t) = cfg.targets.iter().find(|t| matches(path, t)) {
                on_unet.push((path, t.as_str(), cfg.rank, cfg.alpha));
            } else if let Some(t) = CONV_TARGETS.iter().find(|t| matches(path, t)) {
                if cfg.conv_rank > 0 && layer.shape.is_conv() {
                    on_unet.push((path, *t, cfg.conv_rank, cfg.conv_alpha));
                }
            }
        }
        if on_unet.is_empty() {
            bail!("lora.targets: {:?} match no layer of the UNet", cfg.targets);
        }
        plan.push((Component::Unet, unet, on_unet));
        if cfg.text_encoder {
            let te = sd.text_encoder.lora_layers();
            let on_te: Vec<Target> = te
                .iter()
                .filter_map(|(p, _)| {
                    let t = cfg.text_targets.iter().find(|t| matches(p, t))?;
                    Some((p, t.as_str(), cfg.rank, cfg.alpha))
                })
                .collect();
            if on_te.is_empty() {
                bail!(
                    "lora.text_targets: {:?} match no layer of the text encoder",
                    cfg.text_targets
                );
            }
            plan.push((Component::TextEncoder, te, on_te));
        }
        for (component, layers, list) in plan {
            for (path, target, rank, alpha) in list {
                let layer = layers.get(path).expect("listed by the model");
                let (down, up) = new_pair(&layer.shape, rank, layer.weight.device());
                let adapter = Adapter {
                    down: down.shallow_clone(),
                    up: up.shallow_clone(),
                    scale: alpha / rank as f64,
                    dropout: cfg.dropout,
                };
                layers.attach(path, adapter)?;
                adapters.push(Trained {
                    component,
                    path: path.to_string(),
                    target: target.to_string(),
                    down,
                    up,
                    alpha,
                });
            }
        }
        Ok(Self {
            cfg: cfg.clone(),
            adapters,
        })
    }

    /// PEFT's adapter config of one component, as diffusers stores it in the header.
    fn adapter_config(&self, component: Component) -> Option<AdapterConfig> {
        let mine: Vec<&Trained> = self
            .adapters
            .iter()
            .filter(|a| a.component == component)
            .collect();
        if mine.is_empty() {
            return None;
        }
        let rank_of = |a: &Trained| a.down.size()[0];
        let mut rank_pattern = BTreeMap::new();
        let mut alpha_pattern = BTreeMap::new();
        for a in &mine {
            if rank_of(a) != self.cfg.rank {
                rank_pattern.insert(a.path.clone(), rank_of(a));
                alpha_pattern.insert(a.path.clone(), a.alpha);
            }
        }
        Some(AdapterConfig {
            r: self.cfg.rank,
            lora_alpha: self.cfg.alpha,
            rank_pattern,
            alpha_pattern,
            use_rslora: false,
            lora_dropout: self.cfg.dropout,
            // The matched target names, which PEFT matches against the end of module paths:
            // they fit the text encoder's paths with and without `text_model.` (transformers
            // 4 and 5 name it differently).
            target_modules: mine
                .iter()
                .map(|a| a.target.clone())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
        })
    }

    fn named(&self) -> Vec<NamedAdapter<'_>> {
        self.adapters
            .iter()
            .map(|a| NamedAdapter {
                component: a.component,
                path: &a.path,
                down: &a.down,
                up: &a.up,
                alpha: a.alpha,
            })
            .collect()
    }
}

/// A fresh adapter pair for a layer: A (`down`) Kaiming-uniform with `a = sqrt(5)` (bound
/// `1 / sqrt(fan_in)`), B (`up`) zero; fp32, trainable.
pub fn new_pair(shape: &LayerShape, rank: i64, device: tch::Device) -> (Tensor, Tensor) {
    let (down_shape, up_shape) = shape.adapter_shapes(rank);
    let fan_in: i64 = down_shape[1..].iter().product();
    let bound = 1.0 / (fan_in as f64).sqrt();
    let down = Tensor::empty(&down_shape, (Kind::Float, device))
        .uniform_(-bound, bound)
        .set_requires_grad(true);
    let up = Tensor::zeros(&up_shape, (Kind::Float, device)).set_requires_grad(true);
    (down, up)
}

impl Trainable for Lora {
    fn name(&self) -> &'static str {
        "lora"
    }

    fn parameters(&self, _sd: &StableDiffusion) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.adapters.len());
        for a in &self.adapters {
            let (d, u) = a.names();
            out.push((format!("lora.{d}"), a.down.shallow_clone()));
            out.push((format!("lora.{u}"), a.up.shallow_clone()));
        }
        out
    }

    fn trains_text_path(&self) -> bool {
        self.cfg.text_encoder
    }

    fn set_training(&self, sd: &StableDiffusion, training: bool) {
        sd.unet.lora_layers().set_training(training);
        sd.text_encoder.lora_layers().set_training(training);
    }

    fn save(&self, _sd: &StableDiffusion, dir: &Path, kind: Kind) -> Result<()> {
        let named = self.named();
        let configs: Vec<(Component, AdapterConfig)> = [Component::Unet, Component::TextEncoder]
            .into_iter()
            .filter_map(|c| Some((c, self.adapter_config(c)?)))
            .collect();
        let refs: Vec<(Component, &AdapterConfig)> = configs.iter().map(|(c, a)| (*c, a)).collect();
        write_diffusers(&dir.join(DIFFUSERS_FILE), &named, &refs, kind)?;
        let mut network = BTreeMap::from([
            ("ss_network_dim".to_string(), self.cfg.rank.to_string()),
            ("ss_network_alpha".to_string(), self.cfg.alpha.to_string()),
        ]);
        if self.cfg.conv_rank > 0 {
            let args = serde_json::json!({
                "conv_dim": self.cfg.conv_rank.to_string(),
                "conv_alpha": self.cfg.conv_alpha.to_string(),
            });
            network.insert("ss_network_args".into(), args.to_string());
        }
        write_kohya(&dir.join(KOHYA_FILE), &named, &network, kind)?;
        if kind != Kind::Float {
            let master = dir.join(RESUME_DIR).join(RESUME_FILE);
            write_safetensors(&master, &self.masters(), &SaveOptions::default())?;
        }
        Ok(())
    }

    fn load(&mut self, _sd: &StableDiffusion, dir: &Path, _state: &TrainerState) -> Result<()> {
        let master = dir.join(RESUME_DIR).join(RESUME_FILE);
        let file = if master.is_file() {
            master
        } else {
            dir.join(DIFFUSERS_FILE)
        };
        let saved: BTreeMap<String, Tensor> = crate::weights::read_safetensors(&file)?
            .into_iter()
            .collect();
        tch::no_grad(|| -> Result<()> {
            for a in &mut self.adapters {
                let (d, u) = a.names();
                for (name, t) in [(d, &mut a.down), (u, &mut a.up)] {
                    let key = name;
                    let v = saved.get(&key).with_context(|| {
                        format!(
                            "{}: no tensor '{key}' (was the run's [lora] changed?)",
                            file.display()
                        )
                    })?;
                    if v.size() != t.size() {
                        bail!(
                            "{}: '{key}' is {:?}, the run's adapter {:?} (was the run's [lora] changed?)",
                            file.display(),
                            v.size(),
                            t.size()
                        );
                    }
                    t.copy_(v);
                }
            }
            Ok(())
        })?;
        Ok(())
    }
}

impl Lora {
    /// The adapters in fp32 under their diffusers names, for `resume/`.
    fn masters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for a in &self.adapters {
            let (d, u) = a.names();
            out.push((d, a.down.detach().to_kind(Kind::Float)));
            out.push((u, a.up.detach().to_kind(Kind::Float)));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_match_whole_trailing_names() {
        assert!(matches(
            "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
            "to_q"
        ));
        assert!(matches("a.attn1.to_out.0", "to_out.0"));
        assert!(!matches("a.attn1.to_qk", "to_q"));
        assert!(!matches("a.attn1.xto_q", "to_q"));
    }

    #[test]
    fn fresh_pairs_are_kaiming_uniform_and_zero() {
        let shape = LayerShape::Conv {
            c_in: 16,
            c_out: 8,
            kernel: 3,
            stride: 1,
            padding: 1,
        };
        let (down, up) = new_pair(&shape, 4, tch::Device::Cpu);
        assert_eq!(down.size(), [4, 16, 3, 3]);
        assert_eq!(up.size(), [8, 4, 1, 1]);
        let bound = 1.0 / 144f64.sqrt();
        let max = f64::try_from(down.abs().max()).unwrap();
        assert!(max <= bound && max > 0.8 * bound, "{max} vs {bound}");
        assert_eq!(f64::try_from(up.abs().sum(Kind::Float)).unwrap(), 0.0);
        assert!(down.requires_grad() && up.requires_grad());
    }
}
