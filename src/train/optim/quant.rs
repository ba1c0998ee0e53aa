//! bitsandbytes' 8-bit blockwise quantisation, as its 8-bit optimizers (0.50) use it: the
//! dynamic quantile maps of `create_dynamic_map` (256 sorted codes in [-1, 1], signed for
//! values of both signs, unsigned for non-negative ones), and `quantize_blockwise` /
//! `dequantize_blockwise` with blocks of [`BLOCK`] elements, each scaled by its absolute
//! maximum (kept in fp32) and stored as the index of a code.
//!
//! The code of a scaled value is chosen as bitsandbytes' CPU kernel chooses it: the value is
//! rounded to one of 65536 points spread evenly over [-1, 1], and a table gives each point its
//! nearest code (by the midpoints between codes). That is the nearest code except within about
//! 1.5e-5 of a midpoint, and it is what makes the saved codes equal bitsandbytes'.
use tch::{Device, Kind, Tensor};

/// Elements per quantisation block (bitsandbytes' optimizers: 256 since 0.46; 2048 before).
pub const BLOCK: i64 = 256;
/// Points of the lookup table over [-1, 1].
const LUT_POINTS: usize = 65536;

/// One dynamic map: its 256 codes and the table from the 65536 points to code indices.
pub struct DynamicMap {
    /// The codes, fp32, sorted ascending.
    pub code: Tensor,
    /// For each point `-1 + 2 i / 65535`, the index of its nearest code (uint8).
    lut: Tensor,
}

impl DynamicMap {
    /// `create_dynamic_map(signed, max_exponent_bits=7, total_bits=8)` on `device`: for each
    /// exponent `e` of 1e-6 ... 1e0, `10^e` times the midpoints of `linspace(0.1, 1, k + 1)`
    /// (`k` = 2^i signed, 2^(i+1) unsigned; their negatives too when signed), plus 0 and 1.
    pub fn new(signed: bool, device: Device) -> Self {
        const SCALES: [f64; 7] = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0];
        let mut data: Vec<f32> = vec![0.0, 1.0];
        for (i, scale) in SCALES.iter().enumerate() {
            let items = if signed {
                (1 << i) + 1
            } else {
                (1 << (i + 1)) + 1
            };
            let bounds = Tensor::linspace(0.1, 1.0, items, (Kind::Float, Device::Cpu));
            let means = (bounds.slice(0, 0, items - 1, 1) + bounds.slice(0, 1, items, 1)) / 2.0;
            let values = means * *scale;
            let values = Vec::<f32>::try_from(&values).expect("fp32 codes");
            if signed {
                data.extend(values.iter().map(|v| -v));
            }
            data.extend(values);
        }
        debug_assert_eq!(data.len(), 256);
        data.sort_by(f32::total_cmp);
        let lut = lut_of(&data);
        DynamicMap {
            code: Tensor::from_slice(&data).to_device(device),
            lut: Tensor::from_slice(&lut).to_device(device),
        }
    }
}

/// bitsandbytes' `build_quantize_lut`: point `i` is `-1 + 2 i / 65535` (fp32) and gets the
/// first code whose upper midpoint is not below it.
fn lut_of(code: &[f32]) -> Vec<u8> {
    let mid: Vec<f32> = code.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect();
    let mut idx = 0;
    (0..LUT_POINTS)
        .map(|i| {
            let val = -1.0f32 + (2.0f32 * i as f32) / (LUT_POINTS - 1) as f32;
            while idx < mid.len() && mid[idx] < val {
                idx += 1;
            }
            idx as u8
        })
        .collect()
}

/// `x` (fp32, any shape) flattened and zero-padded to whole blocks: `[blocks, BLOCK]`.
fn blocked(x: &Tensor) -> Tensor {
    let n = x.numel() as i64;
    let blocks = blocks(n);
    let flat = x.reshape([-1]);
    let pad = blocks * BLOCK - n;
    let flat = if pad > 0 {
        flat.constant_pad_nd([0, pad])
    } else {
        flat
    };
    flat.view([blocks, BLOCK])
}

/// The first `shape`-many elements of a blocked tensor, in `shape`.
fn unblocked(b: &Tensor, shape: &[i64]) -> Tensor {
    let n: i64 = shape.iter().product();
    b.reshape([-1]).narrow(0, 0, n).reshape(shape)
}

/// `quantize_blockwise(x, code, blocksize=BLOCK)`: the uint8 codes (shape of `x`) and the fp32
/// absmax of each block. A block of zeros gets absmax 0 and codes 0.
pub fn quantize(x: &Tensor, map: &DynamicMap) -> (Tensor, Tensor) {
    let xb = blocked(&x.to_kind(Kind::Float));
    // max(|min|, |max|) per block: the absolute maximum without a full-size |x| temporary.
    let (lo, hi) = xb.aminmax(Some(1), false);
    let absmax = hi.maximum(&lo.neg());
    let zero = absmax.eq(0.0).unsqueeze(1);
    let inv = absmax.reciprocal().unsqueeze(1).masked_fill(&zero, 0.0);
    // Non-finite values (a diverged run) are coded as 0 instead of indexing out of the table.
    // One temporary, updated in place (the same fp32 roundings as the out-of-place chain), and
    // int32 points: this is most of an 8-bit step's time on SD-sized models.
    let mut scaled = xb * inv;
    let _ = scaled
        .nan_to_num_(0.0, 1.0, -1.0)
        .clamp_(-1.0, 1.0)
        .g_add_scalar_(1.0)
        .g_mul_scalar_(0.5)
        .g_mul_scalar_((LUT_POINTS - 1) as f64)
        .g_add_scalar_(0.5);
    let point = scaled.to_kind(Kind::Int);
    let codes = map
        .lut
        .index_select(0, &point.view([-1]))
        .view([-1, BLOCK])
        .masked_fill(&zero, 0);
    (unblocked(&codes, &x.size()), absmax)
}

/// `dequantize_blockwise`: each code's value times its block's absmax, fp32 in `codes`' shape.
pub fn dequantize(codes: &Tensor, absmax: &Tensor, map: &DynamicMap) -> Tensor {
    let values = map
        .code
        .index_select(0, &codes.reshape([-1]).to_kind(Kind::Int));
    unblocked(&(blocked(&values) * absmax.unsqueeze(1)), &codes.size())
}

/// Blocks of a tensor of `numel` elements.
pub fn blocks(numel: i64) -> i64 {
    (numel + BLOCK - 1) / BLOCK
}
