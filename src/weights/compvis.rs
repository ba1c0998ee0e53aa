//! CompVis single-file conversion.
