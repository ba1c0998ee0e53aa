//! Caption templates: `{title}, {caption}, professional studio product photo`. `{caption}` is
//! the model's caption; every other `{field}` comes from the product metadata (see
//! `metadata`). A comma-separated part that is left empty because its fields are empty for an
//! image is dropped, so `{title}, {caption}` without a title gives just the caption.
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(String),
}

#[derive(Debug, Clone)]
pub struct Template {
    pieces: Vec<Piece>,
    pub source: String,
}

impl Template {
    /// A template string, or the path of a template file (its first line that is neither empty
    /// nor a `#` comment).
    pub fn from_arg(arg: &str) -> Result<Self> {
        let path = Path::new(arg);
        if path.is_file() {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("{}: cannot read template", path.display()))?;
            let line = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
                .with_context(|| {
                    format!("{}: the template file has no template line", path.display())
                })?;
            return Self::parse(line)
                .with_context(|| format!("{}: invalid template", path.display()));
        }
        Self::parse(arg)
    }

    pub fn parse(text: &str) -> Result<Self> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let Some(close) = rest[open..].find('}') else {
                bail!("template {text:?}: '{{' without a closing '}}'");
            };
            let name = rest[open + 1..open + close].trim();
            if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                bail!("template {text:?}: '{{{name}}}' is not a field name");
            }
            pieces.push(Piece::Field(name.to_lowercase()));
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            bail!("template {text:?}: '}}' without an opening '{{'");
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Self {
            pieces,
            source: text.to_string(),
        })
    }

    /// Field names used, besides `caption`.
    pub fn fields(&self) -> Vec<&str> {
        self.pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Field(f) if f != "caption" => Some(f.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Checks that every field exists among `columns` (the metadata's).
    pub fn check_fields(&self, columns: &[String], metadata_file: Option<&Path>) -> Result<()> {
        for f in self.fields() {
            if !columns.iter().any(|c| c == f) {
                match metadata_file {
                    None => bail!(
                        "template {:?} uses {{{f}}} but no --metadata CSV was given",
                        self.source
                    ),
                    Some(m) => bail!(
                        "{}: no column for template field {{{f}}} (fields: caption, {})",
                        m.display(),
                        columns.join(", ")
                    ),
                }
            }
        }
        Ok(())
    }

    pub fn render(&self, caption: &str, fields: Option<&BTreeMap<String, String>>) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(f) if f == "caption" => out.push_str(caption.trim()),
                Piece::Field(f) => {
                    if let Some(v) = fields.and_then(|m| m.get(f)) {
                        out.push_str(v.trim());
                    }
                }
            }
        }
        out.split(',')
            .map(|part| part.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn renders_fields_and_drops_empty_parts() {
        let t = Template::parse("{title}, {caption}, {Tags},  professional studio product photo")
            .unwrap();
        assert_eq!(t.fields(), vec!["title", "tags"]);
        let f = fields(&[("title", "Leather Bag"), ("tags", "")]);
        assert_eq!(
            t.render("a brown bag on a table", Some(&f)),
            "Leather Bag, a brown bag on a table, professional studio product photo"
        );
        assert_eq!(
            t.render("a mug", None),
            "a mug, professional studio product photo"
        );
    }

    #[test]
    fn bad_templates_and_unknown_fields_are_errors() {
        assert!(Template::parse("{title, {caption}").is_err());
        assert!(Template::parse("caption}").is_err());
        assert!(Template::parse("{}").is_err());
        let t = Template::parse("{vendor} {caption}").unwrap();
        let err = t
            .check_fields(&["title".into()], Some(Path::new("p.csv")))
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("p.csv") && err.to_string().contains("{vendor}"),
            "{err}"
        );
        assert!(t.check_fields(&[], None).is_err());
        assert!(t
            .check_fields(&["vendor".into()], Some(Path::new("p.csv")))
            .is_ok());
    }
}
