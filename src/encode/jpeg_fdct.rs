//! Forward DCT and quantisation of the JPEG encoder (`jpeg_planar`): libjpeg's float AAN
//! DCT (jfdctflt.c) written lane-wise over eight columns, so that the compiler turns each
//! pass into vector instructions (SSE2 on x86-64, NEON on aarch64), with the AAN
//! scale factors folded into the quantiser's multipliers.
//!
//! Coefficients come out transposed (`coefs[v * 8 + u]` for vertical frequency u and
//! horizontal frequency v): the second pass works on the transposed block and the
//! result is left so; [`ZIGZAG`] reads it in zigzag order.

/// The quantisation tables of T.81 Annex K.1, in natural (row-major) order.
pub const LUMA_QUANT: [u8; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
    92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];
pub const CHROMA_QUANT: [u8; 64] = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
];

/// Natural index of each zigzag position (T.81 Figure A.6).
pub const NATURAL_OF_ZIGZAG: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// Index into [`Quantizer::block`]'s (transposed) output of each zigzag position.
pub const ZIGZAG: [u8; 64] = {
    let mut t = [0u8; 64];
    let mut k = 0;
    while k < 64 {
        let n = NATURAL_OF_ZIGZAG[k];
        t[k] = (n % 8) * 8 + n / 8;
        k += 1;
    }
    t
};

/// Zigzag position of each index of the transposed output (the inverse of [`ZIGZAG`]).
pub const ZIGZAG_OF_INDEX: [u8; 64] = {
    let mut t = [0u8; 64];
    let mut k = 0;
    while k < 64 {
        t[ZIGZAG[k] as usize] = k as u8;
        k += 1;
    }
    t
};

/// A quantisation table at a quality, as written in DQT and as multipliers for the DCT.
pub struct Quantizer {
    /// Quantiser steps in zigzag order, as DQT carries them (baseline: 1..=255).
    pub zigzag: [u8; 64],
    /// 1 / (step × AAN scale(u) × AAN scale(v) × 8), in the transposed output order.
    multipliers: [f32; 64],
}

impl Quantizer {
    /// Scales a base table to `quality` (1..=100) as libjpeg does (jcparam.c), so the
    /// same quality number gives the same tables as libjpeg-turbo and jpeg-encoder.
    pub fn new(base: &[u8; 64], quality: u8) -> Quantizer {
        let quality = quality.clamp(1, 100) as u32;
        let scale = if quality < 50 {
            5000 / quality
        } else {
            200 - quality * 2
        };
        let step = |n: usize| ((base[n] as u32 * scale + 50) / 100).clamp(1, 255) as u8;
        const AAN: [f64; 8] = [
            1.0,
            1.387_039_845,
            1.306_562_965,
            1.175_875_602,
            1.0,
            0.785_694_958,
            0.541_196_100,
            0.275_899_379,
        ];
        let mut zigzag = [0u8; 64];
        for (k, &n) in NATURAL_OF_ZIGZAG.iter().enumerate() {
            zigzag[k] = step(n as usize);
        }
        let mut multipliers = [0f32; 64];
        for (i, m) in multipliers.iter_mut().enumerate() {
            let (v, u) = (i / 8, i % 8);
            *m = (1.0 / (step(u * 8 + v) as f64 * AAN[u] * AAN[v] * 8.0)) as f32;
        }
        Quantizer {
            zigzag,
            multipliers,
        }
    }

    /// Transforms and quantises the 8x8 block at `pixels[offset..]` (rows `stride` apart)
    /// into `coefs` (transposed order, see the module doc).
    #[inline(always)]
    pub fn block(&self, pixels: &[u8], offset: usize, stride: usize, coefs: &mut [i32; 64]) {
        let mut rows = [[0f32; 8]; 8];
        for (r, row) in rows.iter_mut().enumerate() {
            let line: &[u8; 8] = pixels[offset + r * stride..][..8]
                .try_into()
                .expect("an 8-byte slice");
            for (x, &p) in row.iter_mut().zip(line) {
                *x = p as f32 - 128.0;
            }
        }
        dct_columns(&mut rows);
        let mut t = [[0f32; 8]; 8];
        for (r, row) in rows.iter().enumerate() {
            for (c, &x) in row.iter().enumerate() {
                t[c][r] = x;
            }
        }
        dct_columns(&mut t);
        let flat = t.as_flattened();
        for ((c, &x), &m) in coefs.iter_mut().zip(flat).zip(&self.multipliers) {
            *c = round(x * m);
        }
    }
}

/// Rounds to the nearest integer (ties to even) for |x| < 2^22, by adding 1.5 × 2^23 so
/// that the float's mantissa holds the integer: no libm call, vectorises everywhere.
#[inline(always)]
fn round(x: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0;
    (x + MAGIC).to_bits() as i32 - MAGIC.to_bits() as i32
}

/// One AAN pass down each of the eight columns at once (jfdctflt.c's butterflies; the
/// outputs are scaled by the AAN factors, which the quantiser undoes).
// `c` is the lane: every row is read at the same column, which is what vectorises.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn dct_columns(b: &mut [[f32; 8]; 8]) {
    for c in 0..8 {
        let tmp0 = b[0][c] + b[7][c];
        let tmp7 = b[0][c] - b[7][c];
        let tmp1 = b[1][c] + b[6][c];
        let tmp6 = b[1][c] - b[6][c];
        let tmp2 = b[2][c] + b[5][c];
        let tmp5 = b[2][c] - b[5][c];
        let tmp3 = b[3][c] + b[4][c];
        let tmp4 = b[3][c] - b[4][c];

        let tmp10 = tmp0 + tmp3;
        let tmp13 = tmp0 - tmp3;
        let tmp11 = tmp1 + tmp2;
        let tmp12 = tmp1 - tmp2;
        b[0][c] = tmp10 + tmp11;
        b[4][c] = tmp10 - tmp11;
        let z1 = (tmp12 + tmp13) * std::f32::consts::FRAC_1_SQRT_2;
        b[2][c] = tmp13 + z1;
        b[6][c] = tmp13 - z1;

        let tmp10 = tmp4 + tmp5;
        let tmp11 = tmp5 + tmp6;
        let tmp12 = tmp6 + tmp7;
        let z5 = (tmp10 - tmp12) * 0.382_683_43;
        let z2 = 0.541_196_1 * tmp10 + z5;
        let z4 = 1.306_563 * tmp12 + z5;
        let z3 = tmp11 * std::f32::consts::FRAC_1_SQRT_2;
        let z11 = tmp7 + z3;
        let z13 = tmp7 - z3;
        b[5][c] = z13 + z2;
        b[3][c] = z13 - z2;
        b[1][c] = z11 + z4;
        b[7][c] = z11 - z4;
    }
}

/// Bit k set where zigzag coefficient k of `coefs` (transposed order) is not zero.
#[inline(always)]
pub fn nonzero_zigzag(coefs: &[i32; 64]) -> u64 {
    let mut natural = nonzero_by_index(coefs);
    let mut zigzag = 0u64;
    while natural != 0 {
        let i = natural.trailing_zeros();
        natural &= natural - 1;
        zigzag |= 1 << ZIGZAG_OF_INDEX[i as usize];
    }
    zigzag
}

/// Bit i set where `coefs[i]` is not zero.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn nonzero_by_index(coefs: &[i32; 64]) -> u64 {
    use std::arch::x86_64::*;
    let mut mask = 0u64;
    // SAFETY: SSE2 is part of x86-64; each load reads 4 of the 64 i32 in `coefs`.
    unsafe {
        let p = coefs.as_ptr() as *const __m128i;
        let zero = _mm_setzero_si128();
        for q in 0..4 {
            let words = |j: usize| {
                _mm_packs_epi32(
                    _mm_loadu_si128(p.add(q * 4 + j * 2)),
                    _mm_loadu_si128(p.add(q * 4 + j * 2 + 1)),
                )
            };
            // Saturating packs keep zero as zero and non-zero as non-zero.
            let bytes = _mm_packs_epi16(words(0), words(1));
            let zeros = _mm_movemask_epi8(_mm_cmpeq_epi8(bytes, zero)) as u32;
            mask |= ((!zeros & 0xFFFF) as u64) << (q * 16);
        }
    }
    mask
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn nonzero_by_index(coefs: &[i32; 64]) -> u64 {
    coefs
        .iter()
        .enumerate()
        .fold(0u64, |m, (i, &c)| m | ((c != 0) as u64) << i)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The DCT-II of T.81 A.3.3 computed directly, quantised by `steps` (natural order).
    fn reference(block: &[u8; 64], steps: &[u8; 64]) -> [i32; 64] {
        let c = |k: usize| if k == 0 { 1.0 / 2f64.sqrt() } else { 1.0 };
        let mut out = [0i32; 64];
        for u in 0..8 {
            for v in 0..8 {
                let mut s = 0.0;
                for y in 0..8 {
                    for x in 0..8 {
                        s += (block[y * 8 + x] as f64 - 128.0)
                            * (((2 * x + 1) * v) as f64 * std::f64::consts::PI / 16.0).cos()
                            * (((2 * y + 1) * u) as f64 * std::f64::consts::PI / 16.0).cos();
                    }
                }
                let f = 0.25 * c(u) * c(v) * s;
                out[u * 8 + v] = (f / steps[u * 8 + v] as f64).round() as i32;
            }
        }
        out
    }

    #[test]
    fn matches_the_reference_dct() {
        let mut x = 0x1234_5678u32;
        for quality in [50u8, 80, 100] {
            let q = Quantizer::new(&LUMA_QUANT, quality);
            let mut steps = [0u8; 64];
            for (k, &n) in NATURAL_OF_ZIGZAG.iter().enumerate() {
                steps[n as usize] = q.zigzag[k];
            }
            for _ in 0..50 {
                let mut block = [0u8; 64];
                for (i, p) in block.iter_mut().enumerate() {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    // A gradient with noise: low and high frequencies both present.
                    *p = ((i % 8) * 20 + (i / 8) * 9 + (x % 48) as usize) as u8;
                }
                let mut coefs = [0i32; 64];
                q.block(&block, 0, 8, &mut coefs);
                let want = reference(&block, &steps);
                for k in 0..64 {
                    let got = coefs[ZIGZAG[k] as usize];
                    let n = NATURAL_OF_ZIGZAG[k] as usize;
                    // Rounding ties may land either way.
                    assert!(
                        (got - want[n]).abs() <= 1,
                        "q{quality} coef {n}: {got} vs {}",
                        want[n]
                    );
                }
                let nonzero = nonzero_zigzag(&coefs);
                for k in 0..64 {
                    assert_eq!(nonzero >> k & 1 == 1, coefs[ZIGZAG[k] as usize] != 0);
                }
            }
        }
    }

    #[test]
    fn tables_scale_like_libjpeg() {
        // libjpeg at quality 75: luma DC step 8 (16 * 50 / 100), chroma corner 50.
        let q = Quantizer::new(&LUMA_QUANT, 75);
        assert_eq!(q.zigzag[0], 8);
        assert_eq!(Quantizer::new(&CHROMA_QUANT, 75).zigzag[63], 50);
        assert!(Quantizer::new(&LUMA_QUANT, 100)
            .zigzag
            .iter()
            .all(|&s| s == 1));
        assert!(Quantizer::new(&LUMA_QUANT, 1)
            .zigzag
            .iter()
            .all(|&s| s == 255));
    }
}
