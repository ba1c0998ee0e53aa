//! Sweep expansion: `[sweep]` lists combined (grid or zip) into [`SweepPoint`]s, each with a
//! file-name-safe id (`lr=3e-06,warmup=100`, floats written like Python's `repr`) and its own
//! config under `<output.dir>/<id>`. A zip sweep over a path key whose folder names tell its
//! points apart (a catalogue: `data.images` over product folders, zipped with their prompts)
//! names each point by that folder name alone (`mug-red`).
use super::errors::describe_de_error;
use super::keys::{is_path_key, resolve_key};
use super::overrides::set_dotted;
use super::{ExperimentConfig, SweepMode};
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::Path;
use toml::Value;

/// One point of a sweep: its id (a file-name-safe `lr=3e-06,warmup=100`, empty without a
/// sweep) and its config (no sweep, `output.dir` = `<output.dir>/<id>`).
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPoint {
    pub id: String,
    pub config: ExperimentConfig,
}

/// A short, readable name for a swept key, used in sweep point ids.
fn short_name(full_key: &str) -> String {
    let last = full_key.rsplit('.').next().unwrap_or(full_key);
    let s = match last {
        "learning_rate" => "lr",
        "warmup_steps" => "warmup",
        "batch_size" => "bs",
        "gradient_accumulation" => "accum",
        "lr_schedule" => "sched",
        "adam_weight_decay" => "wd",
        "adam_beta1" => "b1",
        "adam_beta2" => "b2",
        "adam_epsilon" => "eps",
        "max_grad_norm" => "clip",
        "ema_decay" => "ema_decay",
        "snr_gamma" => "snr",
        "noise_offset" => "noise",
        "prediction_type" => "pred",
        "mixed_precision" => "prec",
        "train_text_encoder" => "te",
        "caption_dropout" => "cdrop",
        "resolution" => "res",
        "validation_split" => "vsplit",
        other => other,
    };
    s.to_string()
}

impl ExperimentConfig {
    /// Expands the sweep into its points (see [`SweepPoint`]); without a sweep, one point with
    /// id "" and the config unchanged.
    pub fn sweep_points(&self) -> Result<Vec<SweepPoint>> {
        let Some(sweep) = &self.sweep else {
            return Ok(vec![SweepPoint {
                id: String::new(),
                config: self.clone(),
            }]);
        };
        let keys: Vec<String> = sweep
            .params
            .iter()
            .map(|(k, _)| resolve_key(k).ok_or_else(|| anyhow!("sweep: unknown key '{k}'")))
            .collect::<Result<_>>()?;
        let lens: Vec<usize> = sweep.params.iter().map(|(_, v)| v.len()).collect();
        let combos = combinations(sweep.mode, &keys, &lens)?;
        let names = id_names(&keys);
        let label = folder_label_key(sweep.mode, &keys, &sweep.params);
        let base = match Value::try_from(self).context("cannot serialize the config")? {
            Value::Table(t) => t,
            _ => unreachable!("a struct serializes to a table"),
        };
        let mut used = BTreeSet::new();
        let mut points = Vec::with_capacity(combos.len());
        for combo in combos {
            let mut table = base.clone();
            table.remove("sweep");
            let mut parts = Vec::new();
            for (j, &i) in combo.iter().enumerate() {
                let value = sweep.params[j].1[i].clone();
                parts.push(format!("{}={}", names[j], id_value(&value)));
                set_dotted(&mut table, &keys[j], value)
                    .map_err(|e| anyhow!("sweep.{}: {e}", keys[j]))?;
            }
            let id = match label {
                Some(j) => id_value(&sweep.params[j].1[combo[j]]),
                None => parts.join(","),
            };
            let id = unique_id(sanitize(&id), &mut used);
            let mut config = ExperimentConfig::deserialize(Value::Table(table)).map_err(|e| {
                anyhow!(
                    "sweep point {id}: {}",
                    describe_de_error(&e, &BTreeSet::new())
                )
            })?;
            config.output.dir = self.output.dir.join(&id);
            config
                .validate()
                .map_err(|e| anyhow!("sweep point {id}: {e}"))?;
            points.push(SweepPoint { id, config });
        }
        Ok(points)
    }
}

/// In a zip sweep, the first swept path key whose values' folder names are all different and
/// non-empty: those names alone are the point ids (the other zipped values follow from them).
fn folder_label_key(
    mode: SweepMode,
    keys: &[String],
    params: &[(String, Vec<Value>)],
) -> Option<usize> {
    if mode != SweepMode::Zip {
        return None;
    }
    (0..keys.len()).find(|&j| {
        let ids: Vec<String> = params[j].1.iter().map(id_value).collect();
        let distinct: BTreeSet<&String> = ids.iter().collect();
        is_path_key(&keys[j])
            && params[j].1.iter().all(Value::is_str)
            && ids.iter().all(|i| !i.is_empty())
            && distinct.len() == ids.len()
    })
}

/// The value indices of every point: every combination, the first key varying slowest (grid),
/// or the i-th value of every list together (zip; lists of one length).
fn combinations(mode: SweepMode, keys: &[String], lens: &[usize]) -> Result<Vec<Vec<usize>>> {
    Ok(match mode {
        SweepMode::Zip => {
            let n = lens[0];
            if let Some(i) = lens.iter().position(|&l| l != n) {
                bail!(
                    "sweep.{}: zip mode needs lists of one length, but {} has {} values and {} has {n}",
                    keys[i],
                    keys[i],
                    lens[i],
                    keys[0]
                );
            }
            (0..n).map(|i| vec![i; keys.len()]).collect()
        }
        SweepMode::Grid => {
            let mut out = vec![vec![]];
            for &l in lens {
                out = out
                    .into_iter()
                    .flat_map(|prefix: Vec<usize>| {
                        (0..l).map(move |i| {
                            let mut p = prefix.clone();
                            p.push(i);
                            p
                        })
                    })
                    .collect();
            }
            out
        }
    })
}

/// The name of each swept key in point ids: its short name ([`short_name`]), or the full key
/// where two swept keys share a short name.
fn id_names(keys: &[String]) -> Vec<String> {
    let mut names: Vec<String> = keys.iter().map(|k| short_name(k)).collect();
    for i in 0..names.len() {
        if names.iter().filter(|n| **n == names[i]).count() > 1 {
            names[i] = keys[i].clone();
        }
    }
    names
}

/// `id`, or `id_2`, `id_3`, ... when it is taken already; marks the result as taken.
fn unique_id(id: String, used: &mut BTreeSet<String>) -> String {
    if used.insert(id.clone()) {
        return id;
    }
    let mut n = 2;
    while used.contains(&format!("{id}_{n}")) {
        n += 1;
    }
    let id = format!("{id}_{n}");
    used.insert(id.clone());
    id
}

/// A value as it appears in a sweep point id (floats like Python's repr: `3e-06`, `0.0001`).
fn id_value(v: &Value) -> String {
    match v {
        Value::Float(x) => py_float(*x),
        Value::Integer(i) => i.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::String(s) => {
            // paths: the last component is what tells points apart
            let p = Path::new(s);
            if p.is_absolute() {
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| s.clone())
            } else {
                s.clone()
            }
        }
        Value::Array(a) => a.iter().map(id_value).collect::<Vec<_>>().join("+"),
        other => other.to_string(),
    }
}

/// Formats a float like Python's `repr`.
pub fn py_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{:e}", x.abs()); // shortest round-trip digits: "3e-6", "1.2345e2"
    let (mant, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let sign = if x < 0.0 { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let s = if exp >= 0 {
            let e = exp as usize;
            if digits.len() > e + 1 {
                format!("{}.{}", &digits[..=e], &digits[e + 1..])
            } else {
                format!("{}{}.0", digits, "0".repeat(e + 1 - digits.len()))
            }
        } else {
            format!("0.{}{}", "0".repeat((-exp - 1) as usize), digits)
        };
        format!("{sign}{s}")
    } else {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits
        };
        let es = if exp < 0 { "-" } else { "+" };
        format!("{sign}{m}e{es}{:02}", exp.abs())
    }
}

/// Replaces every character outside `[A-Za-z0-9-_.+=,]` by `_` (ids are folder names).
fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.+=,".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
