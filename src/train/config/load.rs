//! Loading: file -> TOML table -> absolute paths -> `--set` overrides -> defaults that depend on
//! other keys -> typed config -> validation (sweep points included); and the way back, the
//! resolved config as TOML.
use super::errors::{describe_de_error, suggestion};
use super::keys::resolve_key;
use super::overrides::apply_override;
use super::paths::{absolute, resolve_table_paths};
use super::ExperimentConfig;
use anyhow::{anyhow, Context, Result};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::Path;
use toml::{Table, Value};

impl ExperimentConfig {
    /// Reads the TOML file, applies `--set key=value` overrides (dotted or short keys; values
    /// parsed as TOML scalars/arrays, anything unparsable taken as a bare string), validates.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).with_context(|| format!("{file}: cannot read"))?;
        let mut table: Table = text
            .parse()
            .map_err(|e: toml::de::Error| anyhow!("{file}: {}", e.to_string().trim_end()))?;
        let folder = absolute(path.parent().unwrap_or(Path::new("")))
            .with_context(|| format!("{file}: cannot resolve the file's folder"))?;
        let cwd = absolute(Path::new("")).context("cannot resolve the current folder")?;

        if !table.contains_key("experiment") {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("experiment");
            table.insert("experiment".into(), Value::String(stem.to_string()));
        }
        resolve_table_paths(&mut table, &folder);

        let mut from_overrides = BTreeSet::new();
        for ov in overrides {
            let key = apply_override(&mut table, ov, &cwd).map_err(|e| anyhow!("{file}: {e}"))?;
            from_overrides.insert(key);
        }

        if !table
            .get("output")
            .and_then(|o| o.as_table())
            .is_some_and(|o| o.contains_key("dir"))
        {
            if let Some(Value::String(name)) = table.get("experiment") {
                let dir = cwd.join("runs").join(name).display().to_string();
                let output = table
                    .entry("output")
                    .or_insert_with(|| Value::Table(Table::new()));
                if let Value::Table(o) = output {
                    o.insert("dir".into(), Value::String(dir));
                }
            }
        }

        let mut cfg = ExperimentConfig::deserialize(Value::Table(table))
            .map_err(|e| anyhow!("{file}: {}", describe_de_error(&e, &from_overrides)))?;
        cfg.finish().map_err(|e| anyhow!("{file}: {e}"))?;
        Ok(cfg)
    }

    /// Resolves sweep keys and validates everything, sweep points included.
    fn finish(&mut self) -> Result<()> {
        if let Some(sweep) = &mut self.sweep {
            for (k, _) in &mut sweep.params {
                *k = resolve_key(k)
                    .ok_or_else(|| anyhow!("sweep: unknown key '{k}'{}", suggestion(k)))?;
            }
            // TOML tables do not keep the file's order: use the order of the full keys
            sweep.params.sort_by(|a, b| a.0.cmp(&b.0));
        }
        // write the split in force into the resolved config; a DreamBooth run without one
        // decides when it sees its instance set (a tiny one is validated on itself)
        if self.dreambooth.is_none() || self.data.validation_images.is_some() {
            self.data.validation_split_setting = Some(self.data.validation_split());
        }
        self.validate()?;
        self.sweep_points()?;
        Ok(())
    }

    /// The resolved config as TOML (written into a run folder as `config.toml`).
    pub fn to_toml(&self) -> String {
        let body =
            toml::to_string_pretty(self).expect("an experiment config always serializes to TOML");
        format!(
            "# Resolved experiment config written by studioize; all paths are absolute.\n{body}"
        )
    }
}
