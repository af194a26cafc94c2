//! Q4_K quantization, following llama.cpp's reference quantizer (`quantize_row_q4_K_ref`,
//! which `llama-quantize` runs when no importance matrix is given), so a file Tiller writes
//! holds what llama.cpp would have written from the same f32 weights.
//!
//! A super-block of 256 values is 8 sub-blocks of 32. Each sub-block gets a scale and a
//! min from a weighted least-squares search over 21 candidate grids (`search_sub_block`);
//! the 8 scales and 8 mins are then quantized to 6 bits against the super-block's largest
//! (`d` and `dmin`, stored as f16), and the values re-rounded against those 6-bit scales.
//! Every float operation is in f32 and in the reference's order (Rust never fuses a
//! multiply-add on its own), so the bytes match a build of llama.cpp without FMA
//! contraction in its reference path.
//!
//! Layout of one 144-byte block (the inverse of `dequant::dequantize_q4k`): `d`, `dmin`
//! (f16 each), 12 bytes of packed 6-bit scales and mins, then 128 bytes of 4-bit values,
//! sub-blocks 2c and 2c+1 sharing bytes 32c..32c+32 (low nibble, high nibble).

use half::f16;

pub const QK_K: usize = 256;
pub const BLOCK_BYTES: usize = 144;
const SUB: usize = 32;
/// The largest 4-bit value.
const NMAX: u8 = 15;
/// The candidate grids: `iscale = (NMAX + RMIN + RDELTA·k) / (max − min)`, k = 0..=NSTEP.
const RMIN: f32 = -1.0;
const RDELTA: f32 = 0.1;
const NSTEP: i32 = 20;

/// ggml's `nearest_int`: its magic-number trick rounds to the nearest integer with ties to
/// even (for |x| < 2²²), unlike `f32::round`.
fn nearest(x: f32) -> i32 {
    x.round_ties_even() as i32
}

/// Best `(scale, min)` of one sub-block, with its levels in `levels`: the value `x` is
/// approximated by `scale · level − min`, `min ≥ 0`, minimising Σ w·(error)² over the grids.
/// (llama.cpp's `make_qkx2_quants` with its Q4_K arguments.)
fn search_sub_block(x: &[f32], weights: &[f32], levels: &mut [u8]) -> (f32, f32) {
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for (&v, &w) in x.iter().zip(weights).skip(1) {
        min = min.min(v);
        max = max.max(v);
        sum_w += w;
        sum_x += w * v;
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        levels.fill(0);
        return (0.0, -min);
    }
    let nmax = f32::from(NMAX);
    let level =
        |iscale: f32, v: f32, min: f32| nearest(iscale * (v - min)).clamp(0, i32::from(NMAX)) as u8;
    let iscale = nmax / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for ((&v, &w), l) in x.iter().zip(weights).zip(levels.iter_mut()) {
        *l = level(iscale, v, min);
        let diff = scale * f32::from(*l) + min - v;
        best_error += w * (diff * diff);
    }
    let mut trial = [0u8; SUB];
    for step in 0..=NSTEP {
        let iscale = (RMIN + RDELTA * step as f32 + nmax) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for ((&v, &w), t) in x.iter().zip(weights).zip(trial.iter_mut()) {
            *t = level(iscale, v, min);
            let l = f32::from(*t);
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * v;
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det <= 0.0 {
            continue;
        }
        let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
        let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
        if this_min > 0.0 {
            this_min = 0.0;
            this_scale = sum_xl / sum_l2;
        }
        let mut error = 0.0f32;
        for ((&v, &w), &t) in x.iter().zip(weights).zip(&trial) {
            let diff = this_scale * f32::from(t) + this_min - v;
            error += w * (diff * diff);
        }
        if error < best_error {
            levels.copy_from_slice(&trial[..x.len()]);
            best_error = error;
            scale = this_scale;
            min = this_min;
        }
    }
    (scale, -min)
}

/// The 6-bit (scale, min) of sub-block `j` from the 12 packed bytes (ggml's
/// `get_scale_min_k4`): sub-blocks 0..4 in the low 6 bits of bytes j and j+4, sub-blocks
/// 4..8 in the nibbles of byte j+4 with their top 2 bits in the top bits of bytes j−4 and j.
pub fn scale_min(packed: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (packed[j] & 63, packed[j + 4] & 63)
    } else {
        (
            (packed[j + 4] & 0x0F) | ((packed[j - 4] >> 6) << 4),
            (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4),
        )
    }
}

fn pack_scale_min(packed: &mut [u8; 12], j: usize, ls: u8, lm: u8) {
    if j < 4 {
        packed[j] = ls;
        packed[j + 4] = lm;
    } else {
        packed[j + 4] = (ls & 0x0F) | ((lm & 0x0F) << 4);
        packed[j - 4] |= (ls >> 4) << 6;
        packed[j] |= (lm >> 4) << 6;
    }
}

/// Appends one 144-byte Q4_K block encoding the 256 values of `x`.
pub fn quantize_block(x: &[f32], out: &mut Vec<u8>) {
    debug_assert_eq!(x.len(), QK_K);
    let mut levels = [0u8; QK_K];
    let (mut scales, mut mins) = ([0.0f32; 8], [0.0f32; 8]);
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..QK_K / SUB {
        let sub = &x[j * SUB..(j + 1) * SUB];
        let sum_x2 = sub.iter().fold(0.0f32, |s, &v| s + v * v);
        let av_x = (sum_x2 / SUB as f32).sqrt();
        // Larger values weigh more: an outlier's error costs more than a small value's.
        let mut weights = [0.0f32; SUB];
        for (w, &v) in weights.iter_mut().zip(sub) {
            *w = av_x + v.abs();
        }
        let (scale, min) = search_sub_block(sub, &weights, &mut levels[j * SUB..(j + 1) * SUB]);
        scales[j] = scale;
        mins[j] = min;
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut packed = [0u8; 12];
    for j in 0..QK_K / SUB {
        // `as u8` wraps as C's conversion to uint8_t does before the reference's MIN(63, ·).
        let ls = (nearest(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest(inv_min * mins[j]) as u8).min(63);
        pack_scale_min(&mut packed, j, ls, lm);
    }
    let d = f16::from_f32(max_scale / 63.0);
    let dmin = f16::from_f32(max_min / 63.0);
    for j in 0..QK_K / SUB {
        let (sc, m) = scale_min(&packed, j);
        let scale = d.to_f32() * f32::from(sc);
        if scale == 0.0 {
            continue; // the search's levels stay, as in the reference
        }
        let min = dmin.to_f32() * f32::from(m);
        for (l, &v) in levels[j * SUB..(j + 1) * SUB].iter_mut().zip(&x[j * SUB..]) {
            *l = nearest((v + min) / scale).clamp(0, i32::from(NMAX)) as u8;
        }
    }
    out.extend(d.to_le_bytes());
    out.extend(dmin.to_le_bytes());
    out.extend(packed);
    for chunk in levels.chunks_exact(2 * SUB) {
        let (low, high) = chunk.split_at(SUB);
        out.extend(low.iter().zip(high).map(|(&a, &b)| a | (b << 4)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::dequant::{dequantize, GgmlType};

    fn values(seed: u32) -> Vec<f32> {
        // A deterministic, roughly normal spread with a few outliers, like a weight row.
        let mut state = seed;
        (0..QK_K * 4)
            .map(|i| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let u = (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                if i % 97 == 0 {
                    u * 0.6
                } else {
                    u * 0.05
                }
            })
            .collect()
    }

    fn rmse(a: &[f32], b: &[f32]) -> f64 {
        let sum: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
        (sum / a.len() as f64).sqrt()
    }

    #[test]
    fn q4_k_round_trips_within_its_grid_and_beats_plain_min_max() {
        let x = values(7);
        let mut bytes = Vec::new();
        for block in x.chunks_exact(QK_K) {
            quantize_block(block, &mut bytes);
        }
        assert_eq!(bytes.len(), 4 * BLOCK_BYTES);
        let back = dequantize(GgmlType::Q4K, &bytes);
        assert_eq!(back.len(), x.len());
        // Plain per-sub-block min/max 4-bit rounding (no search, exact f32 scales) is the
        // baseline the search must beat even after its scales are cut to 6 bits.
        let mut naive = Vec::new();
        for sub in x.chunks_exact(SUB) {
            let (lo, hi) = sub
                .iter()
                .fold((0.0f32, 0.0f32), |(l, h), &v| (l.min(v), h.max(v)));
            let step = (hi - lo) / 15.0;
            naive.extend(
                sub.iter()
                    .map(|&v| lo + step * ((v - lo) / step).round().clamp(0.0, 15.0)),
            );
        }
        let (ours, plain) = (rmse(&x, &back), rmse(&x, &naive));
        assert!(ours < plain, "q4_k rmse {ours} vs plain min/max {plain}");
        assert!(ours > 0.0);
    }

    #[test]
    fn q4_k_of_zeros_and_constants_is_exact() {
        for value in [0.0f32, -0.25] {
            let x = vec![value; QK_K];
            let mut bytes = Vec::new();
            quantize_block(&x, &mut bytes);
            let back = dequantize(GgmlType::Q4K, &bytes);
            for v in back {
                assert!(
                    (v - value).abs() <= 1e-3 * value.abs().max(1.0),
                    "{v} vs {value}"
                );
            }
        }
    }

    #[test]
    fn scale_min_reads_what_pack_wrote() {
        let mut packed = [0u8; 12];
        let pairs: Vec<(u8, u8)> = (0..8).map(|j| (63 - j * 7, j * 9)).collect();
        for (j, &(ls, lm)) in pairs.iter().enumerate() {
            pack_scale_min(&mut packed, j, ls, lm);
        }
        for (j, &pair) in pairs.iter().enumerate() {
            assert_eq!(scale_min(&packed, j), pair, "sub-block {j}");
        }
    }
}
