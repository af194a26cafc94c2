//! Turns a GGUF file into an HF-format directory: tensors dequantized to f32 and renamed,
//! llama.cpp's q/k row permutation undone (see [`crate::gguf::layout`]), config.json and
//! the tokenizer rebuilt. [`crate::gguf::export`] is the way back.

use std::collections::HashMap;
use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::checkpoint::save_safetensors;
use crate::config::{LlamaConfig, ModelType, RopeScaling, RopeType};
use crate::error::{ModelError, Result};
use crate::gguf::dequant::dequantize;
use crate::gguf::layout::{hf_name, permuted_heads, reverse_permute};
use crate::gguf::reader::{GgufFile, MetadataValue, TensorInfo};
use crate::gguf::tokenizer;

/// Reads the model hyper-parameters from `{arch}.*` metadata.
pub fn config_from_gguf(file: &GgufFile) -> Result<LlamaConfig> {
    let arch = file
        .get("general.architecture")
        .and_then(MetadataValue::as_str)
        .unwrap_or("");
    let model_type = match arch {
        "llama" => ModelType::Llama,
        "qwen2" => ModelType::Qwen2,
        other => {
            return Err(file.error(format!(
                "general.architecture `{other}` is not supported (llama, qwen2)"
            )))
        }
    };
    let int = |key: &str| -> Result<usize> {
        file.get(&format!("{arch}.{key}"))
            .and_then(MetadataValue::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| file.error(format!("metadata `{arch}.{key}` is missing")))
    };
    let opt_int = |key: &str| {
        file.get(&format!("{arch}.{key}"))
            .and_then(MetadataValue::as_u64)
    };
    let float = |key: &str| {
        file.get(&format!("{arch}.{key}"))
            .and_then(MetadataValue::as_f64)
    };
    let hidden_size = int("embedding_length")?;
    let num_attention_heads = int("attention.head_count")?;
    let tokens = file
        .get("tokenizer.ggml.tokens")
        .and_then(MetadataValue::as_array)
        .map(<[_]>::len);
    let vocab_size = match opt_int("vocab_size") {
        Some(v) => v as usize,
        None => tokens.ok_or_else(|| file.error("cannot tell the vocabulary size"))?,
    };
    let rope_scaling = match file
        .get(&format!("{arch}.rope.scaling.type"))
        .and_then(MetadataValue::as_str)
    {
        None | Some("none") => None,
        Some("linear") => Some(RopeScaling {
            rope_type: RopeType::Linear,
            factor: float("rope.scaling.factor"),
            low_freq_factor: None,
            high_freq_factor: None,
            original_max_position_embeddings: opt_int("rope.scaling.original_context_length")
                .map(|v| v as usize),
        }),
        Some(other) => {
            return Err(file.error(format!(
                "metadata `{arch}.rope.scaling.type` is `{other}`: not supported (none, linear)"
            )))
        }
    };
    let id = |key: &str| {
        file.get(key)
            .and_then(MetadataValue::as_u64)
            .map(|v| v as u32)
    };
    let has_output = file.tensors.iter().any(|t| t.name == "output.weight");
    let config = LlamaConfig {
        model_type,
        vocab_size,
        hidden_size,
        intermediate_size: int("feed_forward_length")?,
        num_hidden_layers: int("block_count")?,
        num_attention_heads,
        num_key_value_heads: Some(
            opt_int("attention.head_count_kv").map_or(num_attention_heads, |v| v as usize),
        ),
        head_dim: opt_int("attention.key_length").map(|v| v as usize),
        rms_norm_eps: float("attention.layer_norm_rms_epsilon").unwrap_or(1e-6),
        rope_theta: float("rope.freq_base").unwrap_or(10_000.0),
        rope_scaling,
        max_position_embeddings: opt_int("context_length").map_or(2048, |v| v as usize),
        tie_word_embeddings: !has_output,
        attention_bias: model_type == ModelType::Qwen2,
        bos_token_id: id("tokenizer.ggml.bos_token_id").map(crate::config::TokenIds::One),
        eos_token_id: id("tokenizer.ggml.eos_token_id").map(crate::config::TokenIds::One),
        pad_token_id: id("tokenizer.ggml.padding_token_id"),
        architectures: vec![model_type.architecture().to_owned()],
        torch_dtype: Some("float32".to_owned()),
        extra: serde_json::Map::new(),
    };
    Ok(config)
}

fn dequantized_tensor(file: &GgufFile, info: &TensorInfo) -> Result<Tensor> {
    let values = dequantize(info.ggml_type, file.tensor_bytes(info)?);
    Ok(Tensor::from_slice(&values).f_view(info.torch_shape().as_slice())?)
}

/// Imports `gguf_path` into `out_dir` as an HF-format checkpoint (f32 weights).
pub fn import_gguf(gguf_path: &Path, out_dir: &Path) -> Result<LlamaConfig> {
    let file = GgufFile::open(gguf_path)?;
    let config = config_from_gguf(&file)?;
    let rebuilt = tokenizer::rebuild(&file)?;
    let mut tensors = HashMap::new();
    for info in &file.tensors {
        if info.name == "rope_freqs.weight" {
            return Err(file.error(
                "tensor `rope_freqs.weight` (llama3 RoPE frequency factors) is not supported yet",
            ));
        }
        let name = hf_name(&info.name)
            .ok_or_else(|| file.error(format!("tensor `{}` has no HF equivalent", info.name)))?;
        let mut tensor = dequantized_tensor(&file, info)?;
        if config.model_type == ModelType::Llama {
            let heads = permuted_heads(&name, config.num_attention_heads, config.num_kv_heads());
            if let Some(heads) = heads {
                tensor = reverse_permute(&tensor, heads)
                    .map_err(|e| file.error(format!("tensor `{}`: {e}", info.name)))?;
            }
        }
        tensors.insert(
            name,
            tensor
                .to_device(Device::Cpu)
                .to_kind(Kind::Float)
                .contiguous(),
        );
    }
    std::fs::create_dir_all(out_dir).map_err(|e| ModelError::io(out_dir, e))?;
    save_safetensors(&tensors, &out_dir.join("model.safetensors"))?;
    config.write(&out_dir.join("config.json"))?;
    let write_json = |name: &str, value: &serde_json::Value| -> Result<()> {
        let path = out_dir.join(name);
        let text = serde_json::to_string_pretty(value).map_err(|source| ModelError::Json {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&path, text).map_err(|e| ModelError::io(&path, e))
    };
    write_json("tokenizer.json", &rebuilt.tokenizer_json)?;
    write_json("tokenizer_config.json", &rebuilt.tokenizer_config)?;
    write_json("generation_config.json", &rebuilt.generation_config)?;
    Ok(config)
}
