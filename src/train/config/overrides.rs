//! `--set key=value` overrides, applied to the config's TOML table before it is deserialized:
//! keys are dotted (`train.learning_rate`), short (`learning_rate`) or sweep keys
//! (`sweep.learning_rate`); values are TOML scalars or arrays, anything unparsable a bare string.
use super::errors::suggestion;
use super::keys::{is_path_key, resolve_key};
use super::paths::resolve_path_value;
use anyhow::{anyhow, bail, Result};
use std::path::Path;
use toml::{Table, Value};

/// Parses a `--set` value: a TOML scalar or array, or else a bare string.
fn parse_override_value(raw: &str) -> Result<Value> {
    let raw = raw.trim();
    match format!("v = {raw}").parse::<Table>() {
        Ok(mut t) => Ok(t.remove("v").expect("parsed key")),
        Err(e) => {
            if raw.starts_with(['"', '\'', '[', '{']) {
                bail!("cannot parse value `{raw}`: {}", e.message());
            }
            Ok(Value::String(raw.to_string()))
        }
    }
}

/// Applies one `key=value` override; returns the full dotted key.
pub(super) fn apply_override(table: &mut Table, ov: &str, cwd: &Path) -> Result<String> {
    let (key, raw) = ov
        .split_once('=')
        .ok_or_else(|| anyhow!("--set {ov}: bad override, expected key=value"))?;
    let key = key.trim();
    if key.is_empty() {
        bail!("--set {ov}: bad override, the key is empty");
    }
    let full = if let Some(rest) = key.strip_prefix("sweep.") {
        if rest.is_empty() {
            bail!("--set {ov}: bad override, no key after 'sweep.'");
        }
        key.to_string()
    } else {
        resolve_key(key)
            .ok_or_else(|| anyhow!("--set {key}: unknown key '{key}'{}", suggestion(key)))?
    };
    let mut value = parse_override_value(raw).map_err(|e| anyhow!("--set {full}: {e}"))?;
    let path_key = match full.strip_prefix("sweep.") {
        Some(k) => resolve_key(k),
        None => Some(full.clone()),
    };
    if let Some(k) = path_key.filter(|k| is_path_key(k)) {
        resolve_path_value(&mut value, cwd, &k);
    }
    set_dotted(table, &full, value).map_err(|e| anyhow!("--set {full}: {e}"))?;
    Ok(full)
}

/// Sets a dotted key in `table`, creating the tables on the way; a `sweep.` key sets one entry
/// of `[sweep]`, whatever dots the swept key has itself.
pub(super) fn set_dotted(table: &mut Table, key: &str, value: Value) -> Result<()> {
    let mut parts: Vec<&str> = key.split('.').collect();
    // sweep keys may be dotted themselves: `sweep.train.learning_rate` sets one sweep entry
    if parts.len() > 2 && parts[0] == "sweep" {
        let rest = parts[1..].join(".");
        let sweep = table
            .entry("sweep")
            .or_insert_with(|| Value::Table(Table::new()));
        let Value::Table(s) = sweep else {
            bail!("'sweep' is not a table")
        };
        s.insert(rest, value);
        return Ok(());
    }
    let last = parts.pop().expect("non-empty key");
    let mut cur = table;
    for (i, p) in parts.iter().enumerate() {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        cur = match entry {
            Value::Table(t) => t,
            _ => bail!("'{}' is not a table", parts[..=i].join(".")),
        };
    }
    cur.insert(last.to_string(), value);
    Ok(())
}
