//! Metric tables: one CSV row per evaluated image, and the means per (run, checkpoint).
use super::metrics::PairMetrics;
use super::pairs::Job;
use crate::fsutil::write_atomic_with;
use anyhow::Result;
use std::path::Path;

/// The metric columns, in order; the reference ones only with a reference.
pub const METRICS: [&str; 6] = [
    "background_cleanliness_in",
    "background_cleanliness_out",
    "delta_e2000",
    "ssim_product",
    "psnr_reference",
    "ssim_reference",
];

/// One evaluated image.
#[derive(Debug, Clone)]
pub struct Row {
    pub job: Job,
    pub metrics: PairMetrics,
}

/// The means of one group of rows.
#[derive(Debug, Clone)]
pub struct Summary {
    pub run: Option<String>,
    pub checkpoint: Option<String>,
    pub step: Option<u64>,
    pub images: usize,
    /// Means of [`METRICS`] over the rows where each is defined.
    pub means: [Option<f64>; 6],
}

fn values(m: &PairMetrics) -> [Option<f64>; 6] {
    [
        m.cleanliness_in,
        m.cleanliness_out,
        m.delta_e2000,
        m.ssim_product,
        m.psnr_reference,
        m.ssim_reference,
    ]
}

/// Groups rows by (run, checkpoint) in first-seen order and averages each metric.
pub fn summarize(rows: &[Row]) -> Vec<Summary> {
    let mut out: Vec<(Summary, [(f64, usize); 6])> = Vec::new();
    for r in rows {
        let key = (&r.job.run, &r.job.checkpoint);
        let k = match out.iter().position(|(s, _)| (&s.run, &s.checkpoint) == key) {
            Some(k) => k,
            None => {
                out.push((
                    Summary {
                        run: r.job.run.clone(),
                        checkpoint: r.job.checkpoint.clone(),
                        step: r.job.step,
                        images: 0,
                        means: [None; 6],
                    },
                    [(0.0, 0); 6],
                ));
                out.len() - 1
            }
        };
        let (s, acc) = &mut out[k];
        s.images += 1;
        for (a, v) in acc.iter_mut().zip(values(&r.metrics)) {
            if let Some(v) = v {
                a.0 += v;
                a.1 += 1;
            }
        }
    }
    out.into_iter()
        .map(|(mut s, acc)| {
            for (m, (sum, n)) in s.means.iter_mut().zip(acc) {
                *m = (n > 0).then(|| sum / n as f64);
            }
            s
        })
        .collect()
}

fn cell(v: Option<f64>) -> String {
    match v {
        None => String::new(),
        Some(v) if v.is_infinite() => "inf".into(),
        Some(v) => format!("{v:.6}"),
    }
}

fn columns(compare: bool, reference: bool, first: &[&str]) -> Vec<String> {
    let mut h: Vec<String> = Vec::new();
    if compare {
        h.extend(["run", "checkpoint", "step"].map(String::from));
    }
    h.extend(first.iter().map(|s| s.to_string()));
    let n = if reference { 6 } else { 4 };
    h.extend(METRICS[..n].iter().map(|s| s.to_string()));
    h
}

/// Writes the per-image table (`input, output, <metrics>`, led by `run, checkpoint, step` for
/// a compare folder).
pub fn write_rows(path: &Path, rows: &[Row], compare: bool, reference: bool) -> Result<()> {
    let n = if reference { 6 } else { 4 };
    write_atomic_with(path, |w| {
        let mut csv = csv::Writer::from_writer(w);
        csv.write_record(columns(compare, reference, &["input", "output"]))?;
        for r in rows {
            let mut rec = Vec::new();
            if compare {
                rec.push(r.job.run.clone().unwrap_or_default());
                rec.push(r.job.checkpoint.clone().unwrap_or_default());
                rec.push(r.job.step.map(|s| s.to_string()).unwrap_or_default());
            }
            rec.push(r.job.input_name.clone());
            rec.push(r.job.output_name.clone());
            rec.extend(values(&r.metrics)[..n].iter().map(|v| cell(*v)));
            csv.write_record(&rec)?;
        }
        csv.flush()?;
        Ok(())
    })
}

/// Writes the means (`images, <metrics>`, led by `run, checkpoint, step` for a compare folder).
pub fn write_summary(
    path: &Path,
    summary: &[Summary],
    compare: bool,
    reference: bool,
) -> Result<()> {
    let n = if reference { 6 } else { 4 };
    write_atomic_with(path, |w| {
        let mut csv = csv::Writer::from_writer(w);
        csv.write_record(columns(compare, reference, &["images"]))?;
        for s in summary {
            let mut rec = Vec::new();
            if compare {
                rec.push(s.run.clone().unwrap_or_default());
                rec.push(s.checkpoint.clone().unwrap_or_default());
                rec.push(s.step.map(|s| s.to_string()).unwrap_or_default());
            }
            rec.push(s.images.to_string());
            rec.extend(s.means[..n].iter().map(|v| cell(*v)));
            csv.write_record(&rec)?;
        }
        csv.flush()?;
        Ok(())
    })
}
