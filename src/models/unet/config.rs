//! `unet/config.json` (diffusers' `UNet2DConditionModel`), restricted to the SD 1.x family.
use crate::models::config::{check_block_types, check_levels, read_validated, OneOrMany};
use crate::models::layers::Activation;
use anyhow::{bail, Result};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct UNetConfig {
    pub sample_size: i64,
    pub in_channels: i64,
    pub out_channels: i64,
    pub center_input_sample: bool,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f64,
    pub down_block_types: Vec<String>,
    pub mid_block_type: Option<String>,
    pub up_block_types: Vec<String>,
    pub block_out_channels: Vec<i64>,
    pub layers_per_block: OneOrMany,
    pub downsample_padding: i64,
    pub mid_block_scale_factor: f64,
    pub act_fn: Activation,
    pub norm_num_groups: i64,
    pub norm_eps: f64,
    pub cross_attention_dim: i64,
    pub transformer_layers_per_block: OneOrMany,
    /// In SD 1.x configs this is, confusingly, the number of heads (see [`UNetConfig::heads`]).
    pub attention_head_dim: OneOrMany,
    pub num_attention_heads: Option<OneOrMany>,
    pub use_linear_projection: bool,
    pub upcast_attention: bool,
    pub resnet_time_scale_shift: String,
    pub time_embedding_type: String,
    pub conv_in_kernel: i64,
    pub conv_out_kernel: i64,
    /// Every other key, checked by [`UNetConfig::validate`] for features not implemented.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Default for UNetConfig {
    /// The UNet of SD 1.x.
    fn default() -> Self {
        Self {
            sample_size: 64,
            in_channels: 4,
            out_channels: 4,
            center_input_sample: false,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            down_block_types: [
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "DownBlock2D",
            ]
            .map(String::from)
            .to_vec(),
            mid_block_type: Some("UNetMidBlock2DCrossAttn".into()),
            up_block_types: [
                "UpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
            ]
            .map(String::from)
            .to_vec(),
            block_out_channels: vec![320, 640, 1280, 1280],
            layers_per_block: OneOrMany::One(2),
            downsample_padding: 1,
            mid_block_scale_factor: 1.0,
            act_fn: Activation::Silu,
            norm_num_groups: 32,
            norm_eps: 1e-5,
            cross_attention_dim: 768,
            transformer_layers_per_block: OneOrMany::One(1),
            attention_head_dim: OneOrMany::One(8),
            num_attention_heads: None,
            use_linear_projection: false,
            upcast_attention: false,
            resnet_time_scale_shift: "default".into(),
            time_embedding_type: "positional".into(),
            conv_in_kernel: 3,
            conv_out_kernel: 3,
            extra: BTreeMap::new(),
        }
    }
}

/// Keys of diffusers' config that switch on features this UNet does not implement; each must be
/// absent, null or false (or the value given).
const UNSUPPORTED: [(&str, Option<&str>); 14] = [
    ("class_embed_type", None),
    ("num_class_embeds", None),
    ("addition_embed_type", None),
    ("encoder_hid_dim", None),
    ("encoder_hid_dim_type", None),
    ("time_cond_proj_dim", None),
    ("time_embedding_dim", None),
    ("time_embedding_act_fn", None),
    ("timestep_post_act", None),
    ("projection_class_embeddings_input_dim", None),
    ("dual_cross_attention", None),
    ("only_cross_attention", None),
    ("reverse_transformer_layers_per_block", None),
    ("attention_type", Some("default")),
];

impl UNetConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        read_validated(path, Self::validate)
    }

    pub fn levels(&self) -> usize {
        self.block_out_channels.len()
    }

    /// Heads per level: `num_attention_heads` if given, else `attention_head_dim` (diffusers'
    /// historical naming for SD 1.x).
    pub fn heads(&self) -> Vec<i64> {
        self.num_attention_heads
            .as_ref()
            .unwrap_or(&self.attention_head_dim)
            .per_block(self.levels())
    }

    pub fn layers(&self) -> Vec<i64> {
        self.layers_per_block.per_block(self.levels())
    }

    pub fn transformer_layers(&self) -> Vec<i64> {
        self.transformer_layers_per_block.per_block(self.levels())
    }

    /// `layers_per_block` when it is the same for every level (needed by CompVis conversion).
    pub fn layers_per_block_uniform(&self) -> Result<usize> {
        let l = self.layers();
        if l.windows(2).any(|w| w[0] != w[1]) {
            bail!("layers_per_block {l:?} differs between levels; not a SD 1.x layout");
        }
        Ok(l[0] as usize)
    }

    pub fn validate(&self) -> Result<()> {
        let n = self.levels();
        check_levels(n, &self.down_block_types, &self.up_block_types)?;
        let down = ["CrossAttnDownBlock2D", "DownBlock2D"];
        check_block_types("down_block_types", &self.down_block_types, &down)?;
        let up = ["CrossAttnUpBlock2D", "UpBlock2D"];
        check_block_types("up_block_types", &self.up_block_types, &up)?;
        match self.mid_block_type.as_deref() {
            Some("UNetMidBlock2DCrossAttn") => {}
            other => bail!("mid_block_type: {other:?} is not supported (UNetMidBlock2DCrossAttn)"),
        }
        let check_len = |name: &str, v: &OneOrMany| -> Result<()> {
            if let OneOrMany::Many(list) = v {
                if list.len() != n {
                    bail!("{name}: {list:?} must have one entry per level ({n})");
                }
            }
            Ok(())
        };
        check_len("attention_head_dim", &self.attention_head_dim)?;
        if let Some(h) = &self.num_attention_heads {
            check_len("num_attention_heads", h)?;
        }
        check_len("layers_per_block", &self.layers_per_block)?;
        check_len(
            "transformer_layers_per_block",
            &self.transformer_layers_per_block,
        )?;
        for (level, (&c, h)) in self.block_out_channels.iter().zip(self.heads()).enumerate() {
            if h <= 0 || c % h != 0 {
                bail!("attention heads {h} do not divide block_out_channels[{level}] = {c}");
            }
            if c % self.norm_num_groups != 0 {
                bail!(
                    "norm_num_groups {} does not divide block_out_channels[{level}] = {c}",
                    self.norm_num_groups
                );
            }
        }
        if self.act_fn != Activation::Silu {
            bail!("act_fn: '{}' is not supported (silu)", self.act_fn.name());
        }
        if self.resnet_time_scale_shift != "default" {
            bail!(
                "resnet_time_scale_shift: '{}' is not supported (default)",
                self.resnet_time_scale_shift
            );
        }
        if self.time_embedding_type != "positional" {
            bail!(
                "time_embedding_type: '{}' is not supported (positional)",
                self.time_embedding_type
            );
        }
        for (key, kernel) in [
            ("conv_in_kernel", self.conv_in_kernel),
            ("conv_out_kernel", self.conv_out_kernel),
        ] {
            if kernel % 2 != 1 {
                bail!("{key}: {kernel} must be odd");
            }
        }
        for (key, allowed) in UNSUPPORTED {
            match (self.extra.get(key), allowed) {
                (None | Some(Value::Null) | Some(Value::Bool(false)), _) => {}
                (Some(Value::String(s)), Some(ok)) if s == ok => {}
                (Some(v), _) => bail!("{key}: {v} is not supported by this UNet (SD 1.x family)"),
            }
        }
        Ok(())
    }
}
