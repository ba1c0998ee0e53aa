//! A folder of captioned images.
use super::captions::{self, normalize_file_name};
use super::rng::{derive_seed, stream};
use crate::imageio::escaped;
use anyhow::{bail, Result};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Image extensions picked up (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

/// One captioned image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub path: PathBuf,
    /// Path relative to the images folder, `/`-separated.
    pub file_name: String,
    pub caption: String,
    /// Size from the file header, after EXIF orientation.
    pub width: u32,
    pub height: u32,
}

/// Why a file was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IssueKind {
    /// An image with no caption.
    MissingCaption,
    /// A caption (CSV row or sidecar) with no image.
    MissingImage,
    /// An image that cannot be decoded.
    Unreadable,
    /// A second CSV row for an image (the first row is used).
    DuplicateCaption,
    /// A file or folder whose name is not UTF-8, which a captions CSV cannot name.
    BadFileName,
    /// A symlinked folder not searched again: its folder was already searched.
    RepeatedFolder,
}

impl fmt::Display for IssueKind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            IssueKind::MissingCaption => "no caption",
            IssueKind::MissingImage => "no image",
            IssueKind::Unreadable => "unreadable image",
            IssueKind::DuplicateCaption => "duplicate caption",
            IssueKind::BadFileName => "file name not UTF-8",
            IssueKind::RepeatedFolder => "folder already searched",
        })
    }
}

/// One problem found while opening a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub kind: IssueKind,
    pub path: PathBuf,
    pub reason: String,
}

/// Where captions came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptionSource {
    Csv(PathBuf),
    Sidecars,
    /// One prompt for every image (DreamBooth's instance and class prompts).
    Prompt(String),
}

/// What [`Dataset::open`] found: every skipped file, once, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub images_dir: PathBuf,
    pub captions: CaptionSource,
    /// Image files found (before anything was skipped).
    pub images_found: usize,
    /// Samples kept.
    pub samples: usize,
    pub issues: Vec<Issue>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.issues.is_empty()
    }
    pub fn count(&self, kind: IssueKind) -> usize {
        self.issues.iter().filter(|i| i.kind == kind).count()
    }
    /// The issues of one kind.
    pub fn of_kind(&self, kind: IssueKind) -> impl Iterator<Item = &Issue> {
        self.issues.iter().filter(move |i| i.kind == kind)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let source = match &self.captions {
            CaptionSource::Csv(p) => p.display().to_string(),
            CaptionSource::Sidecars => "sidecar .txt files".to_string(),
            CaptionSource::Prompt(p) => format!("the prompt '{p}'"),
        };
        writeln!(
            f,
            "{}: {} of {} images used, captions from {source}",
            self.images_dir.display(),
            self.samples,
            self.images_found
        )?;
        for i in &self.issues {
            writeln!(
                f,
                "  skipped {} ({}): {}",
                i.path.display(),
                i.kind,
                i.reason
            )?;
        }
        Ok(())
    }
}

/// A set of captioned images, in file-name order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    root: PathBuf,
    samples: Vec<Sample>,
}

/// Whether `path` names an image file by its extension (case-insensitive).
pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn is_txt(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("txt"))
}

/// Files under `dir`, recursively, as sorted `/`-separated relative names; hidden entries
/// skipped. Symlinked folders are followed, each folder (by device and inode) once: a symlink
/// loop or a second link to a folder is an [`IssueKind::RepeatedFolder`] issue instead of being
/// entered again. An image, `.txt` or folder whose name is not UTF-8 (a captions CSV cannot
/// name it) is an [`IssueKind::BadFileName`] issue.
fn walk(dir: &Path) -> Result<(Vec<String>, Vec<Issue>)> {
    struct Walk {
        seen: HashSet<(u64, u64)>,
        files: Vec<String>,
        issues: Vec<Issue>,
    }
    fn file_id(path: &Path) -> Option<(u64, u64)> {
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
    fn rec(root: &Path, rel: &str, w: &mut Walk) -> Result<()> {
        let here = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let list_err = |e: std::io::Error| anyhow::anyhow!("{}: cannot list: {e}", escaped(&here));
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&here).map_err(list_err)? {
            names.push(entry.map_err(list_err)?.file_name());
        }
        names.sort();
        for os_name in names {
            if os_name.as_bytes().starts_with(b".") {
                continue;
            }
            let path = here.join(&os_name);
            let Some(name) = os_name.to_str() else {
                let what = if path.is_dir() {
                    "folder"
                } else if is_image(&path) || is_txt(&path) {
                    "file"
                } else {
                    continue;
                };
                w.issues.push(Issue {
                    kind: IssueKind::BadFileName,
                    reason: format!(
                        "{what} name {} is not valid UTF-8 (bytes shown as \\xNN), so a \
                         captions CSV cannot name it: rename it",
                        escaped(Path::new(&os_name))
                    ),
                    path,
                });
                continue;
            };
            let child = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            if path.is_dir() {
                match file_id(&path) {
                    Some(id) if !w.seen.insert(id) => w.issues.push(Issue {
                        kind: IssueKind::RepeatedFolder,
                        reason: format!(
                            "links to {}, a folder already searched (a symlink loop or a \
                             second link); its images are used once",
                            escaped(&path.canonicalize().unwrap_or_else(|_| path.clone()))
                        ),
                        path,
                    }),
                    _ => rec(root, &child, w)?,
                }
            } else if path.is_file() {
                w.files.push(child);
            }
        }
        Ok(())
    }
    let mut w = Walk {
        seen: HashSet::new(),
        files: Vec::new(),
        issues: Vec::new(),
    };
    w.seen.extend(file_id(dir));
    rec(dir, "", &mut w)?;
    w.files.sort();
    Ok((w.files, w.issues))
}

/// Reads just the header (the shared decoder's: no pixels decoded, oversized headers refused);
/// errors for files that are not decodable images. The size is the displayed one: swapped when
/// the EXIF orientation turns the image by 90 degrees.
fn check_header(path: &Path) -> std::result::Result<(u32, u32), String> {
    let header = crate::imageio::read_header(path).map_err(|e| {
        // The report names the file already.
        let msg = format!("{e:#}");
        let prefix = format!("{}: ", path.display());
        msg.strip_prefix(&prefix)
            .map_or(msg.clone(), str::to_string)
    })?;
    Ok(header.upright_size())
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// A caption CSV's rows by file name (text and line), the first of repeated names kept and
/// the others listed as issues.
fn csv_captions(
    images_dir: &Path,
    csv: &Path,
    issues: &mut Vec<Issue>,
) -> Result<BTreeMap<String, (String, u64)>> {
    let rows = captions::read_csv(csv)?;
    let mut by_name: BTreeMap<String, (String, u64)> = BTreeMap::new();
    for row in rows {
        if let Some((_, first)) = by_name.get(&row.file_name) {
            issues.push(Issue {
                kind: IssueKind::DuplicateCaption,
                path: images_dir.join(&row.file_name),
                reason: format!(
                    "{} line {} repeats line {first}; the first caption is used",
                    csv.display(),
                    row.line
                ),
            });
            continue;
        }
        by_name.insert(row.file_name, (row.text, row.line));
    }
    Ok(by_name)
}

/// Pairs the images with the captions of a CSV; images not in it and rows without an image
/// are listed as issues.
fn pair_from_csv(
    images_dir: &Path,
    csv: &Path,
    images: &[&String],
    paired: &mut Vec<(String, String)>,
    issues: &mut Vec<Issue>,
) -> Result<()> {
    let mut by_name = csv_captions(images_dir, csv, issues)?;
    for img in images {
        match by_name.remove(normalize_file_name(img).as_str()) {
            Some((text, _)) => paired.push(((*img).clone(), text)),
            None => issues.push(Issue {
                kind: IssueKind::MissingCaption,
                path: images_dir.join(img),
                reason: format!("not listed in {}", csv.display()),
            }),
        }
    }
    for (name, (_, line)) in by_name {
        let path = images_dir.join(&name);
        let reason = if path.is_file() && !is_image(&path) {
            format!(
                "{} line {line}: not a jpg/jpeg/png/webp file",
                csv.display()
            )
        } else {
            format!("{} line {line}: no such image", csv.display())
        };
        issues.push(Issue {
            kind: IssueKind::MissingImage,
            path,
            reason,
        });
    }
    Ok(())
}

/// Pairs the images with their `.txt` sidecars; images without one and sidecars without an
/// image are listed as issues.
fn pair_from_sidecars(
    images_dir: &Path,
    files: &[String],
    images: &[&String],
    paired: &mut Vec<(String, String)>,
    issues: &mut Vec<Issue>,
) -> Result<()> {
    let mut used_txt = std::collections::BTreeSet::new();
    for img in images {
        let path = images_dir.join(img);
        match captions::read_sidecar(&path)? {
            Some(text) => {
                used_txt.insert(path.with_extension("txt"));
                paired.push(((*img).clone(), text));
            }
            None => issues.push(Issue {
                kind: IssueKind::MissingCaption,
                path: path.clone(),
                reason: format!("no sidecar {}", path.with_extension("txt").display()),
            }),
        }
    }
    for f in files.iter().filter(|f| is_txt(Path::new(f))) {
        let path = images_dir.join(f);
        if !used_txt.contains(&path) {
            issues.push(Issue {
                kind: IssueKind::MissingImage,
                path,
                reason: "caption file without an image of the same name".into(),
            });
        }
    }
    Ok(())
}

/// Reads the paired images' headers (in parallel): the readable ones become samples, in
/// order, the others issues.
fn check_samples(
    images_dir: &Path,
    paired: Vec<(String, String)>,
    issues: &mut Vec<Issue>,
) -> Vec<Sample> {
    let checked: Vec<_> = paired
        .into_par_iter()
        .map(|(rel, caption)| {
            let path = images_dir.join(&rel);
            let header = check_header(&path);
            (rel, caption, path, header)
        })
        .collect();
    let mut samples = Vec::new();
    for (rel, caption, path, header) in checked {
        match header {
            Ok((width, height)) => samples.push(Sample {
                path,
                file_name: normalize_file_name(&rel),
                caption,
                width,
                height,
            }),
            Err(e) => issues.push(Issue {
                kind: IssueKind::Unreadable,
                path,
                reason: e,
            }),
        }
    }
    samples
}

impl Dataset {
    /// Pairs the images under `images_dir` (jpg/jpeg/png/webp, recursively) with captions from
    /// `captions` (a `file_name,text` CSV), else from `images_dir/metadata.csv` if present, else
    /// from `image.txt` sidecars. Images without captions, captions without images and images
    /// whose header cannot be read are skipped and listed in the [`Report`]. No usable image
    /// is an error naming the folder.
    pub fn open(images_dir: &Path, captions: Option<&Path>) -> Result<(Dataset, Report)> {
        if !images_dir.is_dir() {
            bail!("{}: no such folder", images_dir.display());
        }
        let (files, mut issues) = walk(images_dir)?;
        let images: Vec<&String> = files.iter().filter(|f| is_image(Path::new(f))).collect();

        let default_csv = images_dir.join("metadata.csv");
        let csv_path = match captions {
            Some(p) => Some(p.to_path_buf()),
            None if default_csv.is_file() => Some(default_csv),
            None => None,
        };
        let mut paired: Vec<(String, String)> = Vec::new();
        let source = match &csv_path {
            Some(csv) => {
                pair_from_csv(images_dir, csv, &images, &mut paired, &mut issues)?;
                CaptionSource::Csv(csv.clone())
            }
            None => {
                pair_from_sidecars(images_dir, &files, &images, &mut paired, &mut issues)?;
                CaptionSource::Sidecars
            }
        };

        let found = images.len();
        Self::checked(images_dir, paired, found, source, issues)
    }

    /// Every image under `images_dir` (as [`Dataset::open`] finds them), each captioned with
    /// `prompt`; caption files are ignored.
    pub fn open_with_prompt(images_dir: &Path, prompt: &str) -> Result<(Dataset, Report)> {
        if !images_dir.is_dir() {
            bail!("{}: no such folder", images_dir.display());
        }
        let (files, issues) = walk(images_dir)?;
        let paired: Vec<(String, String)> = files
            .iter()
            .filter(|f| is_image(Path::new(f)))
            .map(|f| (f.clone(), prompt.to_string()))
            .collect();
        let found = paired.len();
        let source = CaptionSource::Prompt(prompt.to_string());
        Self::checked(images_dir, paired, found, source, issues)
    }

    /// The dataset of the `paired` images whose headers read, with the report; no usable
    /// image is an error naming the folder.
    fn checked(
        images_dir: &Path,
        paired: Vec<(String, String)>,
        images_found: usize,
        source: CaptionSource,
        mut issues: Vec<Issue>,
    ) -> Result<(Dataset, Report)> {
        let samples = check_samples(images_dir, paired, &mut issues);
        issues.sort_by(|a, b| (a.kind, &a.path).cmp(&(b.kind, &b.path)));
        let report = Report {
            images_dir: images_dir.to_path_buf(),
            captions: source,
            images_found,
            samples: samples.len(),
            issues,
        };
        if samples.is_empty() {
            bail!(
                "{}: no usable images ({} image files found: {} without captions, {} unreadable)",
                images_dir.display(),
                images_found,
                report.count(IssueKind::MissingCaption),
                report.count(IssueKind::Unreadable)
            );
        }
        Ok((
            Dataset {
                root: images_dir.to_path_buf(),
                samples,
            },
            report,
        ))
    }

    /// A dataset from samples built elsewhere.
    pub fn from_samples(root: PathBuf, samples: Vec<Sample>) -> Self {
        Dataset { root, samples }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn len(&self) -> usize {
        self.samples.len()
    }
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }
    pub fn get(&self, i: usize) -> Option<&Sample> {
        self.samples.get(i)
    }

    /// Splits into (train, validation), deterministically from `seed` and the file names:
    /// `round(len * validation_split)` samples (at least 1 when the split is > 0 and there are
    /// 2 or more samples; never all of them) with the smallest hash of (seed, file name) go to
    /// validation. Adding images to a folder moves few others between the sets. Both keep
    /// file-name order.
    pub fn split(&self, validation_split: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        if !(0.0..1.0).contains(&validation_split) {
            bail!("validation_split must be in [0, 1), found {validation_split}");
        }
        let n = self.samples.len();
        let mut n_val = (n as f64 * validation_split).round() as usize;
        if validation_split > 0.0 && n >= 2 {
            n_val = n_val.max(1);
        }
        n_val = n_val.min(n.saturating_sub(1));
        let mut ranked: Vec<(u64, &str, usize)> = self
            .samples
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    derive_seed(&[seed, stream::SPLIT, fnv1a(&s.file_name)]),
                    s.file_name.as_str(),
                    i,
                )
            })
            .collect();
        ranked.sort();
        let mut is_val = vec![false; n];
        for &(_, _, i) in &ranked[..n_val] {
            is_val[i] = true;
        }
        let (mut train, mut val) = (Vec::new(), Vec::new());
        for (s, v) in self.samples.iter().zip(is_val) {
            if v {
                val.push(s.clone())
            } else {
                train.push(s.clone())
            }
        }
        Ok((
            Dataset {
                root: self.root.clone(),
                samples: train,
            },
            Dataset {
                root: self.root.clone(),
                samples: val,
            },
        ))
    }
}
