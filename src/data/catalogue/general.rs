//! The general set, the prior of a fine-tune: scenes without products (gradients, stripes,
//! checkerboards, landscapes, scattered shapes, and other object kinds: houses, trees,
//! flowers), captioned by what they show.
use super::super::rng::SplitMix64;
use super::products::COLOURS;
use super::raster::{self, rounded_rect, Canvas, Part, Placement, Shade, Shape};
use image::RgbImage;
use std::f64::consts::TAU;

/// General scene kinds, in the order the set cycles through them.
pub const GENERAL_KINDS: [&str; 8] = [
    "gradient",
    "stripes",
    "checkerboard",
    "landscape",
    "shapes",
    "house",
    "tree",
    "flower",
];

/// One general scene: image, caption, kind and its main colour's name.
#[derive(Debug, Clone)]
pub struct Scene {
    pub image: RgbImage,
    pub text: String,
    pub kind: &'static str,
    pub colour: &'static str,
}

/// Two different colours of the palette.
/// A named colour.
type Named = (&'static str, [f32; 3]);

fn two_colours(rng: &mut SplitMix64) -> (Named, Named) {
    let n = COLOURS.len() as u64;
    let i = rng.below(n) as usize;
    let j = (i + 1 + rng.below(n - 1) as usize) % COLOURS.len();
    let f = |k: usize| (COLOURS[k].0, COLOURS[k].1.map(|v| v as f32));
    (f(i), f(j))
}

fn sky(canvas: &mut Canvas, s: f64) {
    canvas.paint(|_, y| {
        let t = y / s;
        [(90.0 + 100.0 * t) as f32, (150.0 + 70.0 * t) as f32, 235.0]
    });
}

fn ground(canvas: &mut Canvas, horizon: f64, c: [f64; 3]) {
    let s = canvas.width as f64;
    let parts = vec![Part::new(
        Shape::Polygon(vec![(0.0, horizon), (s, horizon), (s, s), (0.0, s)]),
        c,
        Shade::Ramp {
            y0: horizon,
            y1: s,
            top: 0.9,
            bottom: 1.05,
        },
    )];
    raster::draw(canvas, &parts, &Placement::IDENTITY, None);
}

fn disc(canvas: &mut Canvas, c: (f64, f64), r: f64, color: [f64; 3]) {
    let parts = vec![Part::new(
        Shape::Ellipse { c, r: (r, r) },
        color,
        Shade::Flat(1.0),
    )];
    raster::draw(canvas, &parts, &Placement::IDENTITY, None);
}

/// The scene's two palette colours, named.
type Pair = (Named, Named);

/// Renders general scene `index` (kinds in turn) from its own random stream.
pub fn scene(size: u32, rng: &mut SplitMix64, index: usize) -> Scene {
    let s = size as f64;
    let kind = GENERAL_KINDS[index % GENERAL_KINDS.len()];
    let pair = two_colours(rng);
    let mut canvas = Canvas::new(size, size, [255.0; 3]);
    let c = &mut canvas;
    let (text, colour) = match kind {
        "gradient" => gradient(c, rng, s, pair),
        "stripes" => stripes(c, rng, s, pair),
        "checkerboard" => checkerboard(c, rng, s, pair),
        "landscape" => landscape(c, rng, s),
        "shapes" => shapes(c, rng, s, pair),
        "house" => house(c, rng, s, pair),
        "tree" => tree(c, rng, s),
        _ => flower(c, rng, s),
    };
    Scene {
        image: canvas.to_rgb(),
        text,
        kind,
        colour,
    }
}

/// A linear gradient between the two colours, vertical, horizontal or diagonal.
fn gradient(
    canvas: &mut Canvas,
    rng: &mut SplitMix64,
    s: f64,
    ((n1, c1), (n2, c2)): Pair,
) -> (String, &'static str) {
    let dir = rng.below(3);
    canvas.paint(|x, y| {
        let t = match dir {
            0 => y / s,
            1 => x / s,
            _ => (x + y) / (2.0 * s),
        } as f32;
        [0, 1, 2].map(|k| c1[k] * (1.0 - t) + c2[k] * t)
    });
    (format!("a smooth gradient from {n1} to {n2}"), n1)
}

/// Stripes of the two colours, horizontal, vertical or diagonal.
fn stripes(
    canvas: &mut Canvas,
    rng: &mut SplitMix64,
    s: f64,
    ((n1, c1), (n2, c2)): Pair,
) -> (String, &'static str) {
    let period = s * rng.uniform(0.1, 0.25);
    let dir = rng.below(3);
    canvas.paint(|x, y| {
        let t = match dir {
            0 => y,
            1 => x,
            _ => (x + y) / std::f64::consts::SQRT_2,
        };
        if (t / period).floor() as i64 % 2 == 0 {
            c1
        } else {
            c2
        }
    });
    let d = ["horizontal", "vertical", "diagonal"][dir as usize];
    (format!("{d} {n1} and {n2} stripes"), n1)
}

/// A checkerboard of the two colours, 3 to 8 cells a side.
fn checkerboard(
    canvas: &mut Canvas,
    rng: &mut SplitMix64,
    s: f64,
    ((n1, c1), (n2, c2)): Pair,
) -> (String, &'static str) {
    let cells = rng.range_inclusive(3, 8) as f64;
    canvas.paint(|x, y| {
        let (i, j) = ((x * cells / s) as i64, (y * cells / s) as i64);
        if (i + j) % 2 == 0 {
            c1
        } else {
            c2
        }
    });
    (format!("a {n1} and {n2} checkerboard pattern"), n1)
}

/// Sky, a yellow or orange sun and two layers of green or brown hills.
fn landscape(canvas: &mut Canvas, rng: &mut SplitMix64, s: f64) -> (String, &'static str) {
    sky(canvas, s);
    let sun = if rng.chance(0.5) {
        ("yellow", [250.0, 215.0, 60.0])
    } else {
        ("orange", [245.0, 140.0, 40.0])
    };
    disc(
        canvas,
        (s * rng.uniform(0.2, 0.8), s * rng.uniform(0.12, 0.3)),
        s * 0.09,
        sun.1,
    );
    let hills = if rng.chance(0.6) {
        ("green", [60.0, 140.0, 55.0])
    } else {
        ("brown", [130.0, 95.0, 60.0])
    };
    for layer in 0..2 {
        hill_layer(canvas, rng, s, layer, hills.1);
    }
    (
        format!(
            "a landscape with {} hills and a {} sun under a blue sky",
            hills.0, sun.0
        ),
        hills.0,
    )
}

/// One sine-edged layer of hills (layer 1 lower and darker than layer 0).
fn hill_layer(canvas: &mut Canvas, rng: &mut SplitMix64, s: f64, layer: i32, colour: [f64; 3]) {
    let horizon = s * (rng.uniform(0.45, 0.6) + 0.12 * layer as f64);
    let (amp, freq, phase) = (
        s * rng.uniform(0.04, 0.1),
        rng.uniform(1.0, 3.0),
        rng.uniform(0.0, 6.3),
    );
    let mut pts: Vec<(f64, f64)> = (0..=32)
        .map(|k| {
            let x = s * k as f64 / 32.0;
            (x, horizon + amp * (x / s * freq * TAU + phase).sin())
        })
        .collect();
    pts.extend([(s, s), (0.0, s)]);
    let tone = 1.0 - 0.15 * layer as f64;
    let parts = vec![Part::new(
        Shape::Polygon(pts),
        colour.map(|v| v * tone),
        Shade::Flat(1.0),
    )];
    raster::draw(canvas, &parts, &Placement::IDENTITY, None);
}

/// Five to nine circles and triangles of the two colours on a grey background.
fn shapes(
    canvas: &mut Canvas,
    rng: &mut SplitMix64,
    s: f64,
    ((n1, c1), (n2, c2)): Pair,
) -> (String, &'static str) {
    let bg = [120.0 + rng.uniform(0.0, 60.0); 3].map(|v| v as f32);
    canvas.paint(|_, _| bg);
    for k in 0..rng.range_inclusive(5, 9) {
        let c = if k % 2 == 0 { c1 } else { c2 }.map(|v| v as f64);
        let shape = circle_or_triangle(rng, s);
        raster::draw(
            canvas,
            &[Part::new(shape, c, Shade::Flat(1.0))],
            &Placement::IDENTITY,
            None,
        );
    }
    (
        format!("scattered {n1} and {n2} circles and triangles on a grey background"),
        n1,
    )
}

/// A random circle or (randomly turned) equilateral triangle somewhere on the canvas.
fn circle_or_triangle(rng: &mut SplitMix64, s: f64) -> Shape {
    let (x, y, r) = (
        rng.uniform(0.1, 0.9) * s,
        rng.uniform(0.1, 0.9) * s,
        s * rng.uniform(0.06, 0.14),
    );
    if rng.chance(0.5) {
        Shape::Ellipse {
            c: (x, y),
            r: (r, r),
        }
    } else {
        let a = rng.uniform(0.0, TAU);
        Shape::Polygon(
            (0..3)
                .map(|i| {
                    let t = a + TAU * i as f64 / 3.0;
                    (x + r * t.cos(), y + r * t.sin())
                })
                .collect(),
        )
    }
}

/// A house (walls in the first colour, roof, door, two windows) on grass under a sky.
fn house(
    canvas: &mut Canvas,
    rng: &mut SplitMix64,
    s: f64,
    ((n1, c1), _): Pair,
) -> (String, &'static str) {
    sky(canvas, s);
    let horizon = s * rng.uniform(0.65, 0.75);
    ground(canvas, horizon, [70.0, 150.0, 60.0]);
    let (w, h) = (s * rng.uniform(0.35, 0.5), s * rng.uniform(0.25, 0.32));
    let x0 = s * rng.uniform(0.1, 0.9) - w / 2.0;
    let x0 = x0.clamp(2.0, s - w - 2.0);
    let parts = house_parts(s, horizon, x0, (w, h), c1.map(|v| v as f64));
    raster::draw(canvas, &parts, &Placement::IDENTITY, None);
    (
        format!("a {n1} house with a brown roof on green grass under a blue sky"),
        n1,
    )
}

/// The parts of a house `w` by `h` at `x0` standing on `horizon`: wall, roof, door, windows.
fn house_parts(s: f64, horizon: f64, x0: f64, (w, h): (f64, f64), wall: [f64; 3]) -> Vec<Part> {
    let roof = [120.0, 60.0, 45.0];
    let top = horizon + s * 0.03 - h;
    let window = |fx0: f64, fx1: f64| {
        Part::new(
            Shape::Polygon(rounded_rect(
                x0 + w * fx0,
                top + h * 0.2,
                x0 + w * fx1,
                top + h * 0.45,
                0.0,
            )),
            [200.0, 225.0, 240.0],
            Shade::Flat(1.0),
        )
    };
    vec![
        Part::new(
            Shape::Polygon(rounded_rect(x0, top, x0 + w, horizon + s * 0.03, 0.0)),
            wall,
            Shade::Flat(0.95),
        ),
        Part::new(
            Shape::Polygon(vec![
                (x0 - w * 0.08, top + 0.5),
                (x0 + w / 2.0, top - h * 0.6),
                (x0 + w * 1.08, top + 0.5),
            ]),
            roof,
            Shade::Flat(1.0),
        ),
        Part::new(
            Shape::Polygon(rounded_rect(
                x0 + w * 0.4,
                horizon + s * 0.03 - h * 0.55,
                x0 + w * 0.6,
                horizon + s * 0.03,
                0.0,
            )),
            [90.0, 60.0, 40.0],
            Shade::Flat(1.0),
        ),
        window(0.1, 0.3),
        window(0.7, 0.9),
    ]
}

/// A tree (trunk and a green or orange crown) on a meadow under a sky.
fn tree(canvas: &mut Canvas, rng: &mut SplitMix64, s: f64) -> (String, &'static str) {
    sky(canvas, s);
    let horizon = s * rng.uniform(0.7, 0.8);
    ground(canvas, horizon, [80.0, 155.0, 65.0]);
    let crown = if rng.chance(0.6) {
        ("green", [40.0, 120.0, 45.0])
    } else {
        ("orange", [225.0, 120.0, 35.0])
    };
    let x = s * rng.uniform(0.3, 0.7);
    let r = s * rng.uniform(0.18, 0.25);
    let trunk_top = horizon - s * 0.3;
    let parts = vec![
        Part::new(
            Shape::Polygon(rounded_rect(
                x - s * 0.035,
                trunk_top,
                x + s * 0.035,
                horizon + s * 0.02,
                0.0,
            )),
            [110.0, 75.0, 45.0],
            Shade::Cylinder {
                x0: x - s * 0.035,
                x1: x + s * 0.035,
            },
        ),
        Part::new(
            Shape::Ellipse {
                c: (x, trunk_top - r * 0.5),
                r: (r, r * 1.05),
            },
            crown.1,
            Shade::Sphere {
                c: (x, trunk_top - r * 0.5),
                r: r * 1.05,
            },
        ),
    ];
    raster::draw(canvas, &parts, &Placement::IDENTITY, None);
    (
        format!(
            "a tree with {} leaves on a meadow under a blue sky",
            crown.0
        ),
        crown.0,
    )
}

/// A flower (stem, six petals in a flower colour, yellow heart) on a light background.
fn flower(canvas: &mut Canvas, rng: &mut SplitMix64, s: f64) -> (String, &'static str) {
    let bg = [235.0, 232.0, 220.0].map(|v: f32| v - rng.uniform(0.0, 40.0) as f32);
    canvas.paint(|_, _| bg);
    let (x, y) = (s * rng.uniform(0.4, 0.6), s * rng.uniform(0.3, 0.45));
    let r = s * rng.uniform(0.08, 0.12);
    // petals in a flower colour (not the stem's green, nor black)
    let (n1, petal) = COLOURS[[0, 2, 3, 5, 6, 7][rng.below(6) as usize]];
    let petal = petal.map(|v| v as f64);
    let mut parts = vec![Part::new(
        Shape::Stroke {
            pts: vec![(x, y), (x + s * 0.03, s * 0.95)],
            width: s * 0.03,
        },
        [50.0, 130.0, 50.0],
        Shade::Flat(1.0),
    )];
    for k in 0..6 {
        let a = TAU * k as f64 / 6.0;
        let c = (x + r * a.cos(), y + r * a.sin());
        parts.push(Part::new(
            Shape::Ellipse {
                c,
                r: (r * 0.7, r * 0.7),
            },
            petal,
            Shade::Sphere { c, r: r * 0.7 },
        ));
    }
    parts.push(Part::new(
        Shape::Ellipse {
            c: (x, y),
            r: (r * 0.55, r * 0.55),
        },
        [245.0, 205.0, 50.0],
        Shade::Flat(1.0),
    ));
    raster::draw(canvas, &parts, &Placement::IDENTITY, None);
    (
        format!("a {n1} flower with a green stem on a light background"),
        n1,
    )
}
