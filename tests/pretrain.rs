//! `studioize pretrain`: a tiny run twice with one seed writes byte-identical weights and a
//! folder that `generate` loads; the cut-down tokenizer splits captions as CLIP's full one; bad
//! input fails on one line. On the committed `models/tiny-studio`: the VAE reconstructs unseen
//! catalogue images above a PSNR bound, and studio prompts over 4 colours x 2 seeds give the
//! prompted colour on a near-white border in at least 7 of 8 images.
use image::RgbImage;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use studioize::data::catalogue::{self, products::COLOURS};
use studioize::pipelines::text2img::{text_to_image, TextToImage};
use studioize::pipelines::{LoadOptions, StableDiffusion};
use studioize::schedulers::from_name;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_studioize"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn committed() -> PathBuf {
    root().join("models").join("tiny-studio")
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A small catalogue at 32 pixels.
fn tiny_catalogue(dir: &Path) -> PathBuf {
    let cat = dir.join("cat");
    let out = bin()
        .args([
            "make-catalogue",
            "--products",
            "12",
            "--general",
            "6",
            "--size",
            "32",
        ])
        .arg(&cat)
        .output()
        .unwrap();
    ok(&out);
    cat
}

fn pretrain(cat: &Path, out: &Path, extra: &[&str]) -> Output {
    bin()
        .args(["pretrain", "--catalogue"])
        .arg(cat)
        .arg("--out")
        .arg(out)
        .args([
            "--size",
            "32",
            "--vae-steps",
            "3",
            "--unet-steps",
            "3",
            "--vae-batch-size",
            "2",
            "--unet-batch-size",
            "2",
        ])
        .args(if extra.contains(&"--seed") {
            &[][..]
        } else {
            &["--seed", "3"][..]
        })
        .args(extra)
        .output()
        .unwrap()
}

const WEIGHTS: [&str; 3] = [
    "unet/diffusion_pytorch_model.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
    "text_encoder/model.safetensors",
];

#[test]
fn a_tiny_run_is_deterministic_and_generates() {
    let dir = tempfile::tempdir().unwrap();
    let cat = tiny_catalogue(dir.path());
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    ok(&pretrain(&cat, &a, &[]));
    ok(&pretrain(&cat, &b, &[]));
    for w in WEIGHTS {
        let (x, y) = (
            std::fs::read(a.join(w)).unwrap(),
            std::fs::read(b.join(w)).unwrap(),
        );
        assert!(x == y, "{w} differs between two runs with one seed");
    }
    // another seed gives other weights (the comparison can fail)
    let c = dir.path().join("c");
    ok(&pretrain(&cat, &c, &["--seed", "4"]));
    let unet = WEIGHTS[0];
    assert!(std::fs::read(a.join(unet)).unwrap() != std::fs::read(c.join(unet)).unwrap());
    // no staging folder is left beside the outputs
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let png = dir.path().join("gen.png");
    let out = bin()
        .args(["generate", "--model"])
        .arg(&a)
        .args([
            "--prompt",
            "a red mug on a white background, studio product photo",
        ])
        .args(["--steps", "2", "--device", "cpu", "--out"])
        .arg(&png)
        .output()
        .unwrap();
    ok(&out);
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (32, 32));
}

/// `vocab.json` as id -> token.
fn tokens_of(dir: &Path) -> Vec<String> {
    let v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("vocab.json")).unwrap()).unwrap();
    let mut t = vec![String::new(); v.len()];
    for (k, id) in v {
        t[id.as_u64().unwrap() as usize] = k;
    }
    t
}

#[test]
fn the_cut_down_vocabulary_splits_captions_as_clip() {
    use studioize::models::clip::ClipTokenizer;
    use studioize::pretrain::vocab::Vocabulary;
    let full_dir = root().join("tests/fixtures/sd/tiny-a/tokenizer");
    let texts: Vec<String> = (0..96)
        .map(|i| catalogue::render_pair(32, 0, i).0)
        .flat_map(|r| [r.studio_text, r.casual_text])
        .chain((0..24).map(|i| catalogue::render_general(32, 0, i).0.text))
        .collect();
    let vocab = Vocabulary::for_texts(texts.iter().map(String::as_str));
    let dir = tempfile::tempdir().unwrap();
    vocab.write(dir.path()).unwrap();
    let (full, cut) = (
        ClipTokenizer::from_dir(&full_dir).unwrap(),
        ClipTokenizer::from_dir(dir.path()).unwrap(),
    );
    let (full_tokens, cut_tokens) = (tokens_of(&full_dir), tokens_of(dir.path()));
    let spelled = |ids: Vec<i64>, t: &[String]| -> Vec<String> {
        ids.into_iter().map(|i| t[i as usize].clone()).collect()
    };
    for text in texts
        .iter()
        .map(String::as_str)
        .chain(["a purple shoe, photo"])
    {
        let a = spelled(full.encode(text).unwrap(), &full_tokens);
        let b = spelled(cut.encode(text).unwrap(), &cut_tokens);
        assert_eq!(a, b, "{text}");
    }
    // a word the captions never use still tokenizes, into smaller pieces than CLIP's
    let a = full.encode("zebra").unwrap();
    let b = cut.encode("zebra").unwrap();
    let n = |ids: &[i64], eos: i64| ids.iter().position(|&i| i == eos).unwrap();
    assert!(n(&b, vocab.len() as i64 - 1) > n(&a, 49407));
    assert!(vocab.len() < 1000, "{} tokens", vocab.len());
}

fn first_line_error(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "exit status");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in {err}"));
    line.to_string()
}

#[test]
fn bad_input_fails_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m");
    let e = first_line_error(&pretrain(&dir.path().join("none"), &out, &[]));
    assert!(e.contains("none") && e.contains("no such catalogue"), "{e}");

    let cat = tiny_catalogue(dir.path());
    std::fs::remove_file(cat.join("casual/metadata.csv")).unwrap();
    let e = first_line_error(&pretrain(&cat, &out, &[]));
    assert!(
        e.contains("casual/metadata.csv") && e.contains("missing"),
        "{e}"
    );
    let cat = tiny_catalogue(&dir.path().join("2"));

    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("x"), b"x").unwrap();
    let e = first_line_error(&pretrain(&cat, &out, &[]));
    assert!(e.contains("not empty") && e.contains("m"), "{e}");
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let e = first_line_error(&pretrain(&cat, &file, &[]));
    assert!(e.contains("is a file"), "{e}");
    let e = first_line_error(&pretrain(&cat, &file.join("sub"), &[]));
    assert!(e.contains("file"), "{e}");

    let fresh = dir.path().join("nan");
    let e = first_line_error(&pretrain(&cat, &fresh, &["--vae-lr", "1e30"]));
    assert!(e.contains("VAE loss is") && e.contains("step"), "{e}");
    assert!(!fresh.exists(), "nothing is left of a failed run");
}

// ---- the committed model ---------------------------------------------------------------

fn load_committed() -> StableDiffusion {
    tch::set_num_threads(1);
    StableDiffusion::load(&committed(), &LoadOptions::default()).unwrap()
}

/// Mean PSNR (dB) of the VAE's reconstructions (posterior mean) of `images`.
fn vae_psnr(sd: &StableDiffusion, images: &[RgbImage]) -> f64 {
    let mut total = 0.0;
    for img in images {
        let x = studioize::imageio::to_model_input(img);
        let y = tch::no_grad(|| sd.vae.decode(&sd.vae.encode(&x).mean));
        let y = ((y / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0)
            .round()
            .to_kind(tch::Kind::Uint8)
            .squeeze_dim(0)
            .permute([1, 2, 0])
            .contiguous();
        let raw = Vec::<u8>::try_from(y.view([-1])).unwrap();
        let back = RgbImage::from_raw(img.width(), img.height(), raw).unwrap();
        total += studioize::evaluate::psnr::psnr(img, &back).unwrap();
    }
    total / images.len() as f64
}

/// The PSNR bound of the committed VAE on catalogue images it never saw (seed 1).
const PSNR_BOUND: f64 = 24.0;

#[test]
fn committed_vae_reconstructs_unseen_catalogue_images() {
    let sd = load_committed();
    let studio: Vec<RgbImage> = (0..24)
        .map(|i| catalogue::render_pair(64, 1, i).1.image)
        .collect();
    let psnr = vae_psnr(&sd, &studio);
    eprintln!("studio PSNR {psnr:.2} dB");
    assert!(
        psnr > PSNR_BOUND,
        "studio PSNR {psnr:.2} dB <= {PSNR_BOUND}"
    );
    // the bound is not met by a blurred copy: the measurement can fail
    let blurred: Vec<RgbImage> = studio
        .iter()
        .map(|i| image::imageops::blur(i, 3.0))
        .collect();
    let blurred_psnr: f64 = studio
        .iter()
        .zip(&blurred)
        .map(|(a, b)| studioize::evaluate::psnr::psnr(a, b).unwrap())
        .sum::<f64>()
        / studio.len() as f64;
    assert!(
        blurred_psnr < PSNR_BOUND,
        "blurred copies score {blurred_psnr:.2}"
    );
}

fn hue_of(rgb: [f64; 3]) -> (f64, f64, f64) {
    let (r, g, b) = (rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0);
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let d = max - min;
    let h = if d == 0.0 {
        0.0
    } else if max == r {
        60.0 * ((g - b) / d).rem_euclid(6.0)
    } else if max == g {
        60.0 * ((b - r) / d + 2.0)
    } else {
        60.0 * ((r - g) / d + 4.0)
    };
    (h, if max > 0.0 { d / max } else { 0.0 }, max)
}

/// The chromatic catalogue colours and their hues.
fn chromatic() -> Vec<(&'static str, f64)> {
    COLOURS
        .iter()
        .filter(|(n, _)| !["black", "white"].contains(n))
        .map(|(n, c)| (*n, hue_of(c.map(f64::from)).0))
        .collect()
}

fn hue_distance(a: f64, b: f64) -> f64 {
    let d = (a - b).rem_euclid(360.0);
    d.min(360.0 - d)
}

/// Whether `img` shows a `colour` product on a near-white border: the saturated pixels inside
/// the border (at least 2% of the image) have a circular mean hue nearest `colour`'s among the
/// chromatic catalogue colours, and the outer 4-pixel frame averages >= 215 in every channel.
fn studio_hit(img: &RgbImage, colour: &str) -> Result<(), String> {
    let (w, h) = img.dimensions();
    let (mut border, mut nb) = ([0.0f64; 3], 0.0);
    let (mut sx, mut sy, mut n) = (0.0f64, 0.0f64, 0usize);
    for (x, y, p) in img.enumerate_pixels() {
        let rgb = p.0.map(f64::from);
        if x < 4 || y < 4 || x >= w - 4 || y >= h - 4 {
            for c in 0..3 {
                border[c] += rgb[c];
            }
            nb += 1.0;
        } else {
            let (hue, s, v) = hue_of(rgb);
            if s > 0.35 && v > 0.25 {
                sx += hue.to_radians().cos();
                sy += hue.to_radians().sin();
                n += 1;
            }
        }
    }
    let border = border.map(|b| b / nb);
    if border.iter().any(|&b| b < 215.0) {
        return Err(format!("border {border:.0?} is not near white"));
    }
    if (n as f64) < 0.02 * (w * h) as f64 {
        return Err(format!("only {n} coloured pixels"));
    }
    let hue = sy.atan2(sx).to_degrees().rem_euclid(360.0);
    let nearest = chromatic()
        .into_iter()
        .min_by(|a, b| hue_distance(hue, a.1).total_cmp(&hue_distance(hue, b.1)))
        .unwrap();
    if nearest.0 != colour {
        return Err(format!("hue {hue:.0} reads as {}", nearest.0));
    }
    Ok(())
}

#[test]
fn the_colour_check_reads_catalogue_photos_and_can_fail() {
    for i in 0..48 {
        let (rec, studio, casual) = catalogue::render_pair(64, 2, i);
        if rec.colour == "black" || rec.colour == "white" {
            continue;
        }
        assert_eq!(
            studio_hit(&studio.image, rec.colour),
            Ok(()),
            "{}",
            rec.studio_text
        );
        let wrong = if rec.colour == "blue" { "red" } else { "blue" };
        assert!(
            studio_hit(&studio.image, wrong).is_err(),
            "{} read as {wrong}",
            rec.pair
        );
        // a casual photo's background is not white
        if rec.casual_background == "wall" {
            assert!(
                studio_hit(&casual.image, rec.colour).is_err(),
                "{}",
                rec.casual_text
            );
        }
    }
}

const PROMPTS: [(&str, &str); 4] = [
    ("red", "mug"),
    ("green", "bottle"),
    ("blue", "box"),
    ("yellow", "ball"),
];

fn generate(sd: &StableDiffusion, prompt: &str, seed: u64) -> RgbImage {
    let cfg = sd.scheduler_config.clone().unwrap();
    let mut s = from_name("pndm", &cfg).unwrap();
    let p = TextToImage {
        prompt: prompt.into(),
        negative_prompt: String::new(),
        steps: 25,
        guidance: 7.5,
        seed,
        width: 64,
        height: 64,
        num_images: 1,
    };
    to_image(&text_to_image(sd, s.as_mut(), &p, |_, _| {}).unwrap())
}

#[test]
fn committed_model_follows_colour_prompts_on_white() {
    let sd = load_committed();
    let mut hits = 0;
    let mut report = Vec::new();
    for (colour, kind) in PROMPTS {
        for seed in [0u64, 1] {
            let prompt = format!("a {colour} {kind} on a white background, studio product photo");
            let img = generate(&sd, &prompt, seed);
            let r = studio_hit(&img, colour);
            hits += r.is_ok() as usize;
            report.push(format!("{prompt} (seed {seed}): {r:?}"));
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(hits >= 7, "{hits}/8 hits:\n{}", report.join("\n"));
    // asking for the wrong colour of the same images fails: the check can fail
    let img = generate(
        &sd,
        "a red mug on a white background, studio product photo",
        0,
    );
    assert!(studio_hit(&img, "blue").is_err());
}

/// `[1, 3, H, W]` in [0, 1] as an image.
fn to_image(x: &tch::Tensor) -> RgbImage {
    let s = x.size();
    let x = (x * 255.0)
        .round()
        .to_kind(tch::Kind::Uint8)
        .squeeze_dim(0)
        .permute([1, 2, 0]);
    RgbImage::from_raw(
        s[3] as u32,
        s[2] as u32,
        Vec::<u8>::try_from(x.contiguous().view([-1])).unwrap(),
    )
    .unwrap()
}

/// The mean background cleanliness the README states for this transform, before and after.
const CLEAN_BEFORE_BELOW: f64 = 0.05;
const CLEAN_AFTER_ABOVE: f64 = 0.2;

#[test]
fn committed_model_transform_cleans_casual_backgrounds() {
    use studioize::evaluate::{measure, Mask};
    use studioize::pipelines::img2img::{image_to_image, ImageToImage};
    let sd = load_committed();
    let cfg = sd.scheduler_config.clone().unwrap();
    let (mut before, mut after, mut delta_e) = (0.0, 0.0, 0.0);
    let n = 12;
    for i in 0..n {
        // casual photos the model never saw (catalogue seed 1), their studio prompt
        let (rec, studio, casual) = catalogue::render_pair(64, 1, i);
        let mut s = from_name("pndm", &cfg).unwrap();
        let p = ImageToImage {
            prompt: rec.studio_text.clone(),
            negative_prompt: String::new(),
            steps: 25,
            guidance: 7.5,
            seed: 0,
            strength: 0.6,
            variations: 1,
        };
        let x = studioize::imageio::to_model_input(&casual.image);
        let out = to_image(&image_to_image(&sd, s.as_mut(), &p, &x, |_, _| {}).unwrap());
        let m = measure(
            &casual.image,
            &out,
            Some(&Mask::from_gray(&casual.mask)),
            Some(&studio.image),
        )
        .unwrap();
        eprintln!(
            "{}: cleanliness {:.3} -> {:.3}, Delta E {:.1}",
            rec.casual_text,
            m.cleanliness_in.unwrap(),
            m.cleanliness_out.unwrap(),
            m.delta_e2000.unwrap()
        );
        before += m.cleanliness_in.unwrap() / n as f64;
        after += m.cleanliness_out.unwrap() / n as f64;
        delta_e += m.delta_e2000.unwrap() / n as f64;
    }
    eprintln!("mean cleanliness {before:.3} -> {after:.3}, Delta E {delta_e:.1}");
    assert!(
        before < CLEAN_BEFORE_BELOW,
        "casual backgrounds score {before:.3}"
    );
    assert!(
        after > CLEAN_AFTER_ABOVE,
        "transformed backgrounds score {after:.3}"
    );
}
