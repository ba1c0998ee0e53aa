//! Requests the pipelines refuse, worded in the API's own terms (`steps must be at least 1`).
//! The error names the request fields it is about ([`Param`]), so that a front end can say it
//! with its own names (the command line: `--steps must be at least 1`, see
//! [`RequestError::message`]) without the library knowing about flags.
use std::fmt;

/// A field of a request: of [`TextToImage`](super::text2img::TextToImage),
/// [`ImageToImage`](super::img2img::ImageToImage),
/// or [`DecodeOptions`](super::caption::DecodeOptions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    Steps,
    Guidance,
    Strength,
    NumImages,
    Variations,
    Beams,
    MaxNewTokens,
    MinNewTokens,
    RepetitionPenalty,
}

impl Param {
    /// The field's name in the API (`num_images`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Steps => "steps",
            Self::Guidance => "guidance",
            Self::Strength => "strength",
            Self::NumImages => "num_images",
            Self::Variations => "variations",
            Self::Beams => "beams",
            Self::MaxNewTokens => "max_new_tokens",
            Self::MinNewTokens => "min_new_tokens",
            Self::RepetitionPenalty => "repetition_penalty",
        }
    }
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestError {
    /// A count below 1.
    BelowOne(Param),
    /// A number that is NaN or infinite.
    NotFinite(Param),
    /// A number that is not finite and above 0.
    NotPositive(Param),
    /// `strength` outside (0, 1].
    StrengthRange(f64),
    /// `strength` with `steps` starts after the last denoising step.
    NoDenoisingStep { strength: f64, steps: usize },
    /// `min_new_tokens` above `max_new_tokens`.
    MinAboveMax { min: usize, max: usize },
    /// The prompt's tokens and `max_new_tokens` beyond the decoder's positions.
    TooManyTokens {
        prompt: usize,
        max_new: usize,
        limit: usize,
    },
    /// Decoding `images` images (their number set by `count`) of `width` x `height` needs more
    /// memory (`need` bytes) than the machine has (`have`).
    DecodeMemory {
        images: i64,
        count: Param,
        width: i64,
        height: i64,
        need: f64,
        have: f64,
    },
}

fn gib(bytes: f64) -> String {
    format!("{:.1} GiB", bytes / (1u64 << 30) as f64)
}

impl RequestError {
    /// The message, with each request field named by `name` ([`Param::name`] in `Display`).
    pub fn message(&self, name: impl Fn(Param) -> String) -> String {
        use Param::*;
        match self {
            Self::BelowOne(p) => format!("{} must be at least 1", name(*p)),
            Self::NotFinite(p) => format!("{} must be a finite number", name(*p)),
            Self::NotPositive(p) => format!("{} must be a positive number", name(*p)),
            Self::StrengthRange(s) => format!("{} {s} is outside (0, 1]", name(Strength)),
            Self::NoDenoisingStep { strength, steps } => format!(
                "{} {strength} with {steps} steps leaves no denoising step; raise {} or {}",
                name(Strength),
                name(Strength),
                name(Steps)
            ),
            Self::MinAboveMax { min, max } => format!(
                "{} {min} is larger than {} {max}",
                name(MinNewTokens),
                name(MaxNewTokens)
            ),
            Self::TooManyTokens {
                prompt,
                max_new,
                limit,
            } => format!(
                "prompt ({prompt} tokens) + {} {max_new} exceeds the decoder's {limit} positions",
                name(MaxNewTokens)
            ),
            Self::DecodeMemory {
                images,
                count,
                width,
                height,
                need,
                have,
            } => format!(
                "{images} image(s) of {width}x{height} need about {} for the VAE decode alone, \
                 and this machine has {} available; lower {} or the image size",
                gib(*need),
                gib(*have),
                name(*count)
            ),
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message(|p| p.name().to_string()))
    }
}

impl std::error::Error for RequestError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_fields_as_asked() {
        let e = RequestError::NoDenoisingStep {
            strength: 0.1,
            steps: 4,
        };
        assert_eq!(
            e.to_string(),
            "strength 0.1 with 4 steps leaves no denoising step; raise strength or steps"
        );
        let flag = |p: Param| format!("--{}", p.name().replace('_', "-"));
        assert_eq!(
            RequestError::BelowOne(Param::NumImages).message(flag),
            "--num-images must be at least 1"
        );
        let e = anyhow::Error::new(RequestError::BelowOne(Param::Steps)).context("batch 2");
        assert_eq!(format!("{e:#}"), "batch 2: steps must be at least 1");
        assert!(e.downcast_ref::<RequestError>().is_some());
    }
}
