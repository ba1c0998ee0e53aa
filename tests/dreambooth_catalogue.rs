//! DreamBooth over a catalogue: `make-catalogue --per-product` lays out one folder per product
//! (deterministic, its class in metadata.csv), a zip sweep over the product folders and their
//! prompts trains one run per product named by its folder (its own instance prompt, class
//! images, checkpoints and samples), and `report` shows every product with the sample sheet of
//! each of its checkpoints.
mod common;

use common::{read_csv_table, studioize, tiny_a};
use std::path::{Path, PathBuf};
use studioize::report::html::png_data_uri;
use studioize::train::ExperimentConfig;

const PRODUCTS: [(&str, &str); 3] = [
    ("mug-red", "mug"),
    ("bottle-red", "bottle"),
    ("box-red", "box"),
];

fn ok(what: &str, out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{what} failed: {err}");
    err
}

fn make_products(dir: &Path) -> PathBuf {
    let out = studioize(&[
        "make-catalogue",
        dir.to_str().unwrap(),
        "--products",
        "3",
        "--per-product",
        "3",
        "--size",
        "32",
    ]);
    ok("make-catalogue", &out);
    dir.join("products")
}

fn pngs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".png"))
        .collect();
    v.sort();
    v
}

#[test]
fn per_product_layout_is_deterministic_with_the_class_in_its_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let products = make_products(&dir.path().join("a"));
    let again = make_products(&dir.path().join("b"));
    let (head, rows) = read_csv_table(&products.join("catalogue.csv"));
    assert_eq!(head, ["product", "kind", "colour", "size", "images"]);
    let names: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .collect();
    assert_eq!(names, PRODUCTS);
    for (name, kind) in PRODUCTS {
        let folder = products.join(name);
        let files = pngs(&folder);
        assert_eq!(files.len(), 3, "{name}: {files:?}");
        let (head, rows) = read_csv_table(&folder.join("metadata.csv"));
        assert_eq!(&head[..3], ["file_name", "text", "kind"]);
        let listed: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(listed, files);
        assert!(rows.iter().all(|r| r[2] == kind), "{name}: {rows:?}");
        // The photos show one product at different sizes or positions: boxes differ.
        let boxes: std::collections::BTreeSet<&[String]> = rows.iter().map(|r| &r[5..9]).collect();
        assert_eq!(boxes.len(), 3, "{name}: {rows:?}");
        for f in &files {
            let a = std::fs::read(folder.join(f)).unwrap();
            let b = std::fs::read(again.join(name).join(f)).unwrap();
            assert_eq!(a, b, "{name}/{f} differs between two runs");
        }
    }
}

/// The catalogue experiment: a base config with the `[sweep]` that make-catalogue wrote.
fn catalogue_config(dir: &Path, products: &Path) -> PathBuf {
    let text = std::fs::read_to_string(products.join("sweep.toml")).unwrap();
    let table: toml::Table = text.parse().unwrap();
    let sweep = table["sweep"].as_table().unwrap();
    let want = |f: &dyn Fn(&str, &str) -> String| -> Vec<String> {
        PRODUCTS.iter().map(|(n, k)| f(n, k)).collect()
    };
    let strings = |key: &str| -> Vec<String> {
        let v = sweep[key].as_array().unwrap();
        v.iter().map(|x| x.as_str().unwrap().to_string()).collect()
    };
    let folders = want(&|n, _| products.join(n).display().to_string());
    assert_eq!(strings("data.images"), folders);
    let instance = want(&|_, k| format!("a photo of zwx {k}"));
    assert_eq!(strings("dreambooth.instance_prompt"), instance);
    assert_eq!(
        strings("dreambooth.class_prompt"),
        want(&|_, k| format!("a photo of a {k}"))
    );
    let prompts = sweep["train.validation_prompts"].as_array().unwrap();
    for (p, k) in prompts.iter().zip(PRODUCTS.map(|p| p.1)) {
        let p: Vec<&str> = p
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        assert_eq!(
            p,
            [format!("a photo of zwx {k}"), format!("a photo of a {k}")]
        );
    }
    let cfg = format!(
        r#"[model]
base = "{model}"
[data]
images = "products/mug-red"
resolution = 32
center_crop = true
random_flip = false
num_workers = 0
[train]
steps = 2
batch_size = 1
learning_rate = 1e-4
lr_schedule = "constant"
warmup_steps = 0
checkpoint_every = 1
validate_every = 1
validation_timesteps = 2
sample_every_checkpoint = true
[dreambooth]
instance_prompt = "a photo of zwx mug"
num_class_images = 2
class_steps = 2
[output]
dir = "runs/catalogue"
{sweep}"#,
        model = tiny_a(),
        sweep = text,
    );
    let path = dir.join("catalogue.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

#[test]
fn a_catalogue_trains_one_run_per_product_and_reports_each() {
    let dir = tempfile::tempdir().unwrap();
    let products = make_products(dir.path());
    let cfg = catalogue_config(dir.path(), &products);
    let points = ExperimentConfig::load(&cfg, &[])
        .unwrap()
        .sweep_points()
        .unwrap();
    let ids: Vec<&str> = points.iter().map(|p| p.id.as_str()).collect();
    let names: Vec<&str> = PRODUCTS.iter().map(|p| p.0).collect();
    assert_eq!(ids, names, "points are named by their product folder");

    let t0 = std::time::Instant::now();
    // One intra-op thread: the 32 px model gains nothing from more, and on a shared machine
    // (tests run in parallel) oversubscribed threads make its sampling several times slower.
    let out = common::train_command(&cfg)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap();
    let err = ok("train", &out);
    eprintln!("catalogue trained in {:.1}s", t0.elapsed().as_secs_f64());
    let runs = dir.path().join("runs/catalogue");
    for (name, kind) in PRODUCTS {
        assert!(
            err.contains(&format!("{name}: finished at step 2")),
            "{err}"
        );
        let run = runs.join(name);
        let status: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("status.json")).unwrap())
                .unwrap();
        assert_eq!(status["state"], "finished", "{name}");
        let config: toml::Table = std::fs::read_to_string(run.join("config.toml"))
            .unwrap()
            .parse()
            .unwrap();
        let db = &config["dreambooth"];
        assert_eq!(
            db["instance_prompt"].as_str(),
            Some(format!("a photo of zwx {kind}").as_str())
        );
        assert_eq!(
            db["class_prompt"].as_str(),
            Some(format!("a photo of a {kind}").as_str())
        );
        let images = config["data"]["images"].as_str().unwrap();
        assert_eq!(Path::new(images), dir.path().join("products").join(name));
        assert_eq!(pngs(&run.join("class_images")).len(), 2, "{name}");
        let meta: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(run.join("class_images/class-00000.png.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(meta["prompt"], format!("a photo of a {kind}"));
        for step in [1, 2] {
            assert!(
                run.join(format!("checkpoints/step-{step}/unet")).is_dir(),
                "{name} {step}"
            );
            assert!(
                run.join(format!("samples/step-{step}/sheet.png")).is_file(),
                "{name} {step}"
            );
        }
    }

    let out = studioize(&["report", runs.to_str().unwrap()]);
    ok("report", &out);
    let html = std::fs::read_to_string(runs.join("report.html")).unwrap();
    assert!(html.contains("Samples at each checkpoint"));
    assert!(
        html.contains("All 3 runs share the learning rate"),
        "no learning-rate recommendation between products"
    );
    assert!(
        !html.contains("class=\"recommended\"") && !html.contains("★ recommended"),
        "no run is marked recommended"
    );
    // Each product's section: its heading (with its verdict), instance prompt and sheets in step
    // order, all before the next heading.
    let samples = html.find("Samples at each checkpoint").unwrap();
    let headings: Vec<usize> = html[samples..]
        .match_indices("<h3")
        .map(|(i, _)| samples + i)
        .chain(html[samples..].find("<h2").map(|i| samples + i))
        .collect();
    for (name, kind) in PRODUCTS {
        let at = html
            .find(&format!("id=\"samples-{name}\""))
            .unwrap_or_else(|| panic!("report.html has no samples of {name}"));
        let end = *headings.iter().find(|&&h| h > at).unwrap_or(&html.len());
        let section = &html[at..end];
        let heading = &section[..section.find("</h3>").unwrap()];
        assert!(heading.contains("class=\"label "), "{name}: {heading}");
        let mut last = section
            .find(&format!("a photo of zwx {kind}"))
            .unwrap_or_else(|| panic!("{name}: no instance prompt"));
        for step in [1, 2] {
            let sheet = runs
                .join(name)
                .join(format!("samples/step-{step}/sheet.png"));
            let uri = png_data_uri(&std::fs::read(sheet).unwrap());
            last += section[last..]
                .find(&uri)
                .unwrap_or_else(|| panic!("{name}: sheet of step {step} not in its section"));
            assert!(
                section[last..].contains(&format!("step {step} · val loss")),
                "{name} {step}"
            );
        }
        let sheets = section.matches("<figure>").count();
        assert_eq!(sheets, 2, "{name}");
    }
}

#[test]
fn folder_ids_only_where_the_folder_names_tell_points_apart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("z.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\nbase = \"{}\"\n[data]\nimages = \"a/p\"\n[output]\ndir = \"r\"\n\
             [sweep]\nmode = \"zip\"\n\"data.images\" = [\"a/p\", \"b/p\"]\nlearning_rate = [1e-5, 2e-5]\n",
            tiny_a()
        ),
    )
    .unwrap();
    let ids: Vec<String> = ExperimentConfig::load(&cfg, &[])
        .unwrap()
        .sweep_points()
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, ["images=p,lr=1e-05", "images=p,lr=2e-05"]);
    // A dotted key's relative paths are taken against the config file as a quoted key's are.
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "\"data.images\" = [\"a/p\", \"b/p\"]",
        "data.images = [\"x/p1\", \"x/p2\"]",
    );
    std::fs::write(&cfg, text).unwrap();
    let points = ExperimentConfig::load(&cfg, &[])
        .unwrap()
        .sweep_points()
        .unwrap();
    assert_eq!(points[0].id, "p1");
    assert_eq!(points[1].config.data.images, dir.path().join("x/p2"));
    // The committed catalogue experiments: one point per product, named by its folder.
    let exp = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
    for file in ["dreambooth-catalogue.toml", "dreambooth-miniature.toml"] {
        let points = ExperimentConfig::load(&exp.join(file), &[])
            .unwrap()
            .sweep_points()
            .unwrap();
        let ids: Vec<&str> = points.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["mug-red", "bottle-red", "box-red"], "{file}");
        for p in &points {
            let db = p.config.dreambooth.as_ref().unwrap();
            let kind = p.id.split('-').next().unwrap();
            assert_eq!(
                db.instance_prompt,
                format!("a photo of zwx {kind}"),
                "{file}"
            );
            assert!(p.config.train.sample_every_checkpoint, "{file}");
            assert!(
                p.config.train.validation_prompts[0].contains(&db.instance_prompt),
                "{file}: {:?}",
                p.config.train.validation_prompts
            );
        }
    }
}
