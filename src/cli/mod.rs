//! The `studioize` command line: one file per subcommand, the arguments they share in
//! `args.rs`; this file parses and dispatches, and turns every error into one line on stderr
//! (refused requests worded with the command's flags, see `flags.rs`) and a non-zero exit.
mod analyze;
mod args;
mod bench;
mod bench_train;
mod caption;
mod captions;
mod common;
mod compare;
mod evaluate;
mod export;
mod flags;
mod generate;
mod inspect;
mod lora;
mod make_catalogue;
mod pretrain;
mod prompt_matrix;
mod report;
mod slurm;
mod train;
mod transform;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "studioize",
    version,
    about = "Research toolkit for AI product photography (Stable Diffusion 1.x, BLIP)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print where the command's time went (wall seconds per stage: loading, text encoder,
    /// UNet, scheduler, VAE, images, optimizer, ...) on stderr when it ends.
    #[arg(long, global = true)]
    profile: bool,
    /// Write that profile as JSON to FILE too (implies --profile).
    #[arg(long, global = true, value_name = "FILE")]
    profile_json: Option<std::path::PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show what a model folder or checkpoint holds: components, parameter counts, dtypes, files.
    Inspect(inspect::Args),
    /// Generate many options from a prompt (text-to-image).
    Generate(generate::Args),
    /// Transform existing photos (img2img / SDEdit), optionally with a fine-tuned UNet.
    Transform(transform::Args),
    /// Caption product photos with a BLIP checkpoint into a `file_name,text` CSV (resumable).
    Caption(caption::Args),
    /// Caption-set tools: `captions stats CSV` shows how rich (or thin) the captions are.
    #[command(subcommand)]
    Captions(captions::Command),
    /// Fine-tune the UNet from an experiment config (TOML); runs every point of a [sweep].
    Train(train::Args),
    /// Classify runs (converging, plateaued, overfitting, deconverged, diverged), best checkpoint,
    /// recommended learning rate; writes analysis.json per run and summary.csv.
    Analyze(analyze::AnalyzeArgs),
    /// Loss, validation/prior loss, learning-rate and gradient-norm plots (PNG, SVG).
    Plot(analyze::PlotArgs),
    /// Transform the same photos with every checkpoint of runs or sweeps (fixed seed): a
    /// labelled grid next to the losses at those checkpoints.
    Compare(compare::Args),
    /// Write a self-contained report.html of an experiment: plots, summary, verdicts,
    /// comparison grids and the resolved configs.
    Report(report::Args),
    /// Write the synthetic shapes dataset used by the smoke experiment and the tests.
    MakeShapes(MakeShapesArgs),
    /// Write the synthetic product catalogue: paired studio / casual photos, masks, general set.
    MakeCatalogue(make_catalogue::Args),
    /// Studio-ize metrics of transformed photos (or a `compare` folder): background
    /// cleanliness, Delta E 2000 and SSIM inside the product, PSNR / SSIM to a reference.
    Evaluate(evaluate::Args),
    /// Train the tiny SD 1.x model from scratch on a synthetic catalogue (CPU, minutes).
    Pretrain(pretrain::Args),
    /// Time generation (seconds per image) and training (steps per second) on a model.
    Bench(bench::Args),
    /// Time one training step (full fine-tune or LoRA) of a random-weight UNet built from a
    /// config.json (SD 1.4's shape without a download) and report the peak memory.
    BenchTrain(bench_train::Args),
    /// Write one original single-file checkpoint (CompVis/LDM names) for A1111 / ComfyUI from a
    /// diffusers folder, a single file or a training checkpoint.
    Export(export::Args),
    /// LoRA tools: `lora merge` folds LoRAs into a base model as a full diffusers folder.
    #[command(subcommand)]
    Lora(lora::Command),
}

impl Command {
    /// How this command's flags name the library's request fields: commands whose flags set
    /// them name the flag, the others (`train`, whose samples are configured in its TOML) keep
    /// the API's names.
    fn flag_names(&self) -> flags::FlagNames {
        match self {
            Self::Generate(_) => generate::flag,
            Self::Transform(_) | Self::Compare(_) | Self::Caption(_) | Self::Bench(_) => {
                flags::flag
            }
            _ => flags::api_name,
        }
    }
}

#[derive(clap::Args, Debug)]
struct MakeShapesArgs {
    /// Output folder (gets train/ and prior/).
    out: std::path::PathBuf,
    #[arg(long, default_value_t = 48)]
    shapes: usize,
    #[arg(long, default_value_t = 16)]
    prior: usize,
    #[arg(long, default_value_t = 32)]
    size: u32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    crate::device::allocator::use_huge_pages();
    crate::device::init();
    // A file-size limit (`ulimit -f`) then fails a write with an error naming the file, as a
    // full disk does, instead of killing the process.
    // SAFETY: setting a signal's disposition to "ignore" before any other thread starts.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() => {
            eprintln!("{}", usage_line(&e));
            return 2;
        }
        Err(e) => {
            let _ = e.print();
            return 0;
        }
    };
    let names = cli.command.flag_names();
    let profiling = cli.profile || cli.profile_json.is_some();
    if profiling {
        crate::profile::enable();
    }
    let clock = std::time::Instant::now();
    let result = match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Transform(a) => transform::run(a),
        Command::Caption(a) => caption::run(a),
        Command::Captions(c) => captions::run(c),
        Command::Train(a) => train::run(a),
        Command::Analyze(a) => analyze::analyze(a),
        Command::Plot(a) => analyze::plot(a),
        Command::Bench(a) => bench::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Report(a) => report::run(a),
        Command::Export(a) => export::run(a),
        Command::Lora(c) => lora::run(c),
        Command::BenchTrain(a) => bench_train::run(a),
        Command::MakeCatalogue(a) => make_catalogue::run(a),
        Command::Evaluate(a) => evaluate::run(a),
        Command::Pretrain(a) => pretrain::run(a),
        Command::MakeShapes(a) => {
            crate::data::shapes::generate_fixture(&a.out, a.shapes, a.prior, a.size, a.seed)
        }
    };
    let result = match profiling {
        true => result.and(report_profile(
            clock.elapsed().as_secs_f64(),
            cli.profile_json,
        )),
        false => result,
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {}", flags::one_line(&e, names));
            1
        }
    }
}

/// Prints the profile on stderr and writes its JSON file, if asked for: in a data-parallel run
/// each rank its own (`FILE` with `.rankN` before the extension), the launcher `FILE`.
fn report_profile(wall_s: f64, json: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let stages = crate::profile::stages();
    eprint!("{}", crate::profile::render(&stages, wall_s));
    let Some(path) = json else {
        return Ok(());
    };
    let path = match crate::train::distributed::env::from_env() {
        Ok(Some(place)) => rank_file(&path, place.rank),
        _ => path,
    };
    crate::profile::write_json(&path, &stages, wall_s)
}

/// `dir/name.json` -> `dir/name.rankN.json`.
fn rank_file(path: &std::path::Path, rank: usize) -> std::path::PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.rank{rank}.{}", ext.to_string_lossy()),
        None => format!("{stem}.rank{rank}"),
    };
    path.with_file_name(name)
}

/// A command-line usage error on one line: clap's message (with the arguments it lists on the
/// indented lines after a first line ending in `:`, such as the missing required ones), and
/// where to read more.
fn usage_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut lines = text.lines().skip_while(|l| l.trim().is_empty());
    let mut first = lines
        .next()
        .unwrap_or("error: invalid arguments")
        .trim()
        .to_string();
    if first.ends_with(':') {
        let listed: Vec<&str> = lines
            .take_while(|l| l.starts_with(' ') && !l.trim().is_empty())
            .map(str::trim)
            .collect();
        if !listed.is_empty() {
            first = format!("{first} {}", listed.join(", "));
        }
    }
    let tip = text
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("tip: "))
        .map(|t| format!("; {t}"))
        .unwrap_or_default();
    format!("{first}{tip} (see --help)")
}
