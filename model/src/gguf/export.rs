//! An HF-format checkpoint (or a LoRA adapter, merged into its base first) written as a
//! GGUF file that llama.cpp, Ollama and LM Studio load: the mirror of
//! [`crate::gguf::import`]. Hyper-parameters go to llama.cpp's `{arch}.*` keys, tensors
//! get llama.cpp's names and q/k row order, the tokenizer its `tokenizer.*` keys.
//! Norms and biases stay f32 (as llama.cpp's converter keeps them); matrices take the
//! chosen type where their rows are whole blocks of it, else the nearest type that fits
//! (see [`ExportType::matrix_type`]).

use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use crate::checkpoint::CausalLm;
use crate::config::{LlamaConfig, ModelType, RopeType};
use crate::error::{ModelError, Result};
use crate::gguf::dequant::GgmlType;
use crate::gguf::layout::{gguf_name, order_key, permute, permuted_heads};
use crate::gguf::quant::{fits, quantize};
use crate::gguf::reader::MetadataValue;
use crate::gguf::tokenizer_export::tokenizer_metadata;
use crate::gguf::writer::{GgufWriter, ALIGNMENT};

/// The weight types `tiller model export --type` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportType {
    F32,
    F16,
    Q8_0,
    /// Q4_K for every matrix whose rows are whole super-blocks of 256 (llama.cpp's
    /// Q4_K_S without its Q5_K/Q6_K upgrades of some tensors).
    Q4K,
}

impl ExportType {
    /// llama.cpp's `general.file_type` (`LLAMA_FTYPE_ALL_F32`, `_MOSTLY_F16`, `_MOSTLY_Q8_0`,
    /// `_MOSTLY_Q4_K_S`).
    fn file_type(self) -> u32 {
        match self {
            ExportType::F32 => 0,
            ExportType::F16 => 1,
            ExportType::Q8_0 => 7,
            ExportType::Q4K => 14,
        }
    }

    /// The type of a matrix whose rows hold `row_len` values. A row that is not whole
    /// blocks of the chosen type falls back, as llama.cpp's quantizer does: Q8_0 to F16;
    /// Q4_K to Q8_0 (llama.cpp picks Q5_0, which Tiller does not write; Q8_0 is the more
    /// accurate of the two), then to F16.
    fn matrix_type(self, row_len: usize) -> GgmlType {
        let first_fitting = |types: &[GgmlType]| {
            types
                .iter()
                .copied()
                .find(|&ty| fits(ty, row_len))
                .unwrap_or(GgmlType::F16)
        };
        match self {
            ExportType::F32 => GgmlType::F32,
            ExportType::F16 => GgmlType::F16,
            ExportType::Q8_0 => first_fitting(&[GgmlType::Q8_0]),
            ExportType::Q4K => first_fitting(&[GgmlType::Q4K, GgmlType::Q8_0]),
        }
    }

    /// The type a matrix gets when its rows fit.
    fn preferred(self) -> GgmlType {
        match self {
            ExportType::F32 => GgmlType::F32,
            ExportType::F16 => GgmlType::F16,
            ExportType::Q8_0 => GgmlType::Q8_0,
            ExportType::Q4K => GgmlType::Q4K,
        }
    }
}

impl std::str::FromStr for ExportType {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(ExportType::F32),
            "f16" => Ok(ExportType::F16),
            "q8_0" => Ok(ExportType::Q8_0),
            "q4_k" => Ok(ExportType::Q4K),
            other => Err(ModelError::InvalidArgument(format!(
                "unknown GGUF type `{other}` (f32, f16, q8_0, q4_k)"
            ))),
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    pub tensors: usize,
    /// Matrices written in another type than the chosen one because their rows are not
    /// whole blocks of it: (GGUF name, type written).
    pub fallbacks: Vec<(String, GgmlType)>,
}

/// llama.cpp's architecture name, the prefix of its hyper-parameter keys.
fn arch_name(model_type: ModelType) -> &'static str {
    match model_type {
        ModelType::Llama => "llama",
        ModelType::Qwen2 => "qwen2",
    }
}

/// `general.*` and `{arch}.*` metadata for `config` (what [`crate::gguf::import`]'s
/// `config_from_gguf` reads back).
fn model_metadata(
    config: &LlamaConfig,
    name: &str,
    ty: ExportType,
    config_path: &Path,
) -> Result<Vec<(String, MetadataValue)>> {
    use MetadataValue::{String as S, F32, U32};
    let arch = arch_name(config.model_type);
    let int = |v: usize| U32(v as u32);
    let mut out = vec![
        ("general.architecture".to_owned(), S(arch.into())),
        ("general.type".to_owned(), S("model".into())),
        ("general.name".to_owned(), S(name.into())),
        ("general.file_type".to_owned(), U32(ty.file_type())),
        ("general.quantization_version".to_owned(), U32(2)),
        ("general.alignment".to_owned(), U32(ALIGNMENT as u32)),
    ];
    let keys = [
        ("vocab_size", int(config.vocab_size)),
        ("context_length", int(config.max_position_embeddings)),
        ("embedding_length", int(config.hidden_size)),
        ("block_count", int(config.num_hidden_layers)),
        ("feed_forward_length", int(config.intermediate_size)),
        ("rope.dimension_count", int(config.head_dim())),
        ("rope.freq_base", F32(config.rope_theta as f32)),
        ("attention.head_count", int(config.num_attention_heads)),
        ("attention.head_count_kv", int(config.num_kv_heads())),
        (
            "attention.layer_norm_rms_epsilon",
            F32(config.rms_norm_eps as f32),
        ),
    ];
    out.extend(keys.into_iter().map(|(k, v)| (format!("{arch}.{k}"), v)));
    if let Some(head_dim) = config.head_dim {
        // Only when config.json states it: llama.cpp derives it from the widths otherwise.
        out.push((format!("{arch}.attention.key_length"), int(head_dim)));
        out.push((format!("{arch}.attention.value_length"), int(head_dim)));
    }
    if let Some(scaling) = &config.rope_scaling {
        match scaling.rope_type {
            RopeType::Default => {}
            RopeType::Linear => {
                out.push((format!("{arch}.rope.scaling.type"), S("linear".into())));
                let factor = scaling.factor.unwrap_or(1.0) as f32;
                out.push((format!("{arch}.rope.scaling.factor"), F32(factor)));
            }
            RopeType::Llama3 => {
                // llama.cpp wants llama3 scaling as a `rope_freqs.weight` tensor, which the
                // importer does not read back yet either.
                return Err(ModelError::Config {
                    path: config_path.to_owned(),
                    message: "rope_scaling.rope_type `llama3` cannot be exported to GGUF yet (default, linear)".into(),
                });
            }
        }
    }
    Ok(out)
}

/// Where the tokenizer of `dir` lives: `dir` itself, or for an adapter without its own
/// tokenizer files, the base model's directory.
fn tokenizer_dir(dir: &Path) -> Result<PathBuf> {
    if dir.join("tokenizer.json").exists() || !dir.join(crate::lora::ADAPTER_CONFIG).exists() {
        return Ok(dir.to_owned());
    }
    let peft = crate::lora::PeftConfig::read(dir)?;
    Ok(peft.base_dir(dir).unwrap_or_else(|| dir.to_owned()))
}

/// One tensor as GGUF data: llama.cpp's row order for q/k, GGML dims, encoded bytes.
fn encode_tensor(
    hf_name: &str,
    tensor: &Tensor,
    config: &LlamaConfig,
    ty: ExportType,
) -> Result<(Vec<u64>, GgmlType, Vec<u8>)> {
    let mut t = tensor.to_device(Device::Cpu).to_kind(Kind::Float);
    if config.model_type == ModelType::Llama {
        if let Some(heads) =
            permuted_heads(hf_name, config.num_attention_heads, config.num_kv_heads())
        {
            t = permute(&t, heads)?;
        }
    }
    let dims: Vec<u64> = t.size().iter().rev().map(|&d| d as u64).collect();
    let ggml_type = match dims.as_slice() {
        [_] => GgmlType::F32,
        [row, ..] => ty.matrix_type(*row as usize),
        [] => {
            return Err(ModelError::InvalidArgument(format!(
                "tensor `{hf_name}` is a scalar; GGUF tensors have 1 to 4 dimensions"
            )))
        }
    };
    let values = Vec::<f32>::try_from(t.contiguous().view(-1))?;
    let bytes = quantize(ggml_type, &values).ok_or_else(|| {
        ModelError::InvalidArgument(format!(
            "tensor `{hf_name}`: cannot encode {dims:?} as {ggml_type:?}"
        ))
    })?;
    Ok((dims, ggml_type, bytes))
}

/// Exports the checkpoint in `dir` (an HF directory or a PEFT adapter directory) to `out`.
pub fn export_gguf(dir: &Path, out: &Path, ty: ExportType) -> Result<ExportSummary> {
    let lm = CausalLm::load(dir, Device::Cpu, Kind::Float)?;
    let config = &lm.config;
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".to_owned());
    let mut writer = GgufWriter::new();
    for (key, value) in model_metadata(config, &name, ty, &dir.join("config.json"))? {
        writer.set(&key, value);
    }
    for (key, value) in tokenizer_metadata(&tokenizer_dir(dir)?, config)? {
        writer.set(&key, value);
    }
    let mut named: Vec<(String, String, Tensor)> = Vec::new();
    for (hf, tensor) in lm.vs.variables() {
        let gguf = gguf_name(&hf).ok_or_else(|| {
            ModelError::InvalidArgument(format!("tensor `{hf}` has no GGUF equivalent"))
        })?;
        named.push((gguf, hf, tensor));
    }
    named.sort_by_key(|(gguf, _, _)| order_key(gguf));
    let mut fallbacks = Vec::new();
    for (gguf, hf, tensor) in &named {
        let (dims, ggml_type, bytes) = encode_tensor(hf, tensor, config, ty)?;
        if dims.len() > 1 && ggml_type != ty.preferred() {
            fallbacks.push((gguf.clone(), ggml_type));
        }
        writer.add_tensor(gguf, dims, ggml_type, bytes)?;
    }
    writer.write(out)?;
    Ok(ExportSummary {
        tensors: named.len(),
        fallbacks,
    })
}
