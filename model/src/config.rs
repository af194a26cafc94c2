//! The model's hyper-parameters, mirroring HF `config.json` for Llama and Qwen2.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelType {
    Llama,
    Qwen2,
}

impl ModelType {
    /// The HF class name written into `architectures`.
    pub fn architecture(self) -> &'static str {
        match self {
            ModelType::Llama => "LlamaForCausalLM",
            ModelType::Qwen2 => "Qwen2ForCausalLM",
        }
    }
}

/// `rope_scaling.rope_type`: the RoPE schemes whose maths [`crate::rope`] implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RopeType {
    Default,
    Linear,
    Llama3,
}

impl RopeType {
    pub const SUPPORTED: &'static str = "default, linear, llama3";

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "default" => Some(RopeType::Default),
            "linear" => Some(RopeType::Linear),
            "llama3" => Some(RopeType::Llama3),
            _ => None,
        }
    }
}

/// `rope_scaling` from config.json. Only the schemes whose maths we implement are accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    #[serde(alias = "type")]
    pub rope_type: RopeType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_freq_factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_freq_factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_max_position_embeddings: Option<usize>,
}

/// Token ids in config.json are a number or a list of numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub model_type: ModelType,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeScaling>,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Bias on q/k/v projections (Qwen2 always has it; some Llamas set `attention_bias`).
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<TokenIds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<TokenIds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<u32>,
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_dtype: Option<String>,
    /// Every other config.json field, kept so an exported checkpoint carries what it was
    /// loaded with (e.g. `id2label` of a sequence-classification head).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// An unknown `rope_scaling.rope_type` (or its older name `type`) is an error naming the
/// file and the key, with the supported list, before serde's generic message could be.
fn check_rope_type(raw: &serde_json::Value, path: &Path) -> Result<()> {
    let Some(scaling) = raw.get("rope_scaling").filter(|v| !v.is_null()) else {
        return Ok(());
    };
    let (key, value) = match (scaling.get("rope_type"), scaling.get("type")) {
        (Some(v), _) => ("rope_scaling.rope_type", v),
        (None, Some(v)) => ("rope_scaling.type", v),
        (None, None) => ("rope_scaling.rope_type", &serde_json::Value::Null),
    };
    match value.as_str().and_then(RopeType::parse) {
        Some(_) => Ok(()),
        None => Err(ModelError::Config {
            path: path.to_owned(),
            message: format!(
                "`{key}` is {value}: not a supported RoPE type (supported: {})",
                RopeType::SUPPORTED
            ),
        }),
    }
}

fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_max_positions() -> usize {
    2048
}

impl LlamaConfig {
    /// Reads config.json; an unknown `model_type` or unsupported rope scaling is an error.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let raw: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| ModelError::Json {
                path: path.to_owned(),
                source,
            })?;
        let model_type = raw.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
        if !matches!(model_type, "llama" | "qwen2") {
            return Err(ModelError::UnsupportedModelType {
                path: path.to_owned(),
                model_type: model_type.to_owned(),
            });
        }
        check_rope_type(&raw, path)?;
        let mut config: LlamaConfig =
            serde_json::from_value(raw).map_err(|source| ModelError::Json {
                path: path.to_owned(),
                source,
            })?;
        if config.model_type == ModelType::Qwen2 {
            config.attention_bias = true;
        }
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let fail = |message: String| {
            Err(ModelError::Config {
                path: path.to_owned(),
                message,
            })
        };
        if self.num_attention_heads == 0 || self.num_attention_heads % self.num_kv_heads() != 0 {
            return fail(format!(
                "num_attention_heads ({}) must be a positive multiple of num_key_value_heads ({})",
                self.num_attention_heads,
                self.num_kv_heads()
            ));
        }
        if self.head_dim() % 2 != 0 {
            return fail(format!(
                "head_dim {} must be even for RoPE",
                self.head_dim()
            ));
        }
        if let Some(scaling) = &self.rope_scaling {
            let needs_factor = match scaling.rope_type {
                RopeType::Default => false,
                RopeType::Linear | RopeType::Llama3 => true,
            };
            if needs_factor && scaling.factor.is_none() {
                return fail(format!(
                    "rope_scaling.factor is missing (rope_type {:?} needs one)",
                    scaling.rope_type
                ));
            }
        }
        Ok(())
    }

    pub fn num_kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    pub fn eos_token_ids(&self) -> Vec<u32> {
        self.eos_token_id
            .as_ref()
            .map(TokenIds::to_vec)
            .unwrap_or_default()
    }

    /// A small random-weight configuration for tests and benchmarks of mechanics.
    pub fn tiny(vocab_size: usize) -> Self {
        LlamaConfig {
            model_type: ModelType::Llama,
            vocab_size,
            hidden_size: 64,
            intermediate_size: 128,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: Some(2),
            head_dim: None,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: None,
            max_position_embeddings: 512,
            tie_word_embeddings: true,
            attention_bias: false,
            bos_token_id: None,
            eos_token_id: None,
            pad_token_id: None,
            architectures: vec![],
            torch_dtype: None,
            extra: serde_json::Map::new(),
        }
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let mut out = self.clone();
        if out.architectures.is_empty() {
            out.architectures = vec![self.model_type.architecture().to_owned()];
        }
        let text = serde_json::to_string_pretty(&out).map_err(|source| ModelError::Json {
            path: path.to_owned(),
            source,
        })?;
        crate::atomic::write_file(path, |tmp| {
            std::fs::write(tmp, &text).map_err(|e| ModelError::io(path, e))
        })
    }
}
