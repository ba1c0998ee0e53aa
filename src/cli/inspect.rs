//! `studioize inspect MODEL`: what each component is, its exact parameter count, dtype and files.
use super::args::ModelFiles;
use crate::pipelines::{LoadOptions, ModelLayout, StableDiffusion};
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A diffusers-layout folder (model_index.json), a single-file CompVis .safetensors, or a
    /// Hugging Face repo id (`ORG/NAME[@REVISION]`, from the hub cache or downloaded there).
    pub model: PathBuf,
    #[command(flatten)]
    pub files: ModelFiles,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<()> {
    // On the CPU in fp32 (the defaults): the numbers are those of the files.
    let opts = LoadOptions {
        variant: args.files.variant.clone(),
        config_dir: args.files.config.clone(),
        ..Default::default()
    };
    let sd = StableDiffusion::load(&args.model, &opts)?;
    let total: i64 = sd.components.iter().filter_map(|c| c.parameters).sum();
    if args.json {
        let comps: Vec<serde_json::Value> = sd
            .components
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name, "class": c.class, "parameters": c.parameters,
                    "dtype": c.stored_dtype, "files": c.files, "detail": c.detail,
                })
            })
            .collect();
        let v = serde_json::json!({ "model": args.model, "layout": layout_name(&sd.layout), "components": comps, "total_parameters": total });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("model:  {}", args.model.display());
    println!("layout: {}", layout_name(&sd.layout));
    println!();
    println!(
        "{:<13} {:<21} {:>12} {:>8}  {:<9} detail / files",
        "component", "class", "parameters", "", "dtype"
    );
    for c in &sd.components {
        let (params, human) = match c.parameters {
            Some(n) => (n.to_string(), format!("({})", human_count(n))),
            None => ("-".to_string(), String::new()),
        };
        println!(
            "{:<13} {:<21} {:>12} {:>8}  {:<9} {}",
            c.name,
            c.class,
            params,
            human,
            c.stored_dtype.as_deref().unwrap_or("-"),
            c.detail
        );
        for f in &c.files {
            println!(
                "{:<13} {:<21} {:>12} {:>8}  {:<9} {}",
                "",
                "",
                "",
                "",
                "",
                f.display()
            );
        }
    }
    println!();
    println!("total parameters: {total} ({})", human_count(total));
    Ok(())
}

fn layout_name(layout: &ModelLayout) -> String {
    match layout {
        ModelLayout::Diffusers { pipeline_class, .. } => {
            format!("diffusers folder ({pipeline_class})")
        }
        ModelLayout::SingleFile { config_dir, .. } => {
            format!(
                "single-file CompVis checkpoint (configs from {})",
                config_dir.display()
            )
        }
    }
}

/// 1234567 -> "1.23M".
pub fn human_count(n: i64) -> String {
    let f = n as f64;
    if f >= 1e9 {
        format!("{:.2}B", f / 1e9)
    } else if f >= 1e6 {
        format!("{:.2}M", f / 1e6)
    } else if f >= 1e3 {
        format!("{:.1}K", f / 1e3)
    } else {
        n.to_string()
    }
}
