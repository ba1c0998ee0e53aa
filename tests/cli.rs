//! The command line as a user meets it: exit codes, one-line errors naming the file, output
//! rules and metadata of `generate` / `transform`, `inspect` numbers.
mod common;

use common::{fixtures, one_line_error, studioize};

fn model() -> String {
    common::tiny_a()
}

#[test]
fn inspect_reports_exact_counts_and_json() {
    let out = studioize(&["inspect", &model(), "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let params: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("sd/params.json")).unwrap())
            .unwrap();
    let mut total = 0;
    for c in v["components"].as_array().unwrap() {
        if let Some(n) = c["parameters"].as_i64() {
            assert_eq!(
                n,
                params["tiny-a"][c["name"].as_str().unwrap()]
                    .as_i64()
                    .unwrap(),
                "{c}"
            );
            total += n;
        }
    }
    assert_eq!(v["total_parameters"].as_i64().unwrap(), total);
    let table = String::from_utf8_lossy(&studioize(&["inspect", &model()]).stdout).to_string();
    assert!(
        table.contains("UNet2DConditionModel") && table.contains("792964"),
        "{table}"
    );
}

#[test]
fn inspect_errors_on_folders_without_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let e = one_line_error(&studioize(&["inspect", dir.path().to_str().unwrap()]));
    assert!(
        e.contains("not a model folder") && e.contains(dir.path().to_str().unwrap()),
        "{e}"
    );
    let e = one_line_error(&studioize(&["inspect", "/no/such/model"]));
    assert!(e.contains("/no/such/model"), "{e}");
    // A model folder with a missing component file.
    let broken = dir.path().join("broken");
    copy_dir(&fixtures().join("sd/tiny-a"), &broken);
    std::fs::remove_file(broken.join("vae/diffusion_pytorch_model.safetensors")).unwrap();
    let e = one_line_error(&studioize(&["inspect", broken.to_str().unwrap()]));
    assert!(
        e.contains("vae") && e.contains("diffusion_pytorch_model.safetensors"),
        "{e}"
    );
    // Weights of the wrong model: shape mismatch names tensor, file and shapes.
    std::fs::copy(
        fixtures().join("sd/tiny-b/vae/diffusion_pytorch_model.safetensors"),
        broken.join("vae/diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    let e = one_line_error(&studioize(&["inspect", broken.to_str().unwrap()]));
    assert!(e.contains("vae: tensor") && e.contains("expected"), "{e}");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dst = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

#[test]
fn generate_writes_one_file_or_a_folder_with_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.png");
    let base = [
        "generate",
        "--model",
        &model(),
        "--prompt",
        "a blue vase",
        "--steps",
        "3",
        "--device",
        "cpu",
    ];
    let out = studioize(&[&base[..], &["--seed", "5", "--out", file.to_str().unwrap()]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta = studioize::imageio::read_png_params(&file).unwrap();
    assert_eq!(meta["prompt"], "a blue vase");
    assert_eq!(meta["seed"], 5);
    assert_eq!(meta["sampler"], "pndm");
    assert!(dir.path().join("one.png.json").is_file());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "exactly the image and its sidecar"
    );

    let folder = dir.path().join("many");
    let out = studioize(
        &[
            &base[..],
            &[
                "--num-images",
                "3",
                "--sampler",
                "euler-a",
                "--out",
                folder.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pngs: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
        .collect();
    assert_eq!(pngs.len(), 4, "3 images + contact sheet");
    assert!(folder.join("a-blue-vase-s0-sheet.png").is_file());

    // Same seed, same image; the file is reproducible from its metadata.
    let again = dir.path().join("again.png");
    let out = studioize(
        &[
            &base[..],
            &["--seed", "5", "--out", again.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(out.status.success());
    assert_eq!(
        studioize::imageio::read_rgb(&file).unwrap(),
        studioize::imageio::read_rgb(&again).unwrap()
    );

    let e = one_line_error(&studioize(
        &[
            &base[..],
            &["--num-images", "2", "--out", file.to_str().unwrap()],
        ]
        .concat(),
    ));
    assert!(e.contains("names one file"), "{e}");
    let e = one_line_error(&studioize(
        &[
            &base[..],
            &["--sampler", "heun", "--out", file.to_str().unwrap()],
        ]
        .concat(),
    ));
    assert!(e.contains("unknown sampler 'heun'"), "{e}");
    let e = one_line_error(&studioize(
        &[
            &base[..],
            &["--width", "36", "--out", file.to_str().unwrap()],
        ]
        .concat(),
    ));
    assert!(e.contains("multiples of 8"), "{e}");
    let e = one_line_error(&studioize(&[
        "generate",
        "--model",
        &model(),
        "--prompt",
        "x",
        "--steps",
        "0",
        "--out",
        file.to_str().unwrap(),
    ]));
    assert!(e.contains("steps"), "{e}");
    let e = one_line_error(&studioize(&[
        "generate",
        "--model",
        &model(),
        "--prompt",
        "x",
        "--device",
        "cuda:3",
        "--out",
        "x.png",
    ]));
    assert!(e.contains("cuda:3"), "{e}");
}

#[test]
fn transform_handles_folders_and_reports_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::copy(
        fixtures().join("pipelines/input-photo.png"),
        inputs.join("bag.png"),
    )
    .unwrap();
    std::fs::write(inputs.join("corrupt.jpg"), b"\xff\xd8 not really a jpeg").unwrap();
    let out_dir = dir.path().join("out");
    let out = studioize(&[
        "transform",
        "--model",
        &model(),
        "--prompt",
        "studio photo",
        "--strength",
        "0.6",
        "--steps",
        "4",
        "--variations",
        "2",
        "--sampler",
        "ddim",
        "--device",
        "cpu",
        "--out",
        out_dir.to_str().unwrap(),
        inputs.to_str().unwrap(),
    ]);
    // The good photo is transformed; the corrupt one fails the run with its name.
    let e = one_line_error(&out);
    assert!(
        e.contains("1 of 2 input(s) failed") && e.contains("corrupt.jpg"),
        "{e}"
    );
    for f in [
        "bag-s0-000.png",
        "bag-s0-001.png",
        "bag-s0-sheet.png",
        "bag-s0-000.png.json",
    ] {
        assert!(out_dir.join(f).is_file(), "{f} missing");
    }
    let meta = studioize::imageio::read_png_params(&out_dir.join("bag-s0-001.png")).unwrap();
    assert_eq!(meta["strength"], 0.6);
    assert_eq!(meta["index"], 1);

    let e = one_line_error(&studioize(&[
        "transform",
        "--model",
        &model(),
        "--prompt",
        "x",
        "--strength",
        "1.5",
        "--out",
        "o",
        inputs.to_str().unwrap(),
    ]));
    assert!(e.contains("strength"), "{e}");
    let e = one_line_error(&studioize(&[
        "transform",
        "--model",
        &model(),
        "--prompt",
        "x",
        "--out",
        "o",
        "/no/such/*.png",
    ]));
    assert!(e.contains("matches no file"), "{e}");
}
