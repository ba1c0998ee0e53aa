//! Photographs of a product: the studio photo (white seamless background with a soft floor
//! gradient and contact shadow, the product centred, neutral light) and the casual photo of the
//! same product (a cluttered table or a coloured wall, off-centre, tilted, with a colour cast,
//! blur and noise). Both return the image, the product mask and its box.
use super::super::rng::SplitMix64;
use super::raster::{self, rounded_rect, Canvas, Part, Placement, Pt, Shade, Shape};
use image::{GrayImage, RgbImage};

/// One rendered photo.
#[derive(Debug, Clone)]
pub struct Photo {
    pub image: RgbImage,
    /// Product coverage, 0..255.
    pub mask: GrayImage,
    /// (x0, y0, x1, y1) of the mask's pixels at >= 50% coverage, x1 / y1 exclusive.
    pub bbox: (u32, u32, u32, u32),
    /// `white`, `table` or `wall`.
    pub background: &'static str,
    /// The caption's setting: `on a white background, studio product photo`, ...
    pub setting: String,
}

/// Named wall colours of casual photos.
const WALLS: [(&str, [f64; 3]); 7] = [
    ("teal", [40.0, 128.0, 128.0]),
    ("pink", [226.0, 150.0, 170.0]),
    ("navy", [40.0, 52.0, 100.0]),
    ("mustard", [200.0, 160.0, 50.0]),
    ("mint", [150.0, 210.0, 175.0]),
    ("grey", [128.0, 128.0, 132.0]),
    ("coral", [232.0, 110.0, 90.0]),
];

/// The placement that puts the centre of `parts`' bounds at `centre`, the larger side
/// `target` pixels long, rotated by `angle`.
pub fn fit(parts: &[Part], target: f64, centre: Pt, angle: f64) -> Placement {
    let b = raster::bounds(parts);
    let scale = target / (b.2 - b.0).max(b.3 - b.1);
    let lc = ((b.0 + b.2) / 2.0, (b.1 + b.3) / 2.0);
    let mut pl = Placement {
        origin: (0.0, 0.0),
        scale,
        angle,
    };
    let q = pl.apply(lc);
    pl.origin = (centre.0 - q.0, centre.1 - q.1);
    pl
}

/// Half the width and height of the placed bounds.
fn half_extent(parts: &[Part], pl: &Placement) -> Pt {
    let b = raster::bounds(parts);
    let c = [(b.0, b.1), (b.2, b.1), (b.0, b.3), (b.2, b.3)].map(|p| pl.apply(p));
    let xs = c.map(|p| p.0);
    let ys = c.map(|p| p.1);
    let span = |v: [f64; 4]| {
        (v.iter().cloned().fold(f64::MIN, f64::max) - v.iter().cloned().fold(f64::MAX, f64::min))
            / 2.0
    };
    (span(xs), span(ys))
}

fn smoothstep(t: f64) -> f64 {
    let t = t.clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// A soft elliptical shadow: multiplies by `1 - depth * exp(-falloff * d^2)`.
fn shadow(canvas: &mut Canvas, c: Pt, r: Pt, depth: f64, falloff: f64) {
    canvas.multiply(|x, y| {
        let d2 = ((x - c.0) / r.0).powi(2) + ((y - c.1) / r.1).powi(2);
        (1.0 - depth * (-falloff * d2).exp()) as f32
    });
}

/// Draws the product and returns its mask and box.
fn place_product(
    canvas: &mut Canvas,
    parts: &[Part],
    pl: &Placement,
) -> (GrayImage, (u32, u32, u32, u32)) {
    let (w, h) = (canvas.width, canvas.height);
    let mut cov = vec![0.0f32; (w * h) as usize];
    raster::draw(canvas, parts, pl, Some(&mut cov));
    let mut b = (w, h, 0, 0);
    for (i, c) in cov.iter().enumerate() {
        if *c >= 0.5 {
            let (x, y) = (i as u32 % w, i as u32 / w);
            b = (b.0.min(x), b.1.min(y), b.2.max(x + 1), b.3.max(y + 1));
        }
    }
    if b.2 == 0 {
        b = (0, 0, 0, 0);
    }
    (raster::mask_image(w, h, &cov), b)
}

/// The studio photo of `parts` whose larger side takes `share` of the image.
pub fn studio(parts: &[Part], size: u32, share: f64, rng: &mut SplitMix64) -> Photo {
    let s = size as f64;
    studio_at(parts, size, share, (s / 2.0, s / 2.0), rng)
}

/// [`studio`] with the product's centre at `centre` (pixels) instead of the image's.
pub fn studio_at(parts: &[Part], size: u32, share: f64, centre: Pt, rng: &mut SplitMix64) -> Photo {
    let s = size as f64;
    let pl = fit(parts, share * s, centre, 0.0);
    let b = raster::bounds(parts);
    let base = pl.apply(((b.0 + b.2) / 2.0, b.3));
    let width = (b.2 - b.0) * pl.scale;
    let floor = base.1 / s;
    let tint = rng.uniform(-1.0, 1.0);
    let mut canvas = Canvas::new(size, size, [255.0; 3]);
    canvas.paint(|_, y| {
        let t = y / s;
        let v = if t < floor {
            244.0 + 10.0 * smoothstep(t / floor)
        } else {
            254.0 - 5.0 * (t - floor) / (1.0 - floor).max(1e-6)
        } + tint;
        [v as f32; 3]
    });
    shadow(&mut canvas, base, (width * 0.75, s * 0.1), 0.07, 1.0);
    shadow(
        &mut canvas,
        base,
        (width * 0.52, (s * 0.035).max(1.5)),
        0.3,
        2.5,
    );
    let (mask, bbox) = place_product(&mut canvas, parts, &pl);
    Photo {
        image: canvas.to_rgb(),
        mask,
        bbox,
        background: "white",
        setting: "on a white background, studio product photo".into(),
    }
}

fn random_color(rng: &mut SplitMix64, lo: f64, hi: f64) -> [f64; 3] {
    [
        rng.uniform(lo, hi),
        rng.uniform(lo, hi),
        rng.uniform(lo, hi),
    ]
}

fn jitter(c: [f64; 3], rng: &mut SplitMix64, amount: f64) -> [f64; 3] {
    c.map(|v| (v + rng.uniform(-amount, amount)).clamp(0.0, 255.0))
}

/// One clutter object of a casual photo, drawn at (x, y) in image pixels.
fn clutter(canvas: &mut Canvas, rng: &mut SplitMix64, x: f64, y: f64, on_wall: bool) {
    let s = canvas.width as f64;
    let pl = Placement {
        origin: (x, y),
        scale: s,
        angle: rng.uniform(-0.6, 0.6),
    };
    if on_wall {
        let pl = Placement { angle: 0.0, ..pl };
        raster::draw(canvas, &picture_frame(rng), &pl, None);
        return;
    }
    let parts: Vec<Part> = match rng.below(6) {
        0 => book(rng),
        1 => plate(rng),
        2 => cup(rng),
        3 => pen(rng),
        4 => phone(rng),
        _ => fruit(rng),
    };
    raster::draw(canvas, &parts, &pl, None);
}

/// A picture frame hanging on the wall (a frame and its picture, lit from above).
fn picture_frame(rng: &mut SplitMix64) -> Vec<Part> {
    let (w, h) = (rng.uniform(0.12, 0.22), rng.uniform(0.1, 0.18));
    let frame = random_color(rng, 30.0, 200.0);
    let picture = random_color(rng, 40.0, 230.0);
    vec![
        Part::new(
            Shape::Polygon(rounded_rect(-w / 2.0, -h / 2.0, w / 2.0, h / 2.0, 0.0)),
            frame,
            Shade::Flat(1.0),
        ),
        Part::new(
            Shape::Polygon(rounded_rect(
                -w / 2.0 + 0.015,
                -h / 2.0 + 0.015,
                w / 2.0 - 0.015,
                h / 2.0 - 0.015,
                0.0,
            )),
            picture,
            Shade::Ramp {
                y0: -h / 2.0,
                y1: h / 2.0,
                top: 1.1,
                bottom: 0.8,
            },
        ),
    ]
}

/// A book lying on the table, pages toward the viewer.
fn book(rng: &mut SplitMix64) -> Vec<Part> {
    let (w, h) = (rng.uniform(0.16, 0.28), rng.uniform(0.04, 0.07));
    let c = random_color(rng, 30.0, 220.0);
    vec![
        Part::new(
            Shape::Polygon(rounded_rect(-w / 2.0, -h / 2.0, w / 2.0, h / 2.0, 0.005)),
            c,
            Shade::Ramp {
                y0: -h / 2.0,
                y1: h / 2.0,
                top: 1.0,
                bottom: 0.75,
            },
        ),
        Part::new(
            Shape::Polygon(rounded_rect(
                -w / 2.0 + 0.01,
                0.0,
                w / 2.0 - 0.005,
                h / 2.0 - 0.008,
                0.0,
            )),
            [232.0, 226.0, 206.0],
            Shade::Flat(1.0),
        ),
    ]
}

/// A plate seen at a low angle (rim and well).
fn plate(rng: &mut SplitMix64) -> Vec<Part> {
    let r = rng.uniform(0.1, 0.17);
    let c = jitter([228.0, 228.0, 224.0], rng, 12.0);
    vec![
        Part::new(
            Shape::Ellipse {
                c: (0.0, 0.0),
                r: (r, r * 0.35),
            },
            c,
            Shade::Flat(0.92),
        ),
        Part::new(
            Shape::Ellipse {
                c: (0.0, 0.0),
                r: (r * 0.7, r * 0.22),
            },
            c,
            Shade::Flat(0.82),
        ),
    ]
}

/// A cup (a shaded cylinder and its dark opening).
fn cup(rng: &mut SplitMix64) -> Vec<Part> {
    let (w, h) = (rng.uniform(0.06, 0.1), rng.uniform(0.07, 0.12));
    let c = random_color(rng, 40.0, 230.0);
    let cyl = Shade::Cylinder {
        x0: -w / 2.0,
        x1: w / 2.0,
    };
    vec![
        Part::new(
            Shape::Polygon(vec![
                (-w / 2.0, -h),
                (w / 2.0, -h),
                (w / 2.0, 0.0),
                (-w / 2.0, 0.0),
            ]),
            c,
            cyl,
        ),
        Part::new(
            Shape::Ellipse {
                c: (0.0, -h),
                r: (w / 2.0, w * 0.15),
            },
            c,
            Shade::Flat(0.45),
        ),
    ]
}

/// A pen (one stroke).
fn pen(rng: &mut SplitMix64) -> Vec<Part> {
    let l = rng.uniform(0.14, 0.24);
    let c = random_color(rng, 20.0, 220.0);
    vec![Part::new(
        Shape::Stroke {
            pts: vec![(-l / 2.0, 0.0), (l / 2.0, 0.0)],
            width: 0.018,
        },
        c,
        Shade::Flat(1.0),
    )]
}

/// A phone (dark body and a bluish screen).
fn phone(rng: &mut SplitMix64) -> Vec<Part> {
    let (w, h) = (rng.uniform(0.08, 0.11), rng.uniform(0.15, 0.2));
    let flat = Shade::Flat(1.0);
    vec![
        Part::new(
            Shape::Polygon(rounded_rect(-w / 2.0, -h / 2.0, w / 2.0, h / 2.0, 0.012)),
            [28.0, 28.0, 32.0],
            flat,
        ),
        Part::new(
            Shape::Polygon(rounded_rect(
                -w / 2.0 + 0.008,
                -h / 2.0 + 0.012,
                w / 2.0 - 0.008,
                h / 2.0 - 0.012,
                0.004,
            )),
            jitter([60.0, 80.0, 120.0], rng, 30.0),
            flat,
        ),
    ]
}

/// A piece of fruit (a glossy sphere in one of four fruit colours).
fn fruit(rng: &mut SplitMix64) -> Vec<Part> {
    let r = rng.uniform(0.04, 0.07);
    let c = [
        [230.0, 120.0, 30.0],
        [190.0, 30.0, 40.0],
        [120.0, 180.0, 50.0],
        [235.0, 205.0, 60.0],
    ][rng.below(4) as usize];
    vec![Part::new(
        Shape::Ellipse {
            c: (0.0, 0.0),
            r: (r, r),
        },
        c,
        Shade::Sphere { c: (0.0, 0.0), r },
    )
    .gloss(0.3)]
}

/// A potted plant standing at (x, y) (image pixels), `h` pixels tall.
fn plant(canvas: &mut Canvas, rng: &mut SplitMix64, x: f64, y: f64, h: f64) {
    let pot = jitter([185.0, 95.0, 60.0], rng, 25.0);
    let pot_parts = vec![Part::new(
        Shape::Polygon(vec![(-0.2, -0.35), (0.2, -0.35), (0.15, 0.0), (-0.15, 0.0)]),
        pot,
        Shade::Cylinder { x0: -0.2, x1: 0.2 },
    )];
    let green = jitter([50.0, 130.0, 60.0], rng, 25.0);
    for k in 0..rng.range_inclusive(4, 7) {
        let a = -0.9 + 1.8 * (k as f64 + rng.next_f64()) / 7.0;
        let leaf = vec![Part::new(
            Shape::Ellipse {
                c: (0.0, -0.35),
                r: (0.09, 0.35),
            },
            green,
            Shade::Ramp {
                y0: -0.7,
                y1: 0.0,
                top: 1.1,
                bottom: 0.7,
            },
        )];
        let pl = Placement {
            origin: (x, y - 0.35 * h),
            scale: h,
            angle: a,
        };
        raster::draw(canvas, &leaf, &pl, None);
    }
    raster::draw(
        canvas,
        &pot_parts,
        &Placement {
            origin: (x, y),
            scale: h,
            angle: 0.0,
        },
        None,
    );
}

/// The casual photo of `parts` (whose larger side takes `share` of the image in the studio
/// photo): smaller, off-centre and tilted, on a table or before a wall.
pub fn casual(parts: &[Part], size: u32, share: f64, rng: &mut SplitMix64) -> Photo {
    let s = size as f64;
    let mut canvas = Canvas::new(size, size, [0.0; 3]);
    let horizon = s * rng.uniform(0.3, 0.55);
    let (background, setting) = if rng.chance(0.6) {
        table_scene(&mut canvas, rng, s, horizon)
    } else {
        wall_scene(&mut canvas, rng, s, horizon)
    };
    let (mask, bbox) = place_casual(&mut canvas, parts, share, rng, s);
    camera(&mut canvas, rng, s);
    Photo {
        image: canvas.to_rgb(),
        mask,
        bbox,
        background,
        setting,
    }
}

/// A wall over a wooden table at `horizon`, with a frame or none on the wall and 3 to 6
/// objects on the table; returns the background's name and the caption's setting.
fn table_scene(
    canvas: &mut Canvas,
    rng: &mut SplitMix64,
    s: f64,
    horizon: f64,
) -> (&'static str, String) {
    let wall = random_color(rng, 110.0, 215.0);
    let wood = jitter(
        [
            [150.0, 104.0, 64.0],
            [120.0, 80.0, 50.0],
            [175.0, 130.0, 85.0],
            [100.0, 72.0, 56.0],
        ][rng.below(4) as usize],
        rng,
        15.0,
    );
    let (f, g, ph) = (
        rng.uniform(3.0, 8.0),
        rng.uniform(1.0, 3.0),
        rng.uniform(0.0, 6.3),
    );
    canvas.paint(|x, y| {
        if y < horizon {
            let k = 0.9 + 0.1 * y / horizon;
            wall.map(|c| (c * k) as f32)
        } else {
            let grain = 1.0
                + 0.07
                    * (std::f64::consts::TAU * (x / s * f + 0.15 * (y / s * g * 4.0 + ph).sin()))
                        .sin();
            let depth = 0.85 + 0.15 * (y - horizon) / (s - horizon);
            wood.map(|c| (c * grain * depth) as f32)
        }
    });
    for _ in 0..rng.range_inclusive(0, 1) {
        let (x, y) = (rng.uniform(0.1, 0.9) * s, rng.uniform(0.1, 0.8) * horizon);
        clutter(canvas, rng, x, y, true);
    }
    for _ in 0..rng.range_inclusive(3, 6) {
        let (x, y) = (
            rng.uniform(0.0, 1.0) * s,
            rng.uniform(horizon + 0.05 * s, s),
        );
        clutter(canvas, rng, x, y, false);
    }
    ("table", "on a cluttered table, casual photo".to_string())
}

/// A named coloured wall over a floor (its horizon lower than `horizon`), with one or two
/// plants or frames; returns the background's name and the caption's setting.
fn wall_scene(
    canvas: &mut Canvas,
    rng: &mut SplitMix64,
    s: f64,
    horizon: f64,
) -> (&'static str, String) {
    let (name, wall) = WALLS[rng.below(WALLS.len() as u64) as usize];
    let wall = jitter(wall, rng, 10.0);
    let floor = jitter(wall.map(|c| c * 0.65), rng, 12.0);
    let horizon = horizon + 0.15 * s;
    canvas.paint(|_, y| {
        if y < horizon {
            wall.map(|c| (c * (0.92 + 0.08 * y / horizon)) as f32)
        } else {
            floor.map(|c| (c * (0.9 + 0.1 * (y - horizon) / (s - horizon))) as f32)
        }
    });
    for _ in 0..rng.range_inclusive(1, 2) {
        if rng.chance(0.5) {
            let (x, y) = (
                rng.uniform(0.05, 0.95) * s,
                rng.uniform(horizon + 0.02 * s, s),
            );
            let h = s * rng.uniform(0.25, 0.4);
            plant(canvas, rng, x, y, h);
        } else {
            let (x, y) = (rng.uniform(0.1, 0.9) * s, rng.uniform(0.15, 0.8) * horizon);
            clutter(canvas, rng, x, y, true);
        }
    }
    ("wall", format!("in front of a {name} wall, casual photo"))
}

/// Places the product smaller, off-centre and tilted, over its shadow; returns its mask and box.
fn place_casual(
    canvas: &mut Canvas,
    parts: &[Part],
    share: f64,
    rng: &mut SplitMix64,
    s: f64,
) -> (GrayImage, (u32, u32, u32, u32)) {
    let angle = rng.uniform(0.08, 0.3) * if rng.chance(0.5) { -1.0 } else { 1.0 };
    let target = share * s * rng.uniform(0.72, 0.92);
    let mut pl = fit(parts, target, (s / 2.0, s / 2.0), angle);
    let (hx, hy) = half_extent(parts, &pl);
    let cx = (s / 2.0 + rng.uniform(-0.22, 0.22) * s).clamp(hx + 1.0, (s - hx - 1.0).max(hx + 1.0));
    let cy = (s / 2.0 + rng.uniform(-0.12, 0.2) * s).clamp(hy + 1.0, (s - hy - 1.0).max(hy + 1.0));
    pl = fit(parts, target, (cx, cy), angle);
    let b = raster::bounds(parts);
    let base = pl.apply(((b.0 + b.2) / 2.0, b.3));
    let width = (b.2 - b.0) * pl.scale;
    shadow(
        canvas,
        (base.0 + 0.04 * s, base.1),
        (width * 0.6, (s * 0.04).max(1.5)),
        0.4,
        2.0,
    );
    place_product(canvas, parts, &pl)
}

/// The camera of a casual photo: colour cast, exposure, vignette, blur, noise.
fn camera(canvas: &mut Canvas, rng: &mut SplitMix64, s: f64) {
    let cast = rng.uniform(0.06, 0.16);
    let gains = match rng.below(4) {
        0 => [1.0 + cast, 1.0, 1.0 - cast],
        1 => [1.0 - cast, 1.0, 1.0 + cast],
        2 => [1.0 - cast / 2.0, 1.0 + cast / 2.0, 1.0 - cast / 2.0],
        _ => [1.0 + cast / 2.0, 1.0 - cast / 2.0, 1.0 + cast / 2.0],
    };
    raster::color_cast(canvas, gains, rng.uniform(0.82, 1.05));
    let vignette = rng.uniform(0.05, 0.3);
    canvas.multiply(|x, y| {
        let (dx, dy) = (x / s - 0.5, y / s - 0.5);
        (1.0 - vignette * 2.0 * (dx * dx + dy * dy)) as f32
    });
    raster::blur(canvas, rng.uniform(0.3, 0.9) * s / 64.0);
    let sigma = rng.uniform(2.0, 6.0);
    raster::add_noise(canvas, sigma, rng);
}
