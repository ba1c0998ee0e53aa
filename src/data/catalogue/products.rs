//! The products: mug, bottle, box, ball, bag and shoe, each a few anti-aliased parts (body,
//! rim, handle, cap, label, flap, strap, sole, laces) in local coordinates (x right, y down, the
//! product standing on y = 0), with proportions varied per instance by the generator.
use super::super::rng::SplitMix64;
use super::raster::{arc, rounded_rect, Part, Shade, Shape};
use std::f64::consts::{FRAC_PI_2, PI};

/// Product kinds, in the order the catalogue cycles through them.
pub const KINDS: [&str; 6] = ["mug", "bottle", "box", "ball", "bag", "shoe"];

/// Product colours (name, sRGB), in the order the catalogue cycles through them.
pub const COLOURS: [(&str, [u8; 3]); 8] = [
    ("red", [200, 32, 36]),
    ("green", [38, 150, 66]),
    ("blue", [36, 82, 205]),
    ("yellow", [242, 202, 32]),
    ("black", [40, 40, 44]),
    ("white", [240, 240, 237]),
    ("orange", [240, 126, 30]),
    ("purple", [126, 52, 168]),
];

/// Sizes: the name and the share of the image side the studio photo gives the product's larger
/// dimension.
pub const SIZES: [(&str, f64); 3] = [("small", 0.5), ("medium", 0.6), ("large", 0.7)];

fn rgb(c: [u8; 3]) -> [f64; 3] {
    c.map(|v| v as f64)
}

/// A neutral accent that stands out from the body colour (caps, soles).
fn accent(colour: &str) -> [f64; 3] {
    if colour == "black" || colour == "purple" || colour == "blue" {
        [200.0, 200.0, 204.0]
    } else {
        [52.0, 52.0, 56.0]
    }
}

/// The parts of one product of `kind` in `colour`, proportions drawn from `rng`.
pub fn product(kind: &str, colour: [u8; 3], colour_name: &str, rng: &mut SplitMix64) -> Vec<Part> {
    let c = rgb(colour);
    match kind {
        "mug" => mug(c, rng),
        "bottle" => bottle(c, colour_name, rng),
        "box" => boxed(c, rng),
        "ball" => ball(c, rng),
        "bag" => bag(c, colour_name, rng),
        _ => shoe(c, colour_name, rng),
    }
}

fn mug(c: [f64; 3], rng: &mut SplitMix64) -> Vec<Part> {
    let w = rng.uniform(0.62, 0.74);
    let h = rng.uniform(0.72, 0.9);
    let (x0, x1) = (-w / 2.0, w / 2.0);
    let cyl = Shade::Cylinder { x0, x1 };
    let rim = 0.07;
    let handle_r = (rng.uniform(0.17, 0.22), h * rng.uniform(0.25, 0.3));
    let handle_c = (x1 - 0.02, -h * 0.52);
    vec![
        // the handle first: the body hides its ends
        Part::new(
            Shape::Stroke {
                pts: arc(handle_c, handle_r, -FRAC_PI_2, FRAC_PI_2, 16),
                width: 0.075,
            },
            c,
            Shade::Flat(0.78),
        ),
        Part::new(
            Shape::Ellipse {
                c: (0.0, -rim * 0.9),
                r: (w / 2.0, rim),
            },
            c,
            cyl,
        )
        .tone(0.92),
        Part::new(
            Shape::Polygon(vec![(x0, -h), (x1, -h), (x1, -rim * 0.9), (x0, -rim * 0.9)]),
            c,
            cyl,
        )
        .gloss(0.35),
        Part::new(
            Shape::Ellipse {
                c: (0.0, -h),
                r: (w / 2.0, rim),
            },
            c,
            Shade::Flat(1.04),
        ),
        Part::new(
            Shape::Ellipse {
                c: (0.0, -h + 0.008),
                r: (w / 2.0 - 0.04, rim - 0.022),
            },
            c,
            Shade::Flat(0.42),
        ),
    ]
}

fn bottle(c: [f64; 3], colour: &str, rng: &mut SplitMix64) -> Vec<Part> {
    let w = rng.uniform(0.32, 0.42);
    let body = rng.uniform(0.5, 0.6);
    let shoulder = rng.uniform(0.1, 0.16);
    let neck_w = w * rng.uniform(0.3, 0.4);
    let neck = rng.uniform(0.12, 0.18);
    let cap = 0.08;
    let (x0, x1) = (-w / 2.0, w / 2.0);
    let cyl = Shade::Cylinder { x0, x1 };
    let top_body = -body;
    let top_neck = top_body - shoulder - neck;
    let mut body_pts = rounded_rect(x0, top_body, x1, 0.0, 0.05);
    body_pts.retain(|p| p.1 > top_body + 0.049); // keep the bottom corners round, the top square
    body_pts.splice(0..0, [(x1, top_body)]);
    body_pts.push((x0, top_body));
    let mut parts = vec![
        Part::new(Shape::Polygon(body_pts), c, cyl).gloss(0.5),
        Part::new(
            Shape::Polygon(vec![
                (x0, top_body + 0.001),
                (x1, top_body + 0.001),
                (neck_w / 2.0, top_body - shoulder),
                (-neck_w / 2.0, top_body - shoulder),
            ]),
            c,
            cyl,
        )
        .gloss(0.5),
        Part::new(
            Shape::Polygon(vec![
                (-neck_w / 2.0, top_body - shoulder + 0.001),
                (neck_w / 2.0, top_body - shoulder + 0.001),
                (neck_w / 2.0, top_neck),
                (-neck_w / 2.0, top_neck),
            ]),
            c,
            Shade::Cylinder {
                x0: -neck_w / 2.0,
                x1: neck_w / 2.0,
            },
        ),
        Part::new(
            Shape::Polygon(rounded_rect(
                -neck_w / 2.0 - 0.012,
                top_neck - cap,
                neck_w / 2.0 + 0.012,
                top_neck + 0.01,
                0.015,
            )),
            accent(colour),
            Shade::Cylinder {
                x0: -neck_w / 2.0,
                x1: neck_w / 2.0,
            },
        ),
    ];
    if rng.chance(0.5) {
        let (ly0, ly1) = (-body * 0.62, -body * 0.3);
        let label = if colour == "white" {
            [200.0, 60.0, 50.0]
        } else {
            [236.0, 230.0, 212.0]
        };
        parts.push(Part::new(
            Shape::Polygon(vec![(x0, ly0), (x1, ly0), (x1, ly1), (x0, ly1)]),
            label,
            cyl,
        ));
    }
    parts
}

fn boxed(c: [f64; 3], rng: &mut SplitMix64) -> Vec<Part> {
    let w = rng.uniform(0.6, 0.8);
    let h = rng.uniform(0.45, 0.7);
    let (dx, dy) = (w * rng.uniform(0.28, 0.36), -w * rng.uniform(0.2, 0.26));
    let x0 = -(w + dx) / 2.0;
    let x1 = x0 + w;
    let front = vec![(x0, -h), (x1, -h), (x1, 0.0), (x0, 0.0)];
    let top = vec![(x0, -h), (x0 + dx, -h + dy), (x1 + dx, -h + dy), (x1, -h)];
    let side = vec![(x1, -h), (x1 + dx, -h + dy), (x1 + dx, dy), (x1, 0.0)];
    let edge =
        |pts: Vec<(f64, f64)>| Part::new(Shape::Stroke { pts, width: 0.014 }, c, Shade::Flat(0.6));
    let tape_w = w * 0.16;
    let tx = (x0 + x1) / 2.0;
    vec![
        Part::new(
            Shape::Polygon(front),
            c,
            Shade::Ramp {
                y0: -h,
                y1: 0.0,
                top: 0.98,
                bottom: 0.86,
            },
        ),
        Part::new(Shape::Polygon(top), c, Shade::Flat(1.18)),
        Part::new(
            Shape::Polygon(side),
            c,
            Shade::Ramp {
                y0: -h,
                y1: 0.0,
                top: 0.7,
                bottom: 0.6,
            },
        ),
        // packing tape over the lid and down the front
        Part::new(
            Shape::Polygon(vec![
                (tx - tape_w / 2.0, -h),
                (tx - tape_w / 2.0 + dx, -h + dy),
                (tx + tape_w / 2.0 + dx, -h + dy),
                (tx + tape_w / 2.0, -h),
            ]),
            c,
            Shade::Flat(1.05),
        )
        .tone(0.93),
        Part::new(
            Shape::Polygon(vec![
                (tx - tape_w / 2.0, -h),
                (tx + tape_w / 2.0, -h),
                (tx + tape_w / 2.0, -h * 0.72),
                (tx - tape_w / 2.0, -h * 0.72),
            ]),
            c,
            Shade::Flat(0.86),
        ),
        edge(vec![(x0, -h), (x1, -h), (x1 + dx, -h + dy)]),
        edge(vec![(x1, -h), (x1, 0.0)]),
    ]
}

fn ball(c: [f64; 3], rng: &mut SplitMix64) -> Vec<Part> {
    let r = 0.5;
    let centre = (0.0, -r);
    let sphere = Shade::Sphere { c: centre, r };
    let tilt = rng.uniform(-0.4, 0.4);
    let seam =
        |pts: Vec<(f64, f64)>| Part::new(Shape::Stroke { pts, width: 0.03 }, c, sphere).tone(0.62);
    let (s, co) = tilt.sin_cos();
    let rot = |p: (f64, f64)| (centre.0 + co * p.0 - s * p.1, centre.1 + s * p.0 + co * p.1);
    let vertical: Vec<_> = arc((0.0, 0.0), (r * 0.42, r * 0.99), -FRAC_PI_2, FRAC_PI_2, 20)
        .into_iter()
        .map(rot)
        .collect();
    let horizontal: Vec<_> = arc((0.0, 0.0), (r * 0.99, r * 0.3), 0.0, PI, 20)
        .into_iter()
        .map(rot)
        .collect();
    vec![
        Part::new(
            Shape::Ellipse {
                c: centre,
                r: (r, r),
            },
            c,
            sphere,
        )
        .gloss(0.6),
        seam(vertical),
        seam(horizontal),
    ]
}

fn bag(c: [f64; 3], colour: &str, rng: &mut SplitMix64) -> Vec<Part> {
    let top_w = rng.uniform(0.6, 0.7);
    let bottom_w = top_w + rng.uniform(0.12, 0.22);
    let h = rng.uniform(0.5, 0.6);
    let handle_h = rng.uniform(0.22, 0.3);
    let cyl = Shade::Cylinder {
        x0: -bottom_w / 2.0,
        x1: bottom_w / 2.0,
    };
    let mut body = vec![(-top_w / 2.0, -h), (top_w / 2.0, -h)];
    body.extend(arc(
        (bottom_w / 2.0 - 0.06, -0.06),
        (0.06, 0.06),
        -0.3,
        FRAC_PI_2,
        4,
    ));
    body.extend(arc(
        (-bottom_w / 2.0 + 0.06, -0.06),
        (0.06, 0.06),
        FRAC_PI_2,
        PI + 0.3,
        4,
    ));
    let flap_y = -h * rng.uniform(0.55, 0.65);
    let slope = (bottom_w - top_w) / 2.0 / h;
    let at = |y: f64| top_w / 2.0 + slope * (y + h);
    let clasp = if colour == "yellow" || colour == "orange" {
        [120.0, 90.0, 40.0]
    } else {
        [212.0, 178.0, 84.0]
    };
    vec![
        Part::new(
            Shape::Stroke {
                pts: arc((0.0, -h), (top_w * 0.3, handle_h), PI, 2.0 * PI, 18),
                width: 0.05,
            },
            c,
            Shade::Flat(0.72),
        ),
        Part::new(Shape::Polygon(body), c, cyl).gloss(0.2),
        Part::new(
            Shape::Polygon(vec![
                (-top_w / 2.0, -h),
                (top_w / 2.0, -h),
                (at(flap_y), flap_y),
                (0.0, flap_y + 0.05),
                (-at(flap_y), flap_y),
            ]),
            c,
            cyl,
        )
        .tone(0.86),
        Part::new(
            Shape::Ellipse {
                c: (0.0, flap_y + 0.035),
                r: (0.035, 0.03),
            },
            clasp,
            Shade::Flat(1.0),
        ),
    ]
}

/// A sneaker seen from the side, pointing left or right: upper, sole, collar, stripe, laces.
fn shoe(c: [f64; 3], colour: &str, rng: &mut SplitMix64) -> Vec<Part> {
    let flip = if rng.chance(0.5) { -1.0 } else { 1.0 };
    let hh = rng.uniform(0.36, 0.44);
    let sole_h = 0.085;
    let f = |pts: &[(f64, f64)]| mirror(pts, flip);
    let sole_c = if colour == "white" {
        [70.0, 70.0, 74.0]
    } else {
        [238.0, 236.0, 230.0]
    };
    let lace_c = if colour == "white" {
        [60.0, 60.0, 64.0]
    } else {
        [245.0, 245.0, 245.0]
    };
    let (upper, sole) = shoe_outline(hh, sole_h, flip);
    let ramp = Shade::Ramp {
        y0: -hh,
        y1: 0.0,
        top: 1.02,
        bottom: 0.8,
    };
    let mut parts = vec![
        Part::new(Shape::Polygon(upper), c, ramp),
        Part::new(
            Shape::Polygon(sole),
            sole_c,
            Shade::Ramp {
                y0: -sole_h,
                y1: 0.0,
                top: 1.0,
                bottom: 0.86,
            },
        ),
        Part::new(
            Shape::Ellipse {
                c: (0.3 * flip, -hh * 0.96),
                r: (0.13, 0.035),
            },
            c,
            Shade::Flat(0.32),
        ),
        Part::new(
            Shape::Stroke {
                pts: f(&[(-0.3, -sole_h - 0.05), (0.0, -hh * 0.42), (0.3, -hh * 0.55)]),
                width: 0.045,
            },
            c,
            Shade::Flat(1.25),
        ),
    ];
    parts.extend(laces(hh, flip, lace_c));
    parts
}

/// `pts` mirrored left-right when `flip` is -1.
fn mirror(pts: &[(f64, f64)], flip: f64) -> Vec<(f64, f64)> {
    pts.iter().map(|p| (p.0 * flip, p.1)).collect::<Vec<_>>()
}

/// A polygon's points.
type Outline = Vec<(f64, f64)>;

/// The shoe's upper and sole polygons (`hh` the upper's height, `sole_h` the sole's).
fn shoe_outline(hh: f64, sole_h: f64, flip: f64) -> (Outline, Outline) {
    let upper = mirror(
        &[
            (0.48, -sole_h + 0.01),
            (0.5, -hh * 0.82),
            (0.44, -hh),
            (0.3, -hh * 1.02),
            (0.14, -hh * 0.86),
            (-0.02, -hh * 0.8),
            (-0.22, -hh * 0.56),
            (-0.4, -hh * 0.42),
            (-0.49, -hh * 0.3),
            (-0.5, -sole_h + 0.01),
        ],
        flip,
    );
    let sole = mirror(
        &[
            (0.5, 0.0),
            (-0.44, 0.0),
            (-0.5, -0.03),
            (-0.5, -sole_h),
            (0.5, -sole_h),
        ],
        flip,
    );
    (upper, sole)
}

/// Three laces across the instep, just below the top line (-0.22, -0.56 hh) .. (-0.02, -0.8 hh).
fn laces(hh: f64, flip: f64, lace_c: [f64; 3]) -> Vec<Part> {
    (0..3)
        .map(|k| {
            let t = 0.2 + 0.3 * k as f64;
            let (x, y) = (-0.22 + 0.2 * t, -hh * (0.56 + 0.24 * t) + 0.05);
            Part::new(
                Shape::Stroke {
                    pts: mirror(&[(x - 0.035, y - 0.03), (x + 0.035, y + 0.025)], flip),
                    width: 0.026,
                },
                lace_c,
                Shade::Flat(1.0),
            )
        })
        .collect()
}
