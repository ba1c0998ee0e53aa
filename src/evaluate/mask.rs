//! Product masks: read from 8-bit images (>= 128 is product), dilated, resized, or estimated
//! from a photo when none is known.
use super::background::clean_map;
use anyhow::Result;
use image::{GrayImage, RgbImage};
use std::path::Path;

/// Which pixels belong to the product (row-major).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    pub width: u32,
    pub height: u32,
    pub inside: Vec<bool>,
}

impl Mask {
    pub fn empty(width: u32, height: u32) -> Self {
        Mask {
            width,
            height,
            inside: vec![false; (width * height) as usize],
        }
    }

    /// Pixels of at least 50% coverage (>= 128) are product.
    pub fn from_gray(img: &GrayImage) -> Self {
        Mask {
            width: img.width(),
            height: img.height(),
            inside: img.pixels().map(|p| p[0] >= 128).collect(),
        }
    }

    /// Reads a mask image (any format; converted to 8-bit grey), naming the file in errors.
    pub fn read(path: &Path) -> Result<Self> {
        Ok(Self::from_gray(&crate::imageio::decode(path)?.to_luma8()))
    }

    pub fn count(&self) -> usize {
        self.inside.iter().filter(|m| **m).count()
    }

    /// Grown by `r` pixels (square neighbourhood).
    pub fn dilate(&self, r: u32) -> Self {
        let (w, h, r) = (self.width as i64, self.height as i64, r as i64);
        let mut out = Self::empty(self.width, self.height);
        for y in 0..h {
            for x in 0..w {
                if !self.inside[(y * w + x) as usize] {
                    continue;
                }
                for yy in (y - r).max(0)..=(y + r).min(h - 1) {
                    for xx in (x - r).max(0)..=(x + r).min(w - 1) {
                        out.inside[(yy * w + xx) as usize] = true;
                    }
                }
            }
        }
        out
    }

    /// Resized to `w` x `h` by nearest neighbour.
    pub fn resized(&self, w: u32, h: u32) -> Self {
        if (w, h) == (self.width, self.height) {
            return self.clone();
        }
        let mut out = Self::empty(w, h);
        for y in 0..h {
            for x in 0..w {
                let sx = ((x as f64 + 0.5) * self.width as f64 / w as f64) as u32;
                let sy = ((y as f64 + 0.5) * self.height as f64 / h as f64) as u32;
                out.inside[(y * w + x) as usize] = self.inside
                    [(sy.min(self.height - 1) * self.width + sx.min(self.width - 1)) as usize];
            }
        }
        out
    }

    /// The product region of a photo when no mask is known: the largest 8-connected region of
    /// non-clean pixels (see [`clean_map`]) that does not touch the image border, with its holes
    /// filled. A product on a clean background is found; on a cluttered background every large
    /// region touches the border, so little or nothing is taken out of the background. Empty
    /// when there is no such region.
    pub fn estimate(img: &RgbImage) -> Self {
        let clean = clean_map(img);
        let (w, h) = (img.width() as usize, img.height() as usize);
        let mut label = vec![usize::MAX; w * h];
        let mut best: Option<(usize, usize)> = None; // (size, label)
        let mut stack = Vec::new();
        for start in 0..w * h {
            if clean[start] || label[start] != usize::MAX {
                continue;
            }
            let id = start;
            label[start] = id;
            stack.push(start);
            let (mut size, mut border) = (0usize, false);
            while let Some(i) = stack.pop() {
                size += 1;
                let (x, y) = (i % w, i / w);
                border |= x == 0 || y == 0 || x == w - 1 || y == h - 1;
                for dy in -1i64..=1 {
                    for dx in -1i64..=1 {
                        let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                        if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                            continue;
                        }
                        let j = ny as usize * w + nx as usize;
                        if !clean[j] && label[j] == usize::MAX {
                            label[j] = id;
                            stack.push(j);
                        }
                    }
                }
            }
            if !border && best.is_none_or(|(s, _)| size > s) {
                best = Some((size, id));
            }
        }
        let mut mask = Self::empty(img.width(), img.height());
        let Some((_, id)) = best else { return mask };
        for (m, l) in mask.inside.iter_mut().zip(&label) {
            *m = *l == id;
        }
        mask.fill_holes();
        mask
    }

    /// Marks as product every pixel not reachable from the border through non-product pixels
    /// (4-connected).
    fn fill_holes(&mut self) {
        let (w, h) = (self.width as usize, self.height as usize);
        let mut outside = vec![false; w * h];
        let mut stack: Vec<usize> = (0..w * h)
            .filter(|&i| {
                let (x, y) = (i % w, i / w);
                (x == 0 || y == 0 || x == w - 1 || y == h - 1) && !self.inside[i]
            })
            .collect();
        for &i in &stack {
            outside[i] = true;
        }
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            let mut visit = |j: usize| {
                if !self.inside[j] && !outside[j] {
                    outside[j] = true;
                    stack.push(j);
                }
            };
            if x > 0 {
                visit(i - 1)
            }
            if x + 1 < w {
                visit(i + 1)
            }
            if y > 0 {
                visit(i - w)
            }
            if y + 1 < h {
                visit(i + w)
            }
        }
        for (m, o) in self.inside.iter_mut().zip(outside) {
            *m = !o;
        }
    }
}
