//! Studio-ize metrics: how far a transform turned a casual product photo into a studio photo,
//! and what it did to the product.
//!
//! - **background cleanliness** ([`background`]): the share of background pixels that are
//!   near-white and flat (L* > 90, chroma < 8, 3x3 L* standard deviation <= 3), background
//!   being the pixels outside the product mask grown by one pixel; 1.0 for a clean studio
//!   sweep, near 0 for a table or a coloured wall;
//! - **product preservation**: mean CIEDE2000 ([`color`], Sharma et al. 2005) and mean SSIM
//!   ([`ssim`], per channel, Wang et al. 2004 as scikit-image computes it) between input and
//!   output inside the product mask;
//! - **distance to a ground truth** (the catalogue's studio photo of the same product): PSNR
//!   ([`psnr`]) and SSIM of the whole image.
//!
//! Without a mask, the product region is estimated from the input ([`mask::Mask::estimate`]).
//! [`pairs`] pairs inputs with outputs (by name, or through a `compare` folder), [`metrics`]
//! measures one pair, [`report`] writes the tables. This module reads images only: it sits
//! beside `monitor`, `plot` and `report` and imports nothing from the training or model stages.
pub mod background;
pub mod color;
pub mod mask;
pub mod metrics;
pub mod pairs;
pub mod psnr;
pub mod report;
pub mod ssim;

pub use mask::Mask;
pub use metrics::{measure, PairMetrics};
