//! Colour: sRGB (IEC 61966-2-1) to CIELAB under D65 (2 degree observer), and the CIEDE2000
//! colour difference exactly as written out by Sharma, Wu and Dalal (2005), "The CIEDE2000
//! color-difference formula: implementation notes, supplementary test data, and mathematical
//! observations", Color Res. Appl. 30(1), with kL = kC = kH = 1.
use image::RgbImage;
use std::sync::OnceLock;

/// A CIELAB colour: L* (0..100), a*, b*.
pub type Lab = [f64; 3];

/// The D65 reference white (X, Y, Z), Y = 1.
pub const D65: [f64; 3] = [0.95047, 1.0, 1.08883];

/// Linear-light value of each 8-bit sRGB code.
fn linear_lut() -> &'static [f64; 256] {
    static LUT: OnceLock<[f64; 256]> = OnceLock::new();
    LUT.get_or_init(|| {
        let mut t = [0.0; 256];
        for (i, v) in t.iter_mut().enumerate() {
            let c = i as f64 / 255.0;
            *v = if c <= 0.04045 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            };
        }
        t
    })
}

fn f_lab(t: f64) -> f64 {
    const EPS: f64 = 216.0 / 24389.0;
    const KAPPA: f64 = 24389.0 / 27.0;
    if t > EPS {
        t.cbrt()
    } else {
        (KAPPA * t + 16.0) / 116.0
    }
}

/// CIE XYZ (Y = 1 for white) to CIELAB relative to D65.
pub fn xyz_to_lab(xyz: [f64; 3]) -> Lab {
    let fx = f_lab(xyz[0] / D65[0]);
    let fy = f_lab(xyz[1] / D65[1]);
    let fz = f_lab(xyz[2] / D65[2]);
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// An 8-bit sRGB colour in CIELAB (D65).
pub fn srgb_to_lab(rgb: [u8; 3]) -> Lab {
    let lut = linear_lut();
    let (r, g, b) = (
        lut[rgb[0] as usize],
        lut[rgb[1] as usize],
        lut[rgb[2] as usize],
    );
    xyz_to_lab([
        0.4124564 * r + 0.3575761 * g + 0.1804375 * b,
        0.2126729 * r + 0.7151522 * g + 0.0721750 * b,
        0.0193339 * r + 0.1191920 * g + 0.9503041 * b,
    ])
}

/// Every pixel of `img` in CIELAB, row-major.
pub fn lab_image(img: &RgbImage) -> Vec<Lab> {
    img.pixels().map(|p| srgb_to_lab(p.0)).collect()
}

/// C*ab, the chroma.
pub fn chroma(lab: Lab) -> f64 {
    lab[1].hypot(lab[2])
}

/// The CIEDE2000 colour difference of two CIELAB colours (Sharma et al. 2005, eqs. 2-22).
pub fn ciede2000(lab1: Lab, lab2: Lab) -> f64 {
    let [l1, a1, b1] = lab1;
    let [l2, a2, b2] = lab2;
    let c_bar = (a1.hypot(b1) + a2.hypot(b2)) / 2.0;
    let c7 = c_bar.powi(7);
    let g = 0.5 * (1.0 - (c7 / (c7 + 25f64.powi(7))).sqrt());
    let (ap1, ap2) = ((1.0 + g) * a1, (1.0 + g) * a2);
    let (cp1, cp2) = (ap1.hypot(b1), ap2.hypot(b2));
    let hue = |b: f64, ap: f64| {
        if b == 0.0 && ap == 0.0 {
            0.0
        } else {
            b.atan2(ap).to_degrees().rem_euclid(360.0)
        }
    };
    let (hp1, hp2) = (hue(b1, ap1), hue(b2, ap2));
    let dl = l2 - l1;
    let dc = cp2 - cp1;
    let product = cp1 * cp2;
    let dh = if product == 0.0 {
        0.0
    } else {
        let d = hp2 - hp1;
        if d.abs() <= 180.0 {
            d
        } else if d > 180.0 {
            d - 360.0
        } else {
            d + 360.0
        }
    };
    let dh_big = 2.0 * product.sqrt() * (dh.to_radians() / 2.0).sin();
    let l_bar = (l1 + l2) / 2.0;
    let cp_bar = (cp1 + cp2) / 2.0;
    let hp_bar = if product == 0.0 {
        hp1 + hp2
    } else if (hp1 - hp2).abs() <= 180.0 {
        (hp1 + hp2) / 2.0
    } else if hp1 + hp2 < 360.0 {
        (hp1 + hp2 + 360.0) / 2.0
    } else {
        (hp1 + hp2 - 360.0) / 2.0
    };
    let cos_deg = |d: f64| d.to_radians().cos();
    let t = 1.0 - 0.17 * cos_deg(hp_bar - 30.0)
        + 0.24 * cos_deg(2.0 * hp_bar)
        + 0.32 * cos_deg(3.0 * hp_bar + 6.0)
        - 0.20 * cos_deg(4.0 * hp_bar - 63.0);
    let d_theta = 30.0 * (-((hp_bar - 275.0) / 25.0).powi(2)).exp();
    let cp7 = cp_bar.powi(7);
    let rc = 2.0 * (cp7 / (cp7 + 25f64.powi(7))).sqrt();
    let l50 = (l_bar - 50.0).powi(2);
    let sl = 1.0 + 0.015 * l50 / (20.0 + l50).sqrt();
    let sc = 1.0 + 0.045 * cp_bar;
    let sh = 1.0 + 0.015 * cp_bar * t;
    let rt = -(2.0 * d_theta).to_radians().sin() * rc;
    let (x, y, z) = (dl / sl, dc / sc, dh_big / sh);
    (x * x + y * y + z * z + rt * y * z).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Table 1 of Sharma, Wu and Dalal (2005): L1 a1 b1, L2 a2 b2, Delta E 2000.
    const SHARMA: [[f64; 7]; 34] = [
        [50.0000, 2.6772, -79.7751, 50.0000, 0.0000, -82.7485, 2.0425],
        [50.0000, 3.1571, -77.2803, 50.0000, 0.0000, -82.7485, 2.8615],
        [50.0000, 2.8361, -74.0200, 50.0000, 0.0000, -82.7485, 3.4412],
        [
            50.0000, -1.3802, -84.2814, 50.0000, 0.0000, -82.7485, 1.0000,
        ],
        [
            50.0000, -1.1848, -84.8006, 50.0000, 0.0000, -82.7485, 1.0000,
        ],
        [
            50.0000, -0.9009, -85.5211, 50.0000, 0.0000, -82.7485, 1.0000,
        ],
        [50.0000, 0.0000, 0.0000, 50.0000, -1.0000, 2.0000, 2.3669],
        [50.0000, -1.0000, 2.0000, 50.0000, 0.0000, 0.0000, 2.3669],
        [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0009, 7.1792],
        [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0010, 7.1792],
        [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0011, 7.2195],
        [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0012, 7.2195],
        [50.0000, -0.0010, 2.4900, 50.0000, 0.0009, -2.4900, 4.8045],
        [50.0000, -0.0010, 2.4900, 50.0000, 0.0010, -2.4900, 4.8045],
        [50.0000, -0.0010, 2.4900, 50.0000, 0.0011, -2.4900, 4.7461],
        [50.0000, 2.5000, 0.0000, 50.0000, 0.0000, -2.5000, 4.3065],
        [50.0000, 2.5000, 0.0000, 73.0000, 25.0000, -18.0000, 27.1492],
        [50.0000, 2.5000, 0.0000, 61.0000, -5.0000, 29.0000, 22.8977],
        [50.0000, 2.5000, 0.0000, 56.0000, -27.0000, -3.0000, 31.9030],
        [50.0000, 2.5000, 0.0000, 58.0000, 24.0000, 15.0000, 19.4535],
        [50.0000, 2.5000, 0.0000, 50.0000, 3.1736, 0.5854, 1.0000],
        [50.0000, 2.5000, 0.0000, 50.0000, 3.2972, 0.0000, 1.0000],
        [50.0000, 2.5000, 0.0000, 50.0000, 1.8634, 0.5757, 1.0000],
        [50.0000, 2.5000, 0.0000, 50.0000, 3.2592, 0.3350, 1.0000],
        [
            60.2574, -34.0099, 36.2677, 60.4626, -34.1751, 39.4387, 1.2644,
        ],
        [
            63.0109, -31.0961, -5.8663, 62.8187, -29.7946, -4.0864, 1.2630,
        ],
        [61.2901, 3.7196, -5.3901, 61.4292, 2.2480, -4.9620, 1.8731],
        [35.0831, -44.1164, 3.7933, 35.0232, -40.0716, 1.5901, 1.8645],
        [
            22.7233, 20.0904, -46.6940, 23.0331, 14.9730, -42.5619, 2.0373,
        ],
        [36.4612, 47.8580, 18.3852, 36.2715, 50.5065, 21.2231, 1.4146],
        [90.8027, -2.0831, 1.4410, 91.1528, -1.6435, 0.0447, 1.4441],
        [90.9257, -0.5406, -0.9208, 88.6381, -0.8985, -0.7239, 1.5381],
        [6.7747, -0.2908, -2.4247, 5.8714, -0.0985, -2.2286, 0.6377],
        [2.0776, 0.0795, -1.1350, 0.9033, -0.0636, -0.5514, 0.9082],
    ];

    #[test]
    fn ciede2000_matches_sharmas_34_pairs_to_4_decimals() {
        for (i, r) in SHARMA.iter().enumerate() {
            let a = [r[0], r[1], r[2]];
            let b = [r[3], r[4], r[5]];
            let de = ciede2000(a, b);
            assert!(
                (de - r[6]).abs() < 5e-5,
                "pair {}: {de:.6} vs {}",
                i + 1,
                r[6]
            );
            // symmetric, as the paper notes
            assert!((ciede2000(b, a) - de).abs() < 1e-12, "pair {}", i + 1);
        }
        assert_eq!(ciede2000([40.0, 10.0, -5.0], [40.0, 10.0, -5.0]), 0.0);
    }

    #[test]
    fn srgb_white_black_and_primaries() {
        let w = srgb_to_lab([255, 255, 255]);
        assert!(
            (w[0] - 100.0).abs() < 1e-3 && w[1].abs() < 1e-2 && w[2].abs() < 1e-2,
            "{w:?}"
        );
        assert_eq!(srgb_to_lab([0, 0, 0]), [0.0, 0.0, 0.0]);
        // sRGB red in CIELAB D65 (e.g. Lindbloom's calculator): 53.24, 80.09, 67.20
        let r = srgb_to_lab([255, 0, 0]);
        assert!(
            (r[0] - 53.24).abs() < 0.01
                && (r[1] - 80.09).abs() < 0.02
                && (r[2] - 67.20).abs() < 0.02,
            "{r:?}"
        );
        // greys are achromatic
        let g = srgb_to_lab([128, 128, 128]);
        assert!(chroma(g) < 0.01 && (g[0] - 53.59).abs() < 0.01, "{g:?}");
    }
}
