//! The `studioize` command line.
pub fn main() -> i32 {
    crate::device::init();
    0
}
