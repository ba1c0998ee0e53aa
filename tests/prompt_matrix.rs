//! `generate --prompts FILE`: every prompt of a file x `--num-images`, one contact sheet per
//! prompt and the index `prompts.csv`; each prompt's images are exactly `generate --prompt`'s.
mod common;

use common::{fixtures, read_csv_table, sole_error_line, studioize, tiny_a};
use image::RgbImage;
use std::path::Path;
use std::process::Output;

const PROMPTS: &str = "# products for the spring catalogue\n\
    a <mug> on a marble table, soft light\n\
    \n\
    a photo of zwx handbag on a marble table, soft light\n\
    a blue bottle, studio backdrop\n";

/// The prompts of [`PROMPTS`] with their line numbers and file stems.
const LINES: [(usize, &str, &str); 3] = [
    (
        2,
        "a <mug> on a marble table, soft light",
        "002-a-mug-on-a-marble-table-soft-light",
    ),
    (
        4,
        "a photo of zwx handbag on a marble table, soft light",
        "004-a-photo-of-zwx-handbag-on-a-marble-table",
    ),
    (
        5,
        "a blue bottle, studio backdrop",
        "005-a-blue-bottle-studio-backdrop",
    ),
];

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `generate` on the tiny model with a LoRA, an embedding, a negative prompt, seed 7, two
/// images of 32x24 and 2 steps, then `extra`.
fn generate(extra: &[&str]) -> Output {
    let lora = fixtures().join("lora/a").display().to_string();
    let emb = format!(
        "{}:<mug>",
        fixtures().join("embedding/mug.safetensors").display()
    );
    let base = [
        "generate",
        "--model",
        &tiny_a(),
        "--lora",
        &lora,
        "--embedding",
        &emb,
        "--negative-prompt",
        "blurry",
        "--seed",
        "7",
        "--steps",
        "2",
        "--width",
        "32",
        "--height",
        "24",
        "--num-images",
        "2",
        "--device",
        "cpu",
    ];
    studioize(&[&base[..], extra].concat())
}

fn read(path: &Path) -> RgbImage {
    studioize::imageio::read_rgb(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_prompt_file_makes_images_sheets_and_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prompts.txt");
    std::fs::write(&file, PROMPTS).unwrap();
    let out = dir.path().join("matrix");
    let res = generate(&[
        "--prompts",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(res.status.success(), "{}", stderr(&res));

    // 6 images (with sidecars), 3 sheets (with sidecars) and the index; nothing else.
    let mut want = vec!["prompts.csv".to_string()];
    for (_, _, stem) in LINES {
        for f in ["-s7-000.png", "-s7-001.png", "-sheet.png"] {
            want.push(format!("{stem}{f}"));
            want.push(format!("{stem}{f}.json"));
        }
    }
    want.sort();
    assert_eq!(names(&out), want);

    // The index: one row per prompt, in file order, naming its sheet and images.
    let (header, rows) = read_csv_table(&out.join("prompts.csv"));
    assert_eq!(header, ["line", "prompt", "sheet", "images"]);
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (row, (line, prompt, stem)) in rows.iter().zip(LINES) {
        assert_eq!(row[0], line.to_string());
        assert_eq!(row[1], prompt);
        assert_eq!(row[2], format!("{stem}-sheet.png"));
        assert_eq!(
            row[3],
            format!("{stem}-s7-000.png;{stem}-s7-001.png"),
            "{row:?}"
        );
    }

    // Each sheet is the grid of its prompt's images (2 columns, 1 row, 4 px gaps), in order.
    for (_, _, stem) in LINES {
        let sheet = read(&out.join(format!("{stem}-sheet.png")));
        let imgs: Vec<RgbImage> = (0..2)
            .map(|i| read(&out.join(format!("{stem}-s7-{i:03}.png"))))
            .collect();
        let (w, h) = imgs[0].dimensions();
        assert_eq!((w, h), (32, 24));
        let cols = (imgs.len() as f64).sqrt().ceil() as u32;
        let rows = (imgs.len() as u32).div_ceil(cols);
        assert_eq!(
            sheet.dimensions(),
            (cols * (w + 4) + 4, rows * (h + 4) + 4),
            "{stem}"
        );
        for (i, img) in imgs.iter().enumerate() {
            let (x0, y0) = (
                4 + (i as u32 % cols) * (w + 4),
                4 + (i as u32 / cols) * (h + 4),
            );
            let cell = image::imageops::crop_imm(&sheet, x0, y0, w, h).to_image();
            assert!(cell == *img, "{stem}: sheet cell {i} is not image {i}");
        }
    }

    // Images carry the usual record, with their prompt and its line.
    let (line, prompt, stem) = LINES[1];
    let matrix_png = out.join(format!("{stem}-s7-001.png"));
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join(format!("{stem}-s7-001.png.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["prompt"], prompt);
    assert_eq!(meta["negative_prompt"], "blurry");
    assert_eq!(
        (meta["seed"].as_u64(), meta["index"].as_u64()),
        (Some(7), Some(1))
    );
    assert_eq!(meta["prompt_line"].as_u64(), Some(line as u64));
    assert_eq!(meta["loras"].as_array().map(Vec::len), Some(1), "{meta}");
    assert_eq!(meta["embeddings"][0]["token"], "<mug>", "{meta}");

    // The matrix is generate per prompt: prompt 2's image 1 is `generate --prompt`'s image 1.
    let single = dir.path().join("single");
    let res = generate(&["--prompt", prompt, "--out", single.to_str().unwrap()]);
    assert!(res.status.success(), "{}", stderr(&res));
    let alone = read(&single.join("a-photo-of-zwx-handbag-on-a-marble-table-s7-001.png"));
    assert!(
        read(&matrix_png) == alone,
        "the matrix image differs from generate --prompt's"
    );
    // ... and the prompts do matter: same seed and index, other prompt, other image.
    let other = read(&out.join(format!("{}-s7-001.png", LINES[2].2)));
    assert!(other != alone, "two prompts gave the same image");
}

#[test]
fn finished_prompts_stay_when_a_later_one_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prompts.txt");
    std::fs::write(&file, PROMPTS).unwrap();
    let out = dir.path().join("matrix");
    // A folder where the second prompt's first image goes: writing it fails.
    let (_, _, stem) = LINES[1];
    std::fs::create_dir_all(out.join(format!("{stem}-s7-000.png"))).unwrap();
    let res = generate(&[
        "--prompts",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!res.status.success());
    let err = stderr(&res);
    assert!(err.trim().lines().last().unwrap().contains(stem), "{err}");
    let (_, rows) = read_csv_table(&out.join("prompts.csv"));
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (line, _, first) = LINES[0];
    assert_eq!(rows[0][0], line.to_string());
    for f in ["-s7-000.png", "-s7-001.png", "-sheet.png"] {
        assert!(out.join(format!("{first}{f}")).is_file(), "{first}{f}");
    }
    assert!(!out.join(format!("{}-s7-000.png", LINES[2].2)).exists());
}

#[test]
fn prompt_file_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let o = out.to_str().unwrap();
    let missing = dir.path().join("missing.txt");
    let e = sole_error_line(&generate(&[
        "--prompts",
        missing.to_str().unwrap(),
        "--out",
        o,
    ]));
    assert!(
        e.contains("missing.txt") && e.contains("cannot read"),
        "{e}"
    );
    for (name, text) in [
        ("empty.txt", ""),
        ("comments.txt", "# nothing yet\n\n   \n"),
    ] {
        let f = dir.path().join(name);
        std::fs::write(&f, text).unwrap();
        let e = sole_error_line(&generate(&["--prompts", f.to_str().unwrap(), "--out", o]));
        assert!(e.contains(name) && e.contains("no prompts"), "{e}");
    }
    let f = dir.path().join("latin1.txt");
    std::fs::write(&f, b"caf\xe9 table\n").unwrap();
    let e = sole_error_line(&generate(&["--prompts", f.to_str().unwrap(), "--out", o]));
    assert!(e.contains("latin1.txt") && e.contains("UTF-8"), "{e}");
    let good = dir.path().join("good.txt");
    std::fs::write(&good, PROMPTS).unwrap();
    let g = good.to_str().unwrap();
    let e = sole_error_line(&generate(&["--prompt", "x", "--prompts", g, "--out", o]));
    assert!(e.contains("--prompt") && e.contains("--prompts"), "{e}");
    let e = sole_error_line(&generate(&["--out", o]));
    assert!(e.contains("--prompt") && e.contains("--prompts"), "{e}");
    let png = dir.path().join("one.png");
    let e = sole_error_line(&generate(&["--prompts", g, "--out", png.to_str().unwrap()]));
    assert!(e.contains("one.png") && e.contains("folder"), "{e}");
    // The index never overwrites the prompt file.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("prompts.csv"), PROMPTS).unwrap();
    let csv = out.join("prompts.csv");
    let e = sole_error_line(&generate(&["--prompts", csv.to_str().unwrap(), "--out", o]));
    assert!(e.contains("would overwrite"), "{e}");
    assert_eq!(std::fs::read_to_string(&csv).unwrap(), PROMPTS);
    assert_eq!(names(&out), ["prompts.csv"]);
    assert!(!png.exists());
}
