//! The look shared by every chart (the loss plots and the compare pictures): run colours,
//! marker colours, the font and its sizes, text cut to fit, and the drawing-error wrapper.

use super::panels::MarkKind;
use crate::monitor::detector::Label;
use plotters::style::RGBColor;

/// The font family; fontconfig resolves it (Debian: `fonts-dejavu-core`).
pub(super) const FONT: &str = "sans-serif";

/// Run colours, in run order (matplotlib's tab10).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The colour of run number `i` (the palette repeats after ten runs).
pub(super) fn run_color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// The colour of a marker's guide, symbol outline and label.
pub(super) fn mark_color(kind: MarkKind) -> RGBColor {
    match kind {
        MarkKind::Event(Label::Diverged) | MarkKind::LastFinite => RGBColor(178, 0, 0),
        MarkKind::Event(Label::Deconverged) => RGBColor(128, 0, 128),
        MarkKind::Event(Label::Overfitting) => RGBColor(190, 90, 0),
        MarkKind::Event(_) => RGBColor(80, 80, 80),
        MarkKind::Best => RGBColor(0, 110, 0),
    }
}

/// Text sizes (in pixels) that scale with the image.
#[derive(Clone, Copy)]
pub(super) struct Sizes {
    pub title: f64,
    pub axis: f64,
    pub tick: f64,
    pub note: f64,
}

/// The text sizes of the per-metric charts and of the overview.
pub(super) const CHART_SIZES: Sizes = Sizes {
    title: 34.0,
    axis: 24.0,
    tick: 19.0,
    note: 18.0,
};

/// `text`, cut to at most `max_chars` characters with an ellipsis as the last one.
pub(super) fn ellipsize(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_string()
    } else {
        text.chars()
            .take(max_chars.saturating_sub(1))
            .collect::<String>()
            + "…"
    }
}

/// A plotters error as an `anyhow` error.
pub(super) fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing failed: {e:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ellipsize_cuts_by_characters() {
        assert_eq!(ellipsize("lr=1e-05", 8), "lr=1e-05");
        assert_eq!(ellipsize("lr=1e-05", 5), "lr=1…");
        assert_eq!(ellipsize("äöüäöü", 3), "äö…");
        assert_eq!(ellipsize("abc", 0), "…");
        assert_eq!(run_color(10), run_color(0));
    }
}
