//! The experiment config of `studioize train`: one TOML file per experiment (see
//! `experiments/studio-sd14.toml` for every key, documented), `--set key=value` overrides, and
//! optional hyper-parameter sweeps.
//!
//! Loading (`load.rs`) works on the TOML table before the typed structs are built, so that every
//! error can name the file and the dotted key (`train.learning_rate`):
//! 1. the file is parsed into a table; a missing `experiment` defaults to the file stem;
//! 2. relative paths in the file are made absolute against the file's folder (`paths.rs`; a
//!    `model.base` Hugging Face repo id stays an id, as `hf://ORG/NAME`);
//! 3. `--set` overrides are applied (`overrides.rs`; relative paths there are taken against the
//!    current folder);
//! 4. a missing `output.dir` defaults to `runs/<experiment>` in the current folder;
//! 5. the table is deserialized into the typed schema (`schema.rs`; `deny_unknown_fields`
//!    everywhere; errors rewritten by `errors.rs`) and validated (`validate.rs`), the sweep
//!    points (`sweep.rs`) included.
//!
//! The key lists that `--set`, sweeps and suggestions use, and the list of path keys, are read
//! off the schema structs (`keys.rs`, by `introspect.rs`), never kept by hand.
//!
//! All paths of a loaded config are absolute, so [`ExperimentConfig::to_toml`] written into a run
//! folder loads back to an equal config.
mod errors;
mod introspect;
mod keys;
mod load;
mod overrides;
mod paths;
mod schema;
mod sweep;
mod validate;

pub use keys::resolve_key;
pub use schema::{
    DataSection, DreamBoothSection, ExperimentConfig, LoraSection, LrSchedule, MixedPrecision,
    ModelSection, OptimizerKind, OutputSection, PredictionType, SaveDtype, SweepMode, SweepSection,
    TextualInversionSection, TiPrompts, TrainSection,
};
pub use sweep::{py_float, SweepPoint};
