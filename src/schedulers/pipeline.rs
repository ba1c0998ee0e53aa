//! The scheduler a diffusers Stable Diffusion pipeline runs. `StableDiffusionPipeline.__init__`
//! (and img2img's) rewrites an "outdated" config of the scheduler it is built with:
//! `steps_offset` other than 1 becomes 1 and `clip_sample` true becomes false. That scheduler
//! is the model's own class; a sampler swapped in afterwards
//! (`Class.from_config(pipe.scheduler.config)`) sees the rewritten values only for the keys the
//! file has, since the keys its first class filled in from defaults are dropped again
//! (`_use_default_values`) and take the new class's defaults.
use super::config::SchedulerConfig;
use super::{build, sampler_for_class, Scheduler};
use anyhow::Result;

/// A value the pipeline rewrote, for a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub key: &'static str,
    pub from: String,
    pub to: String,
}

/// The sampler `name` (or, with `None`, the model's own class, as `from_pretrained` builds the
/// pipeline; naming that class's sampler is the same) on `cfg` as the pipeline holds it, its
/// `--sampler` name, and the values diffusers' pipeline rewrote (it warns about them).
pub fn for_pipeline(
    cfg: &SchedulerConfig,
    name: Option<&str>,
) -> Result<(Box<dyn Scheduler>, String, Vec<Rewrite>)> {
    let own = sampler_for_class(cfg);
    let mut rewrites = Vec::new();
    let mut file = cfg.clone();
    if let Some(v) = file.steps_offset.filter(|&v| v != 1) {
        rewrites.push(rewrite("steps_offset", v, 1));
        file.steps_offset = Some(1);
    }
    if file.clip_sample == Some(true) {
        rewrites.push(rewrite("clip_sample", true, false));
        file.clip_sample = Some(false);
    }
    let name = match name {
        Some(n) => n,
        None => own.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let mut r = file.for_sampler(name)?;
    if own.as_ref().ok() == Some(&name) {
        // The pipeline's own scheduler: the values its class filled in are rewritten too.
        if r.steps_offset != 1 {
            rewrites.push(rewrite("steps_offset", r.steps_offset, 1));
            r.steps_offset = 1;
        }
        if r.clip_sample {
            rewrites.push(rewrite("clip_sample", true, false));
            r.clip_sample = false;
        }
    }
    Ok((build(&r)?, name.to_string(), rewrites))
}

fn rewrite(key: &'static str, from: impl ToString, to: impl ToString) -> Rewrite {
    Rewrite {
        key,
        from: from.to_string(),
        to: to.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(cfg: &SchedulerConfig, name: Option<&str>) -> (f64, usize) {
        let (mut s, _, rw) = for_pipeline(cfg, name).unwrap();
        s.set_timesteps(10).unwrap();
        (s.timesteps()[s.timesteps().len() - 1], rw.len())
    }

    #[test]
    fn outdated_values_are_rewritten_as_the_pipeline_does() {
        let mut c = SchedulerConfig::sd14();
        c.steps_offset = None;
        // Own class (PNDM): the default 0 is rewritten to 1; DDIM swapped in: its default 0.
        assert_eq!(offsets(&c, None), (1.0, 1));
        assert_eq!(offsets(&c, Some("ddim")), (0.0, 0));
        // Present in the file: rewritten for every sampler.
        c.steps_offset = Some(0);
        assert_eq!(offsets(&c, Some("ddim")), (1.0, 1));
        c.steps_offset = Some(1);
        c.class_name = Some("DDIMScheduler".into());
        c.clip_sample = None;
        let (_, _, rw) = for_pipeline(&c, None).unwrap();
        assert_eq!(rw, vec![rewrite("clip_sample", true, false)]);
        assert!(for_pipeline(&c, Some("pndm")).unwrap().2.is_empty());
    }
}
