//! Error messages of loading: serde/toml deserialization errors rewritten into "key: what is
//! wrong" with the dotted key named, and "did you mean" suggestions for near-miss keys.
use super::keys::table_names;
use super::ExperimentConfig;
use std::collections::BTreeSet;

/// The Levenshtein distance between two strings, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

/// ", did you mean 'train.learning_rate'?" for a near miss, else "".
pub(super) fn suggestion(key: &str) -> String {
    let mut candidates = ExperimentConfig::known_keys();
    candidates.extend(table_names().iter().cloned());
    let best = candidates
        .iter()
        .map(|c| {
            let short = c.rsplit('.').next().unwrap_or(c);
            (edit_distance(key, c).min(edit_distance(key, short)), c)
        })
        .min();
    match best {
        Some((d, c)) if d <= 3 && d * 3 <= key.len() => format!(", did you mean '{c}'?"),
        _ => String::new(),
    }
}

/// Rewrites a serde/toml error into "key: what is wrong", naming the dotted key.
pub(super) fn describe_de_error(e: &toml::de::Error, from_overrides: &BTreeSet<String>) -> String {
    let shown = e.to_string();
    let shown = shown.trim_end();
    let (msg, path) = match shown.rsplit_once("\nin `") {
        Some((m, p)) => (m.trim().to_string(), p.trim_end_matches('`').to_string()),
        None => (e.message().trim().to_string(), String::new()),
    };
    let join = |field: &str| {
        if path.is_empty() {
            field.to_string()
        } else {
            format!("{path}.{field}")
        }
    };
    let origin = |key: &str| {
        if from_overrides.contains(key) {
            "--set "
        } else {
            ""
        }
    };

    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        let key = join(field);
        return format!("unknown key '{key}'{}", suggestion(&key));
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        return format!("missing key '{}'", join(field));
    }
    let key = if path.is_empty() {
        "(top level)".to_string()
    } else {
        path.clone()
    };
    for prefix in ["invalid type: ", "invalid value: "] {
        let parts = msg
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once(", expected "));
        if let Some((found, expected)) = parts {
            return format!(
                "{}{key}: expected {}, found {}",
                origin(&key),
                expected_words(expected),
                found_words(found)
            );
        }
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        return format!("{}{key}: bad value {rest}", origin(&key));
    }
    format!("{}{key}: {msg}", origin(&key))
}

/// serde's "expected ..." in the words of the config (`u64`: a non-negative integer).
fn expected_words(e: &str) -> String {
    let e = e.trim();
    match e {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" => "a boolean (true or false)".into(),
        "a string" | "path string" => "a string".into(),
        "a sequence" => "a list".into(),
        _ if e.starts_with("struct ") || e.starts_with("a table") || e == "a map" => {
            "a table".into()
        }
        _ if e.starts_with("enum ") => "one of the documented values".into(),
        _ => e.to_string(),
    }
}

/// serde's "found ..." in the words of the config (`map`: a table).
fn found_words(f: &str) -> String {
    let f = f.trim();
    if f == "map" {
        "a table".into()
    } else if f == "sequence" {
        "a list".into()
    } else if let Some(v) = f.strip_prefix("floating point ") {
        format!("float {v}")
    } else {
        f.to_string()
    }
}
