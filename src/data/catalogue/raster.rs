//! The catalogue's small rasteriser: a float RGB canvas, shapes tested point by point with
//! 4x4 supersampling (anti-aliased edges and a coverage mask), simple shading under one neutral
//! light from the upper left, and the photographic effects of casual photos (blur, noise, cast).
use super::super::rng::SplitMix64;
use image::{GrayImage, Luma, Rgb, RgbImage};

/// A point (x right, y down).
pub type Pt = (f64, f64);

/// Subsamples per pixel side.
const SUB: usize = 4;

/// A float RGB image (0..255 per channel), so effects compose before one final rounding.
#[derive(Debug, Clone)]
pub struct Canvas {
    pub width: u32,
    pub height: u32,
    pub px: Vec<[f32; 3]>,
}

impl Canvas {
    pub fn new(width: u32, height: u32, color: [f32; 3]) -> Self {
        Canvas {
            width,
            height,
            px: vec![color; (width * height) as usize],
        }
    }

    /// Sets every pixel to `f(x, y)` (pixel centres at +0.5).
    pub fn paint(&mut self, f: impl Fn(f64, f64) -> [f32; 3]) {
        let w = self.width as usize;
        for (i, p) in self.px.iter_mut().enumerate() {
            *p = f((i % w) as f64 + 0.5, (i / w) as f64 + 0.5);
        }
    }

    /// Multiplies every pixel by `f(x, y)` (shadows, vignettes).
    pub fn multiply(&mut self, f: impl Fn(f64, f64) -> f32) {
        let w = self.width as usize;
        for (i, p) in self.px.iter_mut().enumerate() {
            let k = f((i % w) as f64 + 0.5, (i / w) as f64 + 0.5);
            for c in p.iter_mut() {
                *c *= k;
            }
        }
    }

    /// Rounds to 8-bit RGB.
    pub fn to_rgb(&self) -> RgbImage {
        let mut img = RgbImage::new(self.width, self.height);
        for (p, q) in img.pixels_mut().zip(&self.px) {
            *p = Rgb(q.map(|v| v.round().clamp(0.0, 255.0) as u8));
        }
        img
    }
}

/// The outline of a part.
#[derive(Debug, Clone)]
pub enum Shape {
    /// A simple polygon (any winding, convex or not; even-odd rule).
    Polygon(Vec<Pt>),
    /// An axis-aligned ellipse: centre and radii.
    Ellipse { c: Pt, r: Pt },
    /// A polyline of the given width with round joins and caps (handles, straps, seams).
    Stroke { pts: Vec<Pt>, width: f64 },
}

impl Shape {
    /// Whether `p` is inside.
    pub fn contains(&self, p: Pt) -> bool {
        match self {
            Shape::Polygon(pts) => {
                let mut inside = false;
                let n = pts.len();
                for i in 0..n {
                    let (a, b) = (pts[i], pts[(i + n - 1) % n]);
                    if (a.1 > p.1) != (b.1 > p.1)
                        && p.0 < (b.0 - a.0) * (p.1 - a.1) / (b.1 - a.1) + a.0
                    {
                        inside = !inside;
                    }
                }
                inside
            }
            Shape::Ellipse { c, r } => {
                let (dx, dy) = ((p.0 - c.0) / r.0, (p.1 - c.1) / r.1);
                dx * dx + dy * dy <= 1.0
            }
            Shape::Stroke { pts, width } => {
                let hw2 = width * width / 4.0;
                pts.windows(2)
                    .any(|s| dist2_to_segment(p, s[0], s[1]) <= hw2)
                    || (pts.len() == 1 && dist2_to_segment(p, pts[0], pts[0]) <= hw2)
            }
        }
    }

    /// (x0, y0, x1, y1) containing the shape.
    pub fn bounds(&self) -> (f64, f64, f64, f64) {
        let grow = |pts: &[Pt], m: f64| {
            pts.iter()
                .fold((f64::MAX, f64::MAX, f64::MIN, f64::MIN), |b, p| {
                    (
                        b.0.min(p.0 - m),
                        b.1.min(p.1 - m),
                        b.2.max(p.0 + m),
                        b.3.max(p.1 + m),
                    )
                })
        };
        match self {
            Shape::Polygon(pts) => grow(pts, 0.0),
            Shape::Ellipse { c, r } => (c.0 - r.0, c.1 - r.1, c.0 + r.0, c.1 + r.1),
            Shape::Stroke { pts, width } => grow(pts, width / 2.0),
        }
    }
}

fn dist2_to_segment(p: Pt, a: Pt, b: Pt) -> f64 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (qx, qy) = (a.0 + t * dx - p.0, a.1 + t * dy - p.1);
    qx * qx + qy * qy
}

/// How light falls on a part: a brightness factor (below 1 darkens, above 1 lightens toward
/// white) and a specular amount, as functions of the point.
#[derive(Debug, Clone, Copy)]
pub enum Shade {
    /// The same factor everywhere.
    Flat(f64),
    /// A vertical cylinder spanning x0..x1 (mugs, bottles, bag bodies).
    Cylinder { x0: f64, x1: f64 },
    /// A sphere (balls).
    Sphere { c: Pt, r: f64 },
    /// A vertical ramp from `top` at y0 to `bottom` at y1 (fabric, leather).
    Ramp {
        y0: f64,
        y1: f64,
        top: f64,
        bottom: f64,
    },
}

/// The light: from the upper left, in front; `H` the half vector toward a frontal viewer.
const LIGHT: [f64; 3] = [-0.42, -0.38, 0.823];

fn unit(v: [f64; 3]) -> [f64; 3] {
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    [v[0] / n, v[1] / n, v[2] / n]
}

fn lit(n: [f64; 3]) -> (f64, f64) {
    let l = unit(LIGHT);
    let h = unit([l[0], l[1], l[2] + 1.0]);
    let diffuse = (n[0] * l[0] + n[1] * l[1] + n[2] * l[2]).max(0.0);
    let spec = (n[0] * h[0] + n[1] * h[1] + n[2] * h[2]).max(0.0).powi(24);
    (0.5 + 0.55 * diffuse, spec)
}

impl Shade {
    /// (brightness factor, specular amount) at `p`.
    pub fn at(&self, p: Pt) -> (f64, f64) {
        match *self {
            Shade::Flat(f) => (f, 0.0),
            Shade::Cylinder { x0, x1 } => {
                let nx = (2.0 * (p.0 - x0) / (x1 - x0) - 1.0).clamp(-1.0, 1.0);
                lit([nx, 0.0, (1.0 - nx * nx).sqrt()])
            }
            Shade::Sphere { c, r } => {
                let (nx, ny) = ((p.0 - c.0) / r, (p.1 - c.1) / r);
                let nz = (1.0 - nx * nx - ny * ny).max(0.0).sqrt();
                lit([nx, ny, nz])
            }
            Shade::Ramp {
                y0,
                y1,
                top,
                bottom,
            } => {
                let t = ((p.1 - y0) / (y1 - y0)).clamp(0.0, 1.0);
                (top + (bottom - top) * t, 0.0)
            }
        }
    }
}

/// One filled piece of an object: outline, base colour, light, and how glossy it is.
#[derive(Debug, Clone)]
pub struct Part {
    pub shape: Shape,
    pub color: [f64; 3],
    pub shade: Shade,
    /// Multiplies the shade's factor (accents: rims, flaps, seams).
    pub tone: f64,
    /// Weight of the specular highlight (0 matte .. 1 glossy).
    pub gloss: f64,
}

impl Part {
    pub fn new(shape: Shape, color: [f64; 3], shade: Shade) -> Self {
        Part {
            shape,
            color,
            shade,
            tone: 1.0,
            gloss: 0.0,
        }
    }

    pub fn tone(mut self, t: f64) -> Self {
        self.tone = t;
        self
    }

    pub fn gloss(mut self, g: f64) -> Self {
        self.gloss = g;
        self
    }

    /// The lit colour at `p`.
    fn color_at(&self, p: Pt) -> [f64; 3] {
        let (f, spec) = self.shade.at(p);
        let f = f * self.tone;
        let s = spec * self.gloss;
        self.color.map(|c| {
            let v = if f <= 1.0 {
                c * f
            } else {
                c + (255.0 - c) * (f - 1.0).min(1.0)
            };
            v + (255.0 - v) * s
        })
    }
}

/// Where an object's local coordinates land in the image: `image = origin + R(angle) * scale * p`.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    pub origin: Pt,
    pub scale: f64,
    pub angle: f64,
}

impl Placement {
    /// Image coordinates are the local ones.
    pub const IDENTITY: Placement = Placement {
        origin: (0.0, 0.0),
        scale: 1.0,
        angle: 0.0,
    };

    pub fn apply(&self, p: Pt) -> Pt {
        let (s, c) = self.angle.sin_cos();
        let (x, y) = (p.0 * self.scale, p.1 * self.scale);
        (self.origin.0 + c * x - s * y, self.origin.1 + s * x + c * y)
    }

    pub fn invert(&self, q: Pt) -> Pt {
        let (s, c) = self.angle.sin_cos();
        let (x, y) = (q.0 - self.origin.0, q.1 - self.origin.1);
        ((c * x + s * y) / self.scale, (-s * x + c * y) / self.scale)
    }
}

/// The union of the parts' bounds, in local coordinates.
pub fn bounds(parts: &[Part]) -> (f64, f64, f64, f64) {
    parts
        .iter()
        .map(|p| p.shape.bounds())
        .fold((f64::MAX, f64::MAX, f64::MIN, f64::MIN), |b, q| {
            (b.0.min(q.0), b.1.min(q.1), b.2.max(q.2), b.3.max(q.3))
        })
}

/// Draws `parts` (later ones on top) placed by `pl`, anti-aliased; adds the covered share of
/// each pixel to `coverage` when given (0..1 per pixel).
pub fn draw(canvas: &mut Canvas, parts: &[Part], pl: &Placement, mut coverage: Option<&mut [f32]>) {
    if parts.is_empty() {
        return;
    }
    let b = bounds(parts);
    let corners = [(b.0, b.1), (b.2, b.1), (b.0, b.3), (b.2, b.3)].map(|p| pl.apply(p));
    let (w, h) = (canvas.width as i64, canvas.height as i64);
    let fx0 = corners.iter().map(|p| p.0).fold(f64::MAX, f64::min);
    let fy0 = corners.iter().map(|p| p.1).fold(f64::MAX, f64::min);
    let fx1 = corners.iter().map(|p| p.0).fold(f64::MIN, f64::max);
    let fy1 = corners.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    let x0 = (fx0.floor() as i64).clamp(0, w);
    let y0 = (fy0.floor() as i64).clamp(0, h);
    let x1 = (fx1.ceil() as i64 + 1).clamp(0, w);
    let y1 = (fy1.ceil() as i64 + 1).clamp(0, h);
    let n = (SUB * SUB) as f64;
    for y in y0..y1 {
        for x in x0..x1 {
            let mut sum = [0.0f64; 3];
            let mut hits = 0usize;
            for sy in 0..SUB {
                for sx in 0..SUB {
                    let q = (
                        x as f64 + (sx as f64 + 0.5) / SUB as f64,
                        y as f64 + (sy as f64 + 0.5) / SUB as f64,
                    );
                    let p = pl.invert(q);
                    if let Some(part) = parts.iter().rev().find(|part| part.shape.contains(p)) {
                        let c = part.color_at(p);
                        for k in 0..3 {
                            sum[k] += c[k];
                        }
                        hits += 1;
                    }
                }
            }
            if hits == 0 {
                continue;
            }
            let a = hits as f64 / n;
            let i = (y * w + x) as usize;
            let px = &mut canvas.px[i];
            for k in 0..3 {
                px[k] = (px[k] as f64 * (1.0 - a) + sum[k] / n) as f32;
            }
            if let Some(cov) = coverage.as_deref_mut() {
                cov[i] = (cov[i] + a as f32).min(1.0);
            }
        }
    }
}

/// The coverage as an 8-bit mask (255 = fully product).
pub fn mask_image(width: u32, height: u32, coverage: &[f32]) -> GrayImage {
    let mut m = GrayImage::new(width, height);
    for (p, c) in m.pixels_mut().zip(coverage) {
        *p = Luma([(c * 255.0).round().clamp(0.0, 255.0) as u8]);
    }
    m
}

/// Separable Gaussian blur with standard deviation `sigma` pixels (edges clamped).
pub fn blur(canvas: &mut Canvas, sigma: f64) {
    if sigma <= 0.0 {
        return;
    }
    let r = (3.0 * sigma).ceil() as i64;
    let k: Vec<f64> = (-r..=r)
        .map(|i| (-0.5 * (i as f64 / sigma).powi(2)).exp())
        .collect();
    let total: f64 = k.iter().sum();
    let (w, h) = (canvas.width as i64, canvas.height as i64);
    for horizontal in [true, false] {
        let src = canvas.px.clone();
        for y in 0..h {
            for x in 0..w {
                let mut acc = [0.0f64; 3];
                for (j, kv) in k.iter().enumerate() {
                    let d = j as i64 - r;
                    let (sx, sy) = if horizontal {
                        ((x + d).clamp(0, w - 1), y)
                    } else {
                        (x, (y + d).clamp(0, h - 1))
                    };
                    let p = src[(sy * w + sx) as usize];
                    for c in 0..3 {
                        acc[c] += p[c] as f64 * kv;
                    }
                }
                canvas.px[(y * w + x) as usize] = acc.map(|v| (v / total) as f32);
            }
        }
    }
}

/// A standard normal draw (Box-Muller).
pub fn normal(rng: &mut SplitMix64) -> f64 {
    let u1 = rng.next_f64().max(1e-300);
    let u2 = rng.next_f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Adds Gaussian noise of `sigma` levels to every channel.
pub fn add_noise(canvas: &mut Canvas, sigma: f64, rng: &mut SplitMix64) {
    for p in canvas.px.iter_mut() {
        for c in p.iter_mut() {
            *c += (normal(rng) * sigma) as f32;
        }
    }
}

/// Multiplies the channels by `gains` (a colour cast) and the whole image by `exposure`.
pub fn color_cast(canvas: &mut Canvas, gains: [f64; 3], exposure: f64) {
    for p in canvas.px.iter_mut() {
        for c in 0..3 {
            p[c] = (p[c] as f64 * gains[c] * exposure) as f32;
        }
    }
}

/// Points on an elliptical arc from angle `a0` to `a1` (radians, `n` segments).
pub fn arc(c: Pt, r: Pt, a0: f64, a1: f64, n: usize) -> Vec<Pt> {
    (0..=n)
        .map(|i| {
            let a = a0 + (a1 - a0) * i as f64 / n as f64;
            (c.0 + r.0 * a.cos(), c.1 + r.1 * a.sin())
        })
        .collect()
}

/// A rectangle with corners rounded by `rad` (a polygon).
pub fn rounded_rect(x0: f64, y0: f64, x1: f64, y1: f64, rad: f64) -> Vec<Pt> {
    use std::f64::consts::{FRAC_PI_2, PI};
    let rad = rad.min((x1 - x0) / 2.0).min((y1 - y0) / 2.0);
    let mut pts = Vec::new();
    for (c, a0) in [
        ((x1 - rad, y0 + rad), -FRAC_PI_2),
        ((x1 - rad, y1 - rad), 0.0),
        ((x0 + rad, y1 - rad), FRAC_PI_2),
        ((x0 + rad, y0 + rad), PI),
    ] {
        pts.extend(arc(c, (rad, rad), a0, a0 + FRAC_PI_2, 4));
    }
    pts
}
