//! Caption files around the captioning model: which images to caption (`inputs`), resumable
//! CSV output (`writer`) and where it goes (`output`: errors CSV, lock file), kohya sidecars
//! (`sidecar`), product metadata (`metadata`) and templates (`template`) for richer captions,
//! and statistics that show how thin a caption set is (`stats`). The model itself is
//! `models::blip`, the decoding `pipelines::caption`, the command `cli::caption`.
pub mod inputs;
pub mod metadata;
pub mod output;
pub mod sidecar;
pub mod stats;
pub mod template;
pub mod writer;
