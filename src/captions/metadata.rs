//! Product metadata joined to images by file name, for caption templates. Any CSV with a header
//! works; a Shopify product export is the main case: its `Title`, `Type`, `Vendor`, `Tags`
//! (and every other column) become template fields named in lower snake case (`Body (HTML)`
//! becomes `body_html`), HTML is stripped, and the extra rows Shopify writes for a product's
//! further images and variants (same `Handle`, empty `Title`) inherit the product's fields.
//!
//! An image matches a row by, in order: the `file_name` column (relative path, then base
//! name), the base name of `Image Src` / `Variant Image` URLs, or its file stem equal to the
//! `Handle`.
use anyhow::{anyhow, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub type Fields = BTreeMap<String, String>;

#[derive(Debug, Default)]
pub struct Metadata {
    by_key: HashMap<String, usize>,
    by_handle: HashMap<String, usize>,
    rows: Vec<Fields>,
    /// Field names, for messages.
    pub columns: Vec<String>,
}

/// `Body (HTML)` → `body_html`, `Image Src` → `image_src`.
pub fn field_name(column: &str) -> String {
    let mut out = String::new();
    for c in column.trim().chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_string()
}

/// Text without HTML tags and entities for the common cases, whitespace collapsed.
pub fn clean_text(s: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    let out = out
        .replace("&amp;", "&")
        .replace("&nbsp;", " ")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">");
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn url_basename(s: &str) -> Option<String> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let s = s.split(['?', '#']).next().unwrap_or(s);
    s.rsplit('/').next().map(str::to_lowercase)
}

impl Metadata {
    pub fn read(path: &Path) -> Result<Self> {
        let file = path.display();
        // A byte order mark (Excel) is dropped, an unbalanced quote refused.
        let bytes = crate::data::captions::read_csv_bytes(path)?;
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(bytes.as_slice());
        let headers: Vec<String> = reader
            .headers()
            .with_context(|| format!("{file}: cannot read the CSV header"))?
            .iter()
            .map(field_name)
            .collect();
        let mut meta = Metadata {
            columns: headers.clone(),
            ..Default::default()
        };
        for rec in reader.records() {
            let rec = rec.with_context(|| format!("{file}: malformed CSV"))?;
            let mut fields: Fields = headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.clone(), clean_text(v)))
                .collect();
            let handle = fields.get("handle").cloned().unwrap_or_default();
            if !handle.is_empty() {
                if let Some(&first) = meta.by_handle.get(&handle) {
                    // A further image / variant row: inherit the product's non-empty fields.
                    for (k, v) in &meta.rows[first] {
                        let slot = fields.entry(k.clone()).or_default();
                        if slot.is_empty() {
                            slot.clone_from(v);
                        }
                    }
                }
            }
            let idx = meta.rows.len();
            let mut keys = Vec::new();
            if let Some(f) = fields.get("file_name").filter(|f| !f.is_empty()) {
                let f = crate::data::captions::normalize_file_name(f).to_lowercase();
                keys.extend(url_basename(&f));
                keys.push(f);
            }
            for col in ["image_src", "variant_image"] {
                keys.extend(fields.get(col).and_then(|u| url_basename(u)));
            }
            for k in keys {
                meta.by_key.entry(k).or_insert(idx);
            }
            if !handle.is_empty() {
                meta.by_handle.entry(handle.to_lowercase()).or_insert(idx);
            }
            meta.rows.push(fields);
        }
        if meta.rows.is_empty() {
            return Err(anyhow!("{file}: the metadata CSV has no rows"));
        }
        Ok(meta)
    }

    /// The fields for an image, by its CSV `file_name`.
    pub fn lookup(&self, file_name: &str) -> Option<&Fields> {
        let lower = file_name.to_lowercase();
        let base = lower.rsplit('/').next().unwrap_or(&lower).to_string();
        let stem = Path::new(&base)
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        self.by_key
            .get(&lower)
            .or_else(|| self.by_key.get(&base))
            .or_else(|| self.by_handle.get(&stem))
            .map(|&i| &self.rows[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shopify_rows_join_by_image_url_and_handle_and_inherit_the_product() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("products.csv");
        std::fs::write(
            &p,
            "Handle,Title,Body (HTML),Vendor,Type,Tags,Image Src\n\
             leather-bag,Leather Bag,<p>Soft <b>brown</b> leather</p>,Acme,Bags,\"leather, brown\",https://cdn.shopify.com/s/files/1/products/bag-1.jpg?v=17\n\
             leather-bag,,,,,,https://cdn.shopify.com/s/files/1/products/bag-2.jpg?v=17\n\
             mug,Blue Mug,,Potter &amp; Co,Kitchen,,\n",
        )
        .unwrap();
        let m = Metadata::read(&p).unwrap();
        let a = m.lookup("shop/bag-1.jpg").unwrap();
        assert_eq!(a["title"], "Leather Bag");
        assert_eq!(a["body_html"], "Soft brown leather");
        let b = m.lookup("BAG-2.JPG").unwrap();
        assert_eq!(
            (b["title"].as_str(), b["vendor"].as_str()),
            ("Leather Bag", "Acme")
        );
        assert_eq!(b["tags"], "leather, brown");
        let c = m.lookup("photos/mug.png").unwrap();
        assert_eq!(c["vendor"], "Potter & Co");
        assert!(m.lookup("other.png").is_none());
    }

    #[test]
    fn column_names_become_snake_case_fields() {
        assert_eq!(field_name("Body (HTML)"), "body_html");
        assert_eq!(field_name(" Variant SKU "), "variant_sku");
        assert_eq!(field_name("file_name"), "file_name");
    }
}
