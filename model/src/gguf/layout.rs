//! How an HF Llama-family checkpoint's tensors sit in a GGUF file: llama.cpp's tensor
//! names, and the q/k row order it expects. Import and export both go through here, so
//! the two directions cannot drift apart.

use tch::Tensor;

use crate::error::{ModelError, Result};

/// (n_heads, rows / n_heads / 2), or an error when the rows do not split into heads of
/// rotary pairs.
fn head_split(w: &Tensor, n_heads: i64) -> Result<(Vec<i64>, i64)> {
    let shape = w.size();
    match shape.first() {
        Some(&rows) if n_heads > 0 && rows % (2 * n_heads) == 0 => Ok((shape, rows / n_heads / 2)),
        _ => Err(ModelError::InvalidArgument(format!(
            "a q/k projection of shape {shape:?} does not split into {n_heads} heads of rotary pairs"
        ))),
    }
}

/// Whole-model tensors: (GGUF name, HF name).
const GLOBAL: &[(&str, &str)] = &[
    ("token_embd.weight", "model.embed_tokens.weight"),
    ("output_norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
];

/// Per-layer modules: (GGUF `blk.N.` module, HF `model.layers.N.` module).
const LAYER: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// Splits `{prefix}{layer}.{module}.{param}` into its layer, module and parameter.
fn split_layer<'a>(name: &'a str, prefix: &str) -> Option<(usize, &'a str, &'a str)> {
    let (layer, rest) = name.strip_prefix(prefix)?.split_once('.')?;
    let (module, param) = rest.rsplit_once('.')?;
    Some((layer.parse().ok()?, module, param))
}

/// GGUF tensor name → HF tensor name.
pub fn hf_name(gguf_name: &str) -> Option<String> {
    if let Some((_, hf)) = GLOBAL.iter().find(|(g, _)| *g == gguf_name) {
        return Some((*hf).to_owned());
    }
    let (layer, module, param) = split_layer(gguf_name, "blk.")?;
    let (_, hf) = LAYER.iter().find(|(g, _)| *g == module)?;
    Some(format!("model.layers.{layer}.{hf}.{param}"))
}

/// HF tensor name → GGUF tensor name.
pub fn gguf_name(hf_name: &str) -> Option<String> {
    if let Some((gguf, _)) = GLOBAL.iter().find(|(_, h)| *h == hf_name) {
        return Some((*gguf).to_owned());
    }
    let (layer, module, param) = split_layer(hf_name, "model.layers.")?;
    let (gguf, _) = LAYER.iter().find(|(_, h)| *h == module)?;
    Some(format!("blk.{layer}.{gguf}.{param}"))
}

/// A position in llama.cpp's tensor order (embeddings, layers in order, output), for
/// writing files laid out as llama.cpp's converter writes them.
pub fn order_key(gguf_name: &str) -> (usize, usize, String) {
    match split_layer(gguf_name, "blk.") {
        Some((layer, module, _)) => {
            let module_rank = LAYER.iter().position(|(g, _)| *g == module);
            (
                1 + layer,
                module_rank.unwrap_or(LAYER.len()),
                gguf_name.to_owned(),
            )
        }
        None if gguf_name == "token_embd.weight" => (0, 0, gguf_name.to_owned()),
        None => (usize::MAX, 0, gguf_name.to_owned()),
    }
}

/// The heads the q/k permutation groups rows by, for an HF projection weight or bias:
/// `Some(n_heads)` for q_proj, `Some(n_kv_heads)` for k_proj, None for every other tensor.
pub fn permuted_heads(hf_name: &str, n_heads: usize, n_kv_heads: usize) -> Option<i64> {
    if hf_name.contains(".self_attn.q_proj.") {
        Some(n_heads as i64)
    } else if hf_name.contains(".self_attn.k_proj.") {
        Some(n_kv_heads as i64)
    } else {
        None
    }
}

/// llama.cpp's `permute` of q/k rows: within each head, HF's rotate-half order (the first
/// half of the rotary dimensions, then the second) becomes interleaved pairs, the order
/// llama.cpp's (non-NeoX) RoPE rotates. `w` is (rows, ...) with rows = n_heads · head_dim.
/// A row count that is not a multiple of `2 · n_heads` is an error, not a panic.
pub fn permute(w: &Tensor, n_heads: i64) -> Result<Tensor> {
    let (shape, half) = head_split(w, n_heads)?;
    let mut view = vec![n_heads, 2, half];
    view.extend(&shape[1..]);
    Ok(w.f_view(view.as_slice())?
        .transpose(1, 2)
        .f_reshape(shape.as_slice())?)
}

/// The inverse of [`permute`]: llama.cpp's interleaved rows back to HF's order.
pub fn reverse_permute(w: &Tensor, n_heads: i64) -> Result<Tensor> {
    let (shape, half) = head_split(w, n_heads)?;
    let mut view = vec![n_heads, half, 2];
    view.extend(&shape[1..]);
    Ok(w.f_view(view.as_slice())?
        .transpose(1, 2)
        .f_reshape(shape.as_slice())?)
}
