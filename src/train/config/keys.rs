//! The config's key lists, read once from the schema structs themselves (see
//! [`super::introspect`]), so that a field added to a section is at once a known key for
//! `--set`, sweeps and suggestions, and a `PathBuf` field is at once made absolute on load.
use super::introspect::{self, Shape};
use super::ExperimentConfig;
use std::sync::OnceLock;

/// Sections a short key is looked up in first, in this order; the others follow in schema order.
const SHORT_KEY_FIRST: [&str; 2] = ["train", "data"];

/// The key lists of [`ExperimentConfig`].
struct Keys {
    /// Top-level keys that are values (`experiment`).
    top: Vec<String>,
    /// The fixed-key sections (`[model]`, `[data]`, ...) in schema order, with their keys.
    sections: Vec<(String, Vec<String>)>,
    /// Every top-level table, free-key ones (`[sweep]`) included, in schema order.
    tables: Vec<String>,
    /// Full dotted keys whose values are paths (or lists of paths).
    paths: Vec<String>,
}

impl Keys {
    fn from_schema() -> Keys {
        let shapes = introspect::record::<ExperimentConfig>()
            .unwrap_or_else(|e| panic!("the experiment config's schema cannot be recorded: {e}"));
        let mut keys = Keys {
            top: Vec::new(),
            sections: Vec::new(),
            tables: Vec::new(),
            paths: Vec::new(),
        };
        for (key, shape) in shapes {
            if shape == (Shape::Value { path: true }) {
                keys.paths.push(key.clone());
            }
            match (key.split_once('.'), shape) {
                (None, Shape::Value { .. }) => keys.top.push(key),
                (None, Shape::Table) => {
                    keys.tables.push(key.clone());
                    keys.sections.push((key, Vec::new()));
                }
                (None, Shape::Map) => keys.tables.push(key),
                (Some((section, rest)), Shape::Value { .. }) => {
                    if let Some((_, list)) = keys.sections.iter_mut().find(|(s, _)| s == section) {
                        list.push(rest.to_string());
                    }
                }
                // tables nested inside a section are not addressable keys themselves
                (Some(_), _) => {}
            }
        }
        keys
    }

    fn section(&self, name: &str) -> Option<&[String]> {
        self.sections
            .iter()
            .find(|(s, _)| s == name)
            .map(|(_, k)| k.as_slice())
    }
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(Keys::from_schema)
}

/// Resolves a short (`learning_rate`, looked up in `[train]` first, then the other sections) or
/// dotted (`train.warmup_steps`) key to its full dotted form; `None` when no such key exists.
pub fn resolve_key(key: &str) -> Option<String> {
    let key = key.trim();
    let k = keys();
    if k.top.iter().any(|t| t == key) {
        return Some(key.to_string());
    }
    match key.split_once('.') {
        Some((section, rest)) => k
            .section(section)
            .is_some_and(|list| list.iter().any(|f| f == rest))
            .then(|| key.to_string()),
        None => {
            let first = SHORT_KEY_FIRST.iter().copied();
            let rest = k
                .sections
                .iter()
                .map(|(s, _)| s.as_str())
                .filter(|s| !SHORT_KEY_FIRST.contains(s));
            first
                .chain(rest)
                .find(|s| k.section(s).is_some_and(|l| l.iter().any(|f| f == key)))
                .map(|s| format!("{s}.{key}"))
        }
    }
}

/// The top-level table names (`model`, ..., `sweep`), for suggestions.
pub(super) fn table_names() -> &'static [String] {
    &keys().tables
}

/// The full dotted keys whose values are paths.
pub(super) fn path_keys() -> &'static [String] {
    &keys().paths
}

/// Whether a full dotted key holds a path (or a list of paths).
pub(super) fn is_path_key(key: &str) -> bool {
    path_keys().iter().any(|k| k == key)
}

impl ExperimentConfig {
    /// Every full dotted key the config accepts (sweep keys excepted), in schema order.
    pub fn known_keys() -> Vec<String> {
        let k = keys();
        let mut out = k.top.clone();
        for (s, list) in &k.sections {
            out.extend(list.iter().map(|f| format!("{s}.{f}")));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_and_tables_follow_the_schema() {
        let k = keys();
        assert_eq!(k.top, ["experiment"]);
        let sections: Vec<&str> = k.sections.iter().map(|(s, _)| s.as_str()).collect();
        let fixed = [
            "model",
            "data",
            "train",
            "monitor",
            "output",
            "lora",
            "dreambooth",
            "textual_inversion",
        ];
        assert_eq!(sections, fixed);
        // the free-key [sweep] is a table but not a section
        assert_eq!(k.tables, [&fixed[..], &["sweep"]].concat());
        assert_eq!(
            k.section("model").unwrap(),
            ["base", "config", "variant", "weights_dtype"]
        );
        assert_eq!(k.section("output").unwrap(), ["dir"]);
    }

    #[test]
    fn path_keys_are_the_pathbuf_fields() {
        let mut got: Vec<&str> = path_keys().iter().map(String::as_str).collect();
        got.sort();
        assert_eq!(
            got,
            [
                "data.captions",
                "data.images",
                "data.prior_captions",
                "data.prior_images",
                "data.validation_captions",
                "data.validation_images",
                "dreambooth.class_images",
                "model.base",
                "model.config",
                "output.dir",
                "train.validation_inputs",
            ]
        );
    }
}
