//! Training: the experiment config, and the trainer built from parts (see `trainer.rs` and
//! docs/ARCHITECTURE.md, "Training"):
//!
//! - [`run_dir`]: every file of a run folder (names, logs, status, the CSV readers);
//! - [`trainable`]: what gets gradients (the full UNet with its EMA, the text encoder);
//! - [`sources`]: the training stream and the fixed validation / prior sets;
//! - [`objective`]: noising, targets, min-SNR; [`forward`]: options of the forward pass
//!   ([`text_cache`]: the frozen text encoder's embeddings per caption);
//!   [`frozen`]: the frozen models in `model.weights_dtype`;
//! - [`optim`]: the optimizer trait, AdamW, 8-bit AdamW, Adafactor; [`lr`]: schedules; [`ema`];
//!   [`scaler`]: fp16 loss scaling;
//! - [`health`]: the run-health detector, online here and offline in `monitor`;
//! - [`checkpoint`]: checkpoint folders, retention; [`samples`]: fixed-seed samples;
//! - [`trainer`]: the loop; [`runner`]: one run in its locked folder, `status.json`;
//! - [`distributed`]: data-parallel runs over several processes (c10d: Gloo, NCCL).
pub mod checkpoint;
pub mod checkpointing;
pub mod config;
pub mod distributed;
pub mod ema;
pub mod forward;
pub mod frozen;
pub mod health;
pub mod lr;
pub mod objective;
pub mod optim;
pub mod run_dir;
pub mod runner;
pub mod samples;
pub mod scaler;
pub mod sources;
pub mod text_cache;
pub mod trainable;
pub mod trainer;

pub use config::{ExperimentConfig, SweepPoint};
pub use run_dir::RunDir;
pub use trainer::Trainer;
