//! The studio-ize metrics of a comparison in the report: when a `compare` folder holds the means
//! table of `studioize evaluate --outputs <compare> --out <compare>/metrics.csv`
//! (`metrics-summary.csv`), its rows (one per run and checkpoint) as a table and as a chart of
//! each metric against the step.
use super::html::{escape, png_data_uri};
use crate::plot::metrics::{draw_metrics, MetricsTable, SUMMARY_CSV};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::io::Cursor;
use std::path::Path;

/// Header text of a metric column.
fn title(column: &str) -> &str {
    match column {
        "background_cleanliness_in" => "background cleanliness, input",
        "background_cleanliness_out" => "background cleanliness, output",
        "delta_e2000" => "product Delta E 2000",
        "ssim_product" => "product SSIM",
        "psnr_reference" => "PSNR to studio (dB)",
        "ssim_reference" => "SSIM to studio",
        other => other,
    }
}

fn cell(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.is_infinite() => "inf".into(),
        Some(v) => format!("{v:.3}"),
    }
}

/// The table and chart of `dir`'s metrics, or a hint how to add them when it has none.
pub fn section(dir: &Path) -> Result<String> {
    let path = dir.join(SUMMARY_CSV);
    if !path.is_file() {
        return Ok(format!(
            "<p class=\"meta\">No studio-ize metrics for this comparison: <code>studioize evaluate --inputs INPUTS --outputs {} --out {}</code> adds them.</p>\n",
            escape(&dir.display().to_string()),
            escape(&dir.join("metrics.csv").display().to_string())
        ));
    }
    let table = MetricsTable::read(&path)?;
    let mut h = String::from("<table class=\"metrics\">\n<tr><th>run</th><th>checkpoint</th><th>step</th><th>images</th>");
    for c in &table.columns {
        let _ = write!(h, "<th>{}</th>", escape(title(c)));
    }
    h.push_str("</tr>\n");
    for r in &table.rows {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            escape(&r.run),
            escape(&r.checkpoint),
            r.step.map_or("-".into(), |s| s.to_string()),
            r.images
        );
        for v in &r.values {
            let _ = write!(h, "<td>{}</td>", cell(*v));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
    match draw_metrics(&table) {
        Ok(img) => {
            let mut png = Vec::new();
            img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
                .with_context(|| format!("{}: cannot encode the metrics chart", path.display()))?;
            let _ = writeln!(
                h,
                "<figure><img src=\"{}\" alt=\"studio-ize metrics per checkpoint\"><figcaption>{}</figcaption></figure>",
                png_data_uri(&png),
                escape(&format!("{}: means over the inputs, per checkpoint", path.display()))
            );
        }
        Err(e) => {
            let _ = writeln!(
                h,
                "<p class=\"meta\">No chart: {}</p>",
                escape(&e.to_string())
            );
        }
    }
    Ok(h)
}
