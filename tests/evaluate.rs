//! The studio-ize metrics against scikit-image (fixtures of tools/make_evaluate_fixtures.py),
//! and `studioize evaluate` on a catalogue and on a compare folder.
mod common;

use common::fixtures;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use studioize::evaluate::color::{ciede2000, srgb_to_lab};
use studioize::evaluate::psnr::psnr;
use studioize::evaluate::ssim::{masked_mean, ssim, ssim_map};
use studioize::evaluate::Mask;
use studioize::imageio::read_rgb;

fn dir() -> PathBuf {
    fixtures().join("evaluate")
}

fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("expected.json")).unwrap()).unwrap()
}

#[test]
fn ssim_and_psnr_match_scikit_image() {
    let e = expected();
    for (name, want) in e["pairs"].as_object().unwrap() {
        let a = read_rgb(&dir().join(format!("{name}-a.png"))).unwrap();
        let b = read_rgb(&dir().join(format!("{name}-b.png"))).unwrap();
        let f = |k: &str| want[k].as_f64().unwrap();
        let s = ssim(&a, &b).unwrap();
        assert!(
            (s - f("ssim")).abs() < 1e-9,
            "{name}: ssim {s} vs {}",
            f("ssim")
        );
        let map = ssim_map(&a, &b).unwrap();
        let w = a.width() as usize;
        let (cy, cx) = (a.height() as usize / 2, a.width() as usize / 2);
        assert!(
            (map[0] - f("ssim_map_corner")).abs() < 1e-9,
            "{name}: corner {}",
            map[0]
        );
        assert!(
            (map[cy * w + cx] - f("ssim_map_centre")).abs() < 1e-9,
            "{name}: centre"
        );
        let p = psnr(&a, &b).unwrap();
        assert!(
            (p - f("psnr")).abs() < 1e-9,
            "{name}: psnr {p} vs {}",
            f("psnr")
        );
        if let Some(m) = want.get("ssim_masked") {
            let mask = Mask::read(&dir().join(format!("{name}-mask.png"))).unwrap();
            let got = masked_mean(&map, &mask.inside).unwrap();
            assert!(
                (got - m.as_f64().unwrap()).abs() < 1e-9,
                "{name}: masked {got}"
            );
        }
    }
}

#[test]
fn cielab_and_ciede2000_match_scikit_image() {
    let e = expected();
    let c = &e["colours"];
    let rgb = c["rgb"].as_array().unwrap();
    let lab: Vec<[f64; 3]> = c["lab"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let v = v.as_array().unwrap();
            [0, 1, 2].map(|k| v[k].as_f64().unwrap())
        })
        .collect();
    for (px, want) in rgb.iter().zip(&lab) {
        let px = px.as_array().unwrap();
        let got = srgb_to_lab([0, 1, 2].map(|k| px[k].as_u64().unwrap() as u8));
        // scikit-image's sRGB matrix is rounded to 6 digits; ours is IEC 61966-2-1's 7
        for k in 0..3 {
            assert!(
                (got[k] - want[k]).abs() < 0.01,
                "{px:?}: {got:?} vs {want:?}"
            );
        }
    }
    for (k, d) in c["ciede2000_consecutive"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let got = ciede2000(lab[k], lab[k + 1]);
        assert!(
            (got - d.as_f64().unwrap()).abs() < 1e-9,
            "pair {k}: {got} vs {d}"
        );
    }
}

fn studioize(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_studioize"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn col(h: &[String], rows: &[Vec<String>], name: &str) -> Vec<f64> {
    let k = h
        .iter()
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("no {name} in {h:?}"));
    rows.iter()
        .map(|r| r[k].parse::<f64>().unwrap_or(f64::NAN))
        .collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn evaluate_cli_on_a_catalogue_and_a_compare_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let cat = tmp.path().join("cat");
    let s = |p: &Path| p.display().to_string();
    ok(studioize(&[
        "make-catalogue",
        &s(&cat),
        "--products",
        "12",
        "--general",
        "0",
        "--seed",
        "3",
    ]));
    let (casual, studio, masks) = (cat.join("casual"), cat.join("studio"), cat.join("masks"));

    // "outputs" that are the studio photos: clean backgrounds, exact reference
    let out = tmp.path().join("m.csv");
    let log = ok(studioize(&[
        "evaluate",
        "--inputs",
        &s(&casual),
        "--outputs",
        &s(&studio),
        "--masks",
        &s(&masks),
        "--mask-suffix",
        "-casual",
        "--reference",
        &s(&studio),
        "--out",
        &s(&out),
    ]));
    assert!(log.contains("12 images"), "{log}");
    let (h, rows) = common::read_csv_table(&out);
    assert_eq!(
        h,
        [
            "input",
            "output",
            "background_cleanliness_in",
            "background_cleanliness_out",
            "delta_e2000",
            "ssim_product",
            "psnr_reference",
            "ssim_reference"
        ]
    );
    assert_eq!(rows.len(), 12);
    assert_eq!(rows[0][0], "p00000.png");
    let cin = mean(&col(&h, &rows, "background_cleanliness_in"));
    let cout = mean(&col(&h, &rows, "background_cleanliness_out"));
    assert!(cin < 0.2 && cout > 0.6, "cleanliness {cin} -> {cout}");
    assert!(
        rows.iter().all(|r| r[6] == "inf"),
        "output = reference: infinite PSNR"
    );
    assert!(col(&h, &rows, "ssim_reference")
        .iter()
        .all(|v| (v - 1.0).abs() < 1e-9));
    let (sh, srows) = common::read_csv_table(&tmp.path().join("m-summary.csv"));
    assert_eq!(sh[0], "images");
    assert_eq!(
        srows,
        vec![{
            let mut r = vec!["12".to_string()];
            for k in 2..8 {
                let v = col(&h, &rows, &h[k]);
                r.push(if k == 6 {
                    "inf".into()
                } else {
                    format!("{:.6}", mean(&v))
                });
            }
            r
        }]
    );

    // identity: nothing changes in the product, the background stays as cluttered
    let out = tmp.path().join("id.csv");
    ok(studioize(&[
        "evaluate",
        "--inputs",
        &s(&casual),
        "--outputs",
        &s(&casual),
        "--masks",
        &s(&masks),
        "--mask-suffix=-casual",
        "--out",
        &s(&out),
    ]));
    let (h, rows) = common::read_csv_table(&out);
    assert_eq!(h.len(), 6, "no reference columns without --reference");
    assert_eq!(
        col(&h, &rows, "background_cleanliness_in"),
        col(&h, &rows, "background_cleanliness_out")
    );
    assert!(col(&h, &rows, "delta_e2000").iter().all(|d| *d == 0.0));
    assert!(col(&h, &rows, "ssim_product")
        .iter()
        .all(|v| (v - 1.0).abs() < 1e-12));
    // without masks, a cluttered photo has no product region apart from its background: the
    // product columns stay empty rather than guessed
    ok(studioize(&[
        "evaluate",
        "--inputs",
        &s(&casual),
        "--outputs",
        &s(&casual),
        "--out",
        &s(&out),
    ]));
    let (h, rows) = common::read_csv_table(&out);
    assert!(col(&h, &rows, "background_cleanliness_in")
        .iter()
        .all(|v| *v < 0.2));

    // a compare folder: base = the casual photos, step-10 = the studio photos
    let cmp = tmp.path().join("cmp");
    let mut csv = String::from("run,checkpoint,step,val_loss,prior_loss,input,image\n");
    for (row, src) in [("base", &casual), ("step-10", &studio)] {
        std::fs::create_dir_all(cmp.join(row)).unwrap();
        for k in 0..12 {
            let name = format!("p{k:05}");
            std::fs::copy(
                src.join(format!("{name}.png")),
                cmp.join(row).join(format!("{name}.png")),
            )
            .unwrap();
            let (run, step) = if row == "base" {
                ("base", "0")
            } else {
                ("run-a", "10")
            };
            csv += &format!("{run},{row},{step},,,{name},{row}/{name}.png\n");
        }
    }
    std::fs::write(cmp.join("compare.csv"), csv).unwrap();
    let out = tmp.path().join("cmp.csv");
    let log = ok(studioize(&[
        "evaluate",
        "--inputs",
        &s(&casual),
        "--outputs",
        &s(&cmp),
        "--masks",
        &s(&masks),
        "--mask-suffix",
        "-casual",
        "--out",
        &s(&out),
    ]));
    assert!(log.contains("step-10: 12 images"), "{log}");
    let (h, rows) = common::read_csv_table(&out);
    assert_eq!(&h[..5], ["run", "checkpoint", "step", "input", "output"]);
    assert_eq!(rows.len(), 24);
    assert_eq!(
        rows[12][..5],
        ["run-a", "step-10", "10", "p00000.png", "step-10/p00000.png"]
    );
    let (sh, srows) = common::read_csv_table(&tmp.path().join("cmp-summary.csv"));
    assert_eq!(&sh[..4], ["run", "checkpoint", "step", "images"]);
    assert_eq!(srows.len(), 2);
    let clean = col(&sh, &srows, "background_cleanliness_out");
    assert!(clean[0] < 0.2 && clean[1] > 0.6, "{clean:?}");

    // errors: one line naming the file
    let e = common::sole_error_line(&studioize(&[
        "evaluate",
        "--inputs",
        &s(&casual),
        "--outputs",
        &s(&tmp.path().join("nope")),
        "--out",
        &s(&out),
    ]));
    assert!(e.contains("nope") && e.contains("not a folder"), "{e}");
    std::fs::remove_file(studio.join("p00003.png")).unwrap();
    let e = common::sole_error_line(&studioize(&[
        "evaluate",
        "--inputs",
        &s(&casual),
        "--outputs",
        &s(&studio),
        "--out",
        &s(&out),
    ]));
    assert!(e.contains("no output for input p00003.png"), "{e}");
    std::fs::write(masks.join("p00001-casual.png"), b"not a png").unwrap();
    let e = common::sole_error_line(&studioize(&[
        "evaluate",
        "--inputs",
        &s(&casual),
        "--outputs",
        &s(&casual),
        "--masks",
        &s(&masks),
        "--mask-suffix",
        "-casual",
        "--out",
        &s(&out),
    ]));
    assert!(
        e.contains("p00001-casual.png") && e.contains("not a readable image"),
        "{e}"
    );
}
