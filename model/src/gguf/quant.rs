//! f32 values → GGML tensor bytes: the inverse of [`crate::gguf::dequant`] for the types
//! Tiller writes. Q8_0 follows ggml's `quantize_row_q8_0_ref` (and gguf-py's
//! `quants.Q8_0`): per block of 32, `d = max|x| / 127` stored as f16, `q = round(x / d)`
//! with halves away from zero, so llama.cpp's own quantizer would write the same bytes.
//! Q4_K is [`crate::gguf::q4_k`]'s port of llama.cpp's reference quantizer.

use half::{bf16, f16};

use crate::gguf::dequant::GgmlType;
use crate::gguf::q4_k;

const QK8_0: usize = 32;

/// Whether `ty` can hold rows of `row_len` values (whole blocks only).
pub fn fits(ty: GgmlType, row_len: usize) -> bool {
    row_len % ty.block().0 == 0
}

/// Encodes `values` (whole rows, row length a multiple of the block size) as `ty`; None
/// for a type Tiller reads but does not write, or a length that is not whole blocks.
pub fn quantize(ty: GgmlType, values: &[f32]) -> Option<Vec<u8>> {
    if values.len() % ty.block().0 != 0 {
        return None;
    }
    Some(match ty {
        GgmlType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect(),
        GgmlType::BF16 => values
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
            .collect(),
        GgmlType::Q8_0 => {
            let mut out = Vec::with_capacity(values.len() / QK8_0 * 34);
            for block in values.chunks_exact(QK8_0) {
                quantize_q8_0_block(block, &mut out);
            }
            out
        }
        GgmlType::Q4K => {
            let mut out = Vec::with_capacity(values.len() / q4_k::QK_K * q4_k::BLOCK_BYTES);
            for block in values.chunks_exact(q4_k::QK_K) {
                q4_k::quantize_block(block, &mut out);
            }
            out
        }
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q6K => return None,
    })
}

fn quantize_q8_0_block(block: &[f32], out: &mut Vec<u8>) {
    let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend(f16::from_f32(d).to_le_bytes());
    // f32::round rounds halves away from zero, as C's roundf; |x·id| ≤ 127 by construction.
    out.extend(block.iter().map(|&x| (x * id).round() as i8 as u8));
}
