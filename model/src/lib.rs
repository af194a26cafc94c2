//! tiller-model: a Llama-family transformer in tch with HF-named parameters, checkpoint IO
//! (HF safetensors directories, GGUF import, export), the decode engine (continuous batching, KV cache, sampling) and
//! log-likelihood scoring, LoRA, and the training primitives every trainer shares.

// On tch tensors `a += b` is an in-place `add_`, which breaks autograd when `a` is
// saved for backward; `a = a + b` is kept on purpose.
#![allow(clippy::assign_op_pattern)]

pub mod atomic;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod dist;
pub mod engine;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod kv_cache;
pub mod llama;
pub mod lora;
pub mod rope;
pub mod sampling;
pub mod score;
pub mod testing;
pub mod train;

pub use checkpoint::CausalLm;
pub use config::{LlamaConfig, ModelType};
pub use device::{parse_device, DType};
pub use engine::{Engine, EngineOptions, Event, SeqParams};
pub use error::{ModelError, Result};
pub use generate::{generate, FinishReason, Generated, GenerationConfig};
pub use kv_cache::KvCache;
pub use lora::{AdaptersOff, Lora, LoraConfig, LoraTrainConfig};
pub use sampling::{Sampling, SamplingOption};
pub use score::{score, Score, ScoreRequest};
