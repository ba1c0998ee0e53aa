//! A small synthetic dataset for tests and smoke runs: coloured shapes (circle, square,
//! triangle) on a white "studio" background or on a cluttered table, captioned like
//! "a red circle on a white background, studio product photo" / "a blue square on a cluttered
//! table"; plus a "prior" set of general patterns (stripes, gradients, checkerboards, simple
//! landscapes) whose loss measures forgetting. PNGs plus a `metadata.csv` (`file_name,text,...`) per folder,
//! deterministic from the seed (same seed, same bytes).
use super::rng::{stream, SplitMix64};
use anyhow::{Context, Result};
use image::{Rgb, RgbImage};
use std::path::Path;

pub const SHAPES: [&str; 3] = ["circle", "square", "triangle"];
pub const COLORS: [(&str, [u8; 3]); 6] = [
    ("red", [215, 35, 35]),
    ("green", [35, 155, 60]),
    ("blue", [35, 75, 215]),
    ("yellow", [240, 200, 25]),
    ("orange", [245, 130, 25]),
    ("purple", [135, 50, 175]),
];

/// Size and seed of a generated set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShapesOptions {
    pub count: usize,
    /// Width and height in pixels.
    pub size: u32,
    pub seed: u64,
}

/// Backgrounds of the shapes set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Background {
    White,
    Cluttered,
}

impl Background {
    pub fn name(self) -> &'static str {
        match self {
            Background::White => "white",
            Background::Cluttered => "cluttered",
        }
    }
}

/// One generated shapes image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeRecord {
    pub file_name: String,
    pub text: String,
    pub shape: &'static str,
    pub color: &'static str,
    pub background: Background,
}

/// One generated prior image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorRecord {
    pub file_name: String,
    pub text: String,
    /// `stripes`, `gradient`, `checkerboard` or `landscape`.
    pub kind: &'static str,
}

/// Paints `color` where `inside(x, y)` holds (pixel centres at +0.5), antialiased with 4x4
/// samples per pixel, within the bounding box.
fn fill(
    img: &mut RgbImage,
    color: [u8; 3],
    bbox: (f64, f64, f64, f64),
    inside: impl Fn(f64, f64) -> bool,
) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let x0 = (bbox.0.floor() as i64).clamp(0, w);
    let y0 = (bbox.1.floor() as i64).clamp(0, h);
    let x1 = (bbox.2.ceil() as i64 + 1).clamp(0, w);
    let y1 = (bbox.3.ceil() as i64 + 1).clamp(0, h);
    for y in y0..y1 {
        for x in x0..x1 {
            let mut hits = 0u32;
            for sy in 0..4 {
                for sx in 0..4 {
                    if inside(
                        x as f64 + (sx as f64 + 0.5) / 4.0,
                        y as f64 + (sy as f64 + 0.5) / 4.0,
                    ) {
                        hits += 1;
                    }
                }
            }
            if hits > 0 {
                let p = img.get_pixel_mut(x as u32, y as u32);
                for c in 0..3 {
                    let v = (p[c] as u32 * (16 - hits) + color[c] as u32 * hits + 8) / 16;
                    p[c] = v as u8;
                }
            }
        }
    }
}

fn fill_ellipse(img: &mut RgbImage, color: [u8; 3], cx: f64, cy: f64, rx: f64, ry: f64) {
    fill(img, color, (cx - rx, cy - ry, cx + rx, cy + ry), |x, y| {
        let (dx, dy) = ((x - cx) / rx, (y - cy) / ry);
        dx * dx + dy * dy <= 1.0
    });
}

fn fill_line(img: &mut RgbImage, color: [u8; 3], a: (f64, f64), b: (f64, f64), width: f64) {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = (dx * dx + dy * dy).max(1e-9);
    let hw = width / 2.0;
    let bbox = (
        a.0.min(b.0) - hw,
        a.1.min(b.1) - hw,
        a.0.max(b.0) + hw,
        a.1.max(b.1) + hw,
    );
    fill(img, color, bbox, |x, y| {
        let t = (((x - a.0) * dx + (y - a.1) * dy) / len2).clamp(0.0, 1.0);
        let (px, py) = (a.0 + t * dx - x, a.1 + t * dy - y);
        px * px + py * py <= hw * hw
    });
}

fn fill_polygon(img: &mut RgbImage, color: [u8; 3], pts: &[(f64, f64)]) {
    let bbox = pts
        .iter()
        .fold((f64::MAX, f64::MAX, f64::MIN, f64::MIN), |b, p| {
            (b.0.min(p.0), b.1.min(p.1), b.2.max(p.0), b.3.max(p.1))
        });
    fill(img, color, bbox, |x, y| {
        // convex polygon: inside when on the same side of every edge
        let mut sign = 0.0f64;
        for i in 0..pts.len() {
            let (a, b) = (pts[i], pts[(i + 1) % pts.len()]);
            let cross = (b.0 - a.0) * (y - a.1) - (b.1 - a.1) * (x - a.0);
            if cross != 0.0 {
                if sign != 0.0 && cross.signum() != sign {
                    return false;
                }
                sign = cross.signum();
            }
        }
        true
    });
}

fn regular_polygon(cx: f64, cy: f64, r: f64, sides: usize, angle: f64) -> Vec<(f64, f64)> {
    (0..sides)
        .map(|k| {
            let a = angle + k as f64 * std::f64::consts::TAU / sides as f64;
            (cx + r * a.cos(), cy + r * a.sin())
        })
        .collect()
}

fn random_color(rng: &mut SplitMix64, lo: u8, hi: u8) -> [u8; 3] {
    let mut c = [0u8; 3];
    for v in &mut c {
        *v = rng.range_inclusive(lo as u64, hi as u64) as u8;
    }
    c
}

/// Renders shapes image `index` of the set with `seed` (balanced: every 36 consecutive indices
/// hold each shape x colour x background once).
pub fn render_shape(size: u32, seed: u64, index: usize) -> (RgbImage, ShapeRecord) {
    let (q, r) = (index / 6, index % 6);
    let shape = SHAPES[r % 3];
    let (color_name, color) = COLORS[(q + r) % COLORS.len()];
    let background = if r < 3 {
        Background::White
    } else {
        Background::Cluttered
    };
    let mut rng = SplitMix64::derived(&[seed, stream::SHAPES, index as u64]);
    let s = size as f64;
    let mut img = RgbImage::from_pixel(size, size, Rgb([255, 255, 255]));
    let radius = s * rng.uniform(0.22, 0.30);
    let cx = s / 2.0 + s * rng.uniform(-0.08, 0.08);
    let cy = s / 2.0 + s * rng.uniform(-0.08, 0.08);
    match background {
        // a soft contact shadow, as under a product on a sweep
        Background::White => fill_ellipse(
            &mut img,
            [232, 232, 232],
            cx,
            cy + radius * 0.95,
            radius * 0.9,
            radius * 0.18,
        ),
        Background::Cluttered => cluttered_table(&mut img, &mut rng, s),
    }
    let angle = rng.uniform(-0.35, 0.35);
    draw_shape(&mut img, shape, color, (cx, cy, radius), angle);
    let text = match background {
        Background::White => {
            format!("a {color_name} {shape} on a white background, studio product photo")
        }
        Background::Cluttered => format!("a {color_name} {shape} on a cluttered table"),
    };
    let record = ShapeRecord {
        file_name: format!("shape_{index:04}.png"),
        text,
        shape,
        color: color_name,
        background,
    };
    (img, record)
}

/// Paints a table top with 3 to 5 random blobs and 6 to 10 random lines over the whole image.
fn cluttered_table(img: &mut RgbImage, rng: &mut SplitMix64, s: f64) {
    let table = [
        rng.range_inclusive(110, 160) as u8,
        rng.range_inclusive(80, 120) as u8,
        rng.range_inclusive(50, 90) as u8,
    ];
    for p in img.pixels_mut() {
        *p = Rgb(table);
    }
    for _ in 0..rng.range_inclusive(3, 5) {
        let c = random_color(rng, 40, 230);
        let (bx, by) = (rng.uniform(0.0, s), rng.uniform(0.0, s));
        fill_ellipse(
            img,
            c,
            bx,
            by,
            s * rng.uniform(0.08, 0.2),
            s * rng.uniform(0.06, 0.16),
        );
    }
    for _ in 0..rng.range_inclusive(6, 10) {
        let c = random_color(rng, 20, 240);
        let a = (rng.uniform(0.0, s), rng.uniform(0.0, s));
        let b = (rng.uniform(0.0, s), rng.uniform(0.0, s));
        fill_line(img, c, a, b, (s * rng.uniform(0.01, 0.04)).max(1.0));
    }
}

/// Fills a circle, square or triangle of `radius` at (cx, cy), the polygons turned by `angle`.
fn draw_shape(img: &mut RgbImage, shape: &str, color: [u8; 3], at: (f64, f64, f64), angle: f64) {
    let (cx, cy, radius) = at;
    match shape {
        "circle" => fill_ellipse(img, color, cx, cy, radius, radius),
        "square" => {
            let pts = regular_polygon(
                cx,
                cy,
                radius * std::f64::consts::SQRT_2 * 0.85,
                4,
                angle + std::f64::consts::FRAC_PI_4,
            );
            fill_polygon(img, color, &pts);
        }
        _ => {
            let pts = regular_polygon(
                cx,
                cy,
                radius * 1.15,
                3,
                angle - std::f64::consts::FRAC_PI_2,
            );
            fill_polygon(img, color, &pts);
        }
    }
}

/// The two colours of a prior image: named entries of `COLORS`.
type Pair = ((&'static str, [u8; 3]), (&'static str, [u8; 3]));

/// Renders prior image `index`: stripes, gradient, checkerboard or landscape in turn.
pub fn render_prior(size: u32, seed: u64, index: usize) -> (RgbImage, PriorRecord) {
    let mut rng = SplitMix64::derived(&[seed, stream::PRIOR, index as u64]);
    let s = size as f64;
    let i1 = rng.below(COLORS.len() as u64) as usize;
    let i2 = (i1 + 1 + rng.below(COLORS.len() as u64 - 1) as usize) % COLORS.len();
    let pair = (COLORS[i1], COLORS[i2]);
    let mut img = RgbImage::new(size, size);
    let (kind, text) = match index % 4 {
        0 => ("stripes", prior_stripes(&mut img, &mut rng, s, pair)),
        1 => ("gradient", prior_gradient(&mut img, &mut rng, s, pair)),
        2 => (
            "checkerboard",
            prior_checkerboard(&mut img, &mut rng, s, pair),
        ),
        _ => ("landscape", prior_landscape(&mut img, &mut rng, s)),
    };
    let record = PriorRecord {
        file_name: format!("prior_{index:04}.png"),
        text,
        kind,
    };
    (img, record)
}

/// Stripes of the two colours, horizontal, vertical or diagonal; returns the caption.
fn prior_stripes(img: &mut RgbImage, rng: &mut SplitMix64, s: f64, pair: Pair) -> String {
    let ((n1, c1), (n2, c2)) = pair;
    let period = s * rng.uniform(0.12, 0.3);
    let dir = rng.below(3);
    for (x, y, p) in img.enumerate_pixels_mut() {
        let t = match dir {
            0 => y as f64,
            1 => x as f64,
            _ => (x + y) as f64 / std::f64::consts::SQRT_2,
        };
        *p = Rgb(if (t / period).floor() as i64 % 2 == 0 {
            c1
        } else {
            c2
        });
    }
    let d = ["horizontal", "vertical", "diagonal"][dir as usize];
    format!("{d} {n1} and {n2} stripes")
}

/// A vertical or horizontal gradient between the two colours; returns the caption.
fn prior_gradient(img: &mut RgbImage, rng: &mut SplitMix64, s: f64, pair: Pair) -> String {
    let ((n1, c1), (n2, c2)) = pair;
    let vertical = rng.chance(0.5);
    for (x, y, p) in img.enumerate_pixels_mut() {
        let t = if vertical { y } else { x } as f64 / (s - 1.0).max(1.0);
        let mut px = [0u8; 3];
        for c in 0..3 {
            px[c] = (c1[c] as f64 * (1.0 - t) + c2[c] as f64 * t).round() as u8;
        }
        *p = Rgb(px);
    }
    format!("a smooth gradient from {n1} to {n2}")
}

/// A checkerboard of the two colours, 3 to 8 cells a side; returns the caption.
fn prior_checkerboard(img: &mut RgbImage, rng: &mut SplitMix64, s: f64, pair: Pair) -> String {
    let ((n1, c1), (n2, c2)) = pair;
    let cells = rng.range_inclusive(3, 8) as f64;
    for (x, y, p) in img.enumerate_pixels_mut() {
        let (cx, cy) = ((x as f64 * cells / s) as i64, (y as f64 * cells / s) as i64);
        *p = Rgb(if (cx + cy) % 2 == 0 { c1 } else { c2 });
    }
    format!("a {n1} and {n2} checkerboard pattern")
}

/// Sky, a yellow or orange sun and sine-edged green hills; returns the caption.
fn prior_landscape(img: &mut RgbImage, rng: &mut SplitMix64, s: f64) -> String {
    let horizon = s * rng.uniform(0.45, 0.65);
    for (_, y, p) in img.enumerate_pixels_mut() {
        let t = y as f64 / s;
        *p = Rgb([(90.0 + 100.0 * t) as u8, (150.0 + 70.0 * t) as u8, 235]);
    }
    let sun = if rng.chance(0.5) {
        ("yellow", [250, 215, 60])
    } else {
        ("orange", [245, 140, 40])
    };
    fill_ellipse(
        img,
        sun.1,
        s * rng.uniform(0.2, 0.8),
        s * rng.uniform(0.12, 0.3),
        s * 0.1,
        s * 0.1,
    );
    let (amp, freq, phase) = (
        s * rng.uniform(0.04, 0.1),
        rng.uniform(1.0, 3.0),
        rng.uniform(0.0, 6.3),
    );
    let hills = [60, 140, 55];
    fill(img, hills, (0.0, horizon - amp, s, s), |x, y| {
        y >= horizon + amp * (x / s * freq * std::f64::consts::TAU + phase).sin()
    });
    format!(
        "a landscape with a {} sun over green hills under a blue sky",
        sun.0
    )
}

fn save(dir: &Path, name: &str, img: &RgbImage) -> Result<()> {
    let path = dir.join(name);
    img.save_with_format(&path, image::ImageFormat::Png)
        .with_context(|| format!("{}: cannot write", path.display()))
}

/// Writes `opts.count` shapes images and `metadata.csv`
/// (`file_name,text,shape,color,background`) into `dir` (created if needed).
pub fn generate_shapes(dir: &Path, opts: &ShapesOptions) -> Result<Vec<ShapeRecord>> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let csv_path = dir.join("metadata.csv");
    let mut csv = csv::Writer::from_path(&csv_path)
        .with_context(|| format!("{}: cannot write", csv_path.display()))?;
    csv.write_record(["file_name", "text", "shape", "color", "background"])?;
    let mut records = Vec::with_capacity(opts.count);
    for i in 0..opts.count {
        let (img, rec) = render_shape(opts.size, opts.seed, i);
        save(dir, &rec.file_name, &img)?;
        csv.write_record([
            rec.file_name.as_str(),
            &rec.text,
            rec.shape,
            rec.color,
            rec.background.name(),
        ])?;
        records.push(rec);
    }
    csv.flush()
        .with_context(|| format!("{}: cannot write", csv_path.display()))?;
    Ok(records)
}

/// Writes `opts.count` prior images and `metadata.csv` (`file_name,text,kind`) into `dir`.
pub fn generate_prior(dir: &Path, opts: &ShapesOptions) -> Result<Vec<PriorRecord>> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let csv_path = dir.join("metadata.csv");
    let mut csv = csv::Writer::from_path(&csv_path)
        .with_context(|| format!("{}: cannot write", csv_path.display()))?;
    csv.write_record(["file_name", "text", "kind"])?;
    let mut records = Vec::with_capacity(opts.count);
    for i in 0..opts.count {
        let (img, rec) = render_prior(opts.size, opts.seed, i);
        save(dir, &rec.file_name, &img)?;
        csv.write_record([rec.file_name.as_str(), &rec.text, rec.kind])?;
        records.push(rec);
    }
    csv.flush()
        .with_context(|| format!("{}: cannot write", csv_path.display()))?;
    Ok(records)
}

/// The layout `experiments/tiny-smoke.toml` expects: `root/train` (shapes) and `root/prior`.
pub fn generate_fixture(
    root: &Path,
    shapes: usize,
    prior: usize,
    size: u32,
    seed: u64,
) -> Result<()> {
    generate_shapes(
        &root.join("train"),
        &ShapesOptions {
            count: shapes,
            size,
            seed,
        },
    )?;
    generate_prior(
        &root.join("prior"),
        &ShapesOptions {
            count: prior,
            size,
            seed,
        },
    )?;
    Ok(())
}
