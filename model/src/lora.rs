//! LoRA (Hu et al. 2021) on chosen projections, with PEFT's file format.
//!
//! A targeted projection computes `y = x Wᵀ + (dropout(x) Aᵀ Bᵀ)·(alpha / r)`, A (r, in)
//! initialised as PEFT does (Kaiming-uniform, bound 1/√in) and B (out, r) at zero, so
//! training starts from the base model. The adapter weights live in their own VarStore
//! whose names are PEFT's (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`),
//! so `adapter_model.safetensors` is that store as is. The base VarStore is frozen.
//! One switch turns every adapter off at once: the frozen base then doubles as the
//! reference model of DPO/PPO without a second copy in memory.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tch::nn::{Init, VarStore};
use tch::Tensor;

use crate::checkpoint::{load_safetensors, save_safetensors, with_torch_seed, CausalLm};
use crate::error::{ModelError, Result};
use crate::llama::Llama;

mod projection;
pub use projection::Projection;

pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
pub const ADAPTER_CONFIG: &str = "adapter_config.json";

/// `[lora]` in a trainer config. Defaults are PEFT's, except `alpha` (2·r is the common choice).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    #[serde(default = "default_r")]
    pub r: usize,
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    #[serde(default)]
    pub dropout: f64,
    /// Projection names (see [`Projection`]); PEFT's Llama default is q_proj and v_proj.
    #[serde(default = "default_targets")]
    pub target_modules: Vec<String>,
}

fn default_r() -> usize {
    8
}
fn default_alpha() -> f64 {
    16.0
}
fn default_targets() -> Vec<String> {
    vec!["q_proj".into(), "v_proj".into()]
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            r: default_r(),
            alpha: default_alpha(),
            dropout: 0.0,
            target_modules: default_targets(),
        }
    }
}

/// `[lora]` in every trainer config (SFT, DPO, KTO, GRPO, RLOO, PPO, reward models): the adapter
/// settings plus what to write at the end. Defaults as [`LoraConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraTrainConfig {
    #[serde(default = "default_r")]
    pub r: usize,
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    #[serde(default)]
    pub dropout: f64,
    #[serde(default = "default_targets")]
    pub target_modules: Vec<String>,
    /// Write the merged model (true, default) or the adapter alone (PEFT format).
    #[serde(default = "yes")]
    pub merge: bool,
}

fn yes() -> bool {
    true
}

impl LoraTrainConfig {
    pub fn lora_config(&self) -> LoraConfig {
        LoraConfig {
            r: self.r,
            alpha: self.alpha,
            dropout: self.dropout,
            target_modules: self.target_modules.clone(),
        }
    }
}

/// Whether adapters are applied, and whether dropout is active; shared by all adapters.
#[derive(Debug, Default)]
struct Switch {
    disabled: AtomicBool,
    training: AtomicBool,
}

/// The A and B matrices of one projection.
#[derive(Debug)]
pub struct LoraAdapter {
    /// (r, in)
    pub a: Tensor,
    /// (out, r)
    pub b: Tensor,
    scale: f64,
    dropout: f64,
    switch: Arc<Switch>,
}

impl LoraAdapter {
    pub fn is_enabled(&self) -> bool {
        !self.switch.disabled.load(Ordering::Relaxed)
    }

    /// The low-rank term `(dropout(x) Aᵀ Bᵀ)·scale`.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let train = self.switch.training.load(Ordering::Relaxed);
        let xs = if train && self.dropout > 0.0 {
            xs.dropout(self.dropout, true)
        } else {
            xs.shallow_clone()
        };
        xs.linear::<Tensor>(&self.a, None)
            .linear::<Tensor>(&self.b, None)
            * self.scale
    }

    /// `scale · B A`, the (out, in) update merging adds to W.
    pub fn delta(&self) -> Tensor {
        self.b.matmul(&self.a) * self.scale
    }
}

/// The adapters attached to one model.
pub struct Lora {
    /// Adapter weights under PEFT's names; the only trainable variables.
    pub vs: VarStore,
    pub config: LoraConfig,
    switch: Arc<Switch>,
}

impl Lora {
    /// Freezes `lm` and attaches fresh adapters (A random from `seed`, B zero) to every
    /// projection named in `config.target_modules`, in every layer.
    pub fn attach(lm: &mut CausalLm, config: &LoraConfig, seed: i64) -> Result<Lora> {
        Self::attach_to(&mut lm.vs, &mut lm.model, config, seed)
    }

    /// [`Lora::attach`] for a backbone `model` whose weights live in `base` (a causal LM's,
    /// or a reward model's with its score head).
    pub fn attach_to(
        base: &mut VarStore,
        model: &mut Llama,
        config: &LoraConfig,
        seed: i64,
    ) -> Result<Lora> {
        if config.r == 0 {
            return Err(ModelError::InvalidArgument(
                "lora.r must be at least 1".into(),
            ));
        }
        if config.target_modules.is_empty() {
            return Err(ModelError::InvalidArgument(
                "lora.target_modules is empty".into(),
            ));
        }
        // Names become projections here, at the edge; unknown ones are errors.
        let targets = config
            .target_modules
            .iter()
            .map(|m| {
                Projection::parse(m).ok_or_else(|| {
                    let known: Vec<&str> = Projection::ALL.iter().map(|p| p.name()).collect();
                    ModelError::InvalidArgument(format!(
                        "lora.target_modules: unknown module `{m}` (known: {})",
                        known.join(", ")
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if model
            .layers
            .iter()
            .any(|l| l.self_attn.q_proj.lora.is_some())
        {
            return Err(ModelError::InvalidArgument(
                "the model already has LoRA adapters".into(),
            ));
        }
        base.freeze();
        let vs = VarStore::new(base.device());
        let switch = Arc::new(Switch::default());
        let scale = config.alpha / config.r as f64;
        let root = vs.root() / "base_model" / "model" / "model" / "layers";
        // Under the lock concurrent seeded draws take (test threads), so a seed always
        // gives the same adapters.
        with_torch_seed(seed, || -> Result<()> {
            for (i, layer) in model.layers.iter_mut().enumerate() {
                for &target in &targets {
                    let linear = target.of(layer);
                    let (out_dim, in_dim) = linear.weight.size2()?;
                    let p = &root / i / target.block() / target.name();
                    let bound = 1.0 / (in_dim as f64).sqrt();
                    let a = (&p / "lora_A").var(
                        "weight",
                        &[config.r as i64, in_dim],
                        Init::Uniform {
                            lo: -bound,
                            up: bound,
                        },
                    );
                    let b = (&p / "lora_B").var(
                        "weight",
                        &[out_dim, config.r as i64],
                        Init::Const(0.0),
                    );
                    linear.lora = Some(LoraAdapter {
                        a,
                        b,
                        scale,
                        dropout: config.dropout,
                        switch: switch.clone(),
                    });
                }
            }
            Ok(())
        })?;
        Ok(Lora {
            vs,
            config: config.clone(),
            switch,
        })
    }

    /// Attaches the adapter saved in `dir` (adapter_config.json + adapter_model.safetensors).
    /// Every tensor must match: a missing or extra one is an error.
    pub fn load(lm: &mut CausalLm, dir: &Path) -> Result<Lora> {
        let peft = PeftConfig::read(dir)?;
        let tensors = load_safetensors(&dir.join(ADAPTER_WEIGHTS))?;
        Self::attach_loaded(&mut lm.vs, &mut lm.model, &peft.lora_config(), tensors, dir)
    }

    /// Attaches adapters to `model` (weights in `base`) with the weights in `tensors`,
    /// read from the adapter in `dir`: a missing or extra tensor is an error.
    pub fn attach_loaded(
        base: &mut VarStore,
        model: &mut Llama,
        config: &LoraConfig,
        mut tensors: HashMap<String, Tensor>,
        dir: &Path,
    ) -> Result<Lora> {
        let file = dir.join(ADAPTER_WEIGHTS);
        let lora = Lora::attach_to(base, model, config, 0)?;
        let variables = lora.vs.variables();
        let mut missing = Vec::new();
        for (name, var) in &variables {
            match tensors.remove(name) {
                Some(src) if src.size() == var.size() => {
                    tch::no_grad(|| var.shallow_clone().f_copy_(&src))?;
                }
                Some(src) => {
                    return Err(ModelError::TensorShape {
                        file,
                        name: name.clone(),
                        expected: var.size(),
                        found: src.size(),
                    })
                }
                None => missing.push(name.clone()),
            };
        }
        if !missing.is_empty() {
            missing.sort();
            return Err(ModelError::MissingTensors {
                dir: dir.to_owned(),
                names: missing,
            });
        }
        if !tensors.is_empty() {
            let mut names: Vec<String> = tensors.into_keys().collect();
            names.sort();
            return Err(ModelError::UnexpectedTensors { file, names });
        }
        Ok(lora)
    }

    /// Writes adapter_model.safetensors and adapter_config.json (PEFT's format) into `dir`;
    /// `base_model` is recorded as `base_model_name_or_path`.
    pub fn save(&self, dir: &Path, base_model: &str) -> Result<()> {
        self.save_with(dir, &self.peft_config(base_model), HashMap::new())
    }

    /// adapter_config.json for this adapter on `base_model` (a causal LM adapter).
    pub fn peft_config(&self, base_model: &str) -> PeftConfig {
        PeftConfig::new(&self.config, base_model)
    }

    /// Writes the adapter weights plus `extra` tensors (PEFT's `modules_to_save`, e.g. a
    /// reward model's score head) and `peft` as adapter_config.json.
    pub fn save_with(
        &self,
        dir: &Path,
        peft: &PeftConfig,
        mut extra: HashMap<String, Tensor>,
    ) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        extra.extend(self.vs.variables());
        save_safetensors(&extra, &dir.join(ADAPTER_WEIGHTS))?;
        peft.write(dir)
    }

    /// Turns every adapter on or off (off: the model is exactly the frozen base).
    pub fn set_enabled(&self, enabled: bool) {
        self.switch.disabled.store(!enabled, Ordering::Relaxed);
    }

    /// Turns every adapter off until the guard drops (on every path out, an error or a
    /// panic included), so the base can serve as the reference model.
    pub fn disabled(&self) -> AdaptersOff<'_> {
        self.set_enabled(false);
        AdaptersOff { lora: self }
    }

    /// Dropout on (training) or off (evaluation, generation).
    pub fn set_training(&self, training: bool) {
        self.switch.training.store(training, Ordering::Relaxed);
    }

    /// Folds every adapter into its base weight (`W += scale·B A`) and detaches them; the
    /// model then saves as a plain HF checkpoint. The base stays frozen.
    pub fn merge(self, lm: &mut CausalLm) -> Result<()> {
        self.merge_into(&mut lm.model)
    }

    /// [`Lora::merge`] for a backbone `model`.
    pub fn merge_into(self, model: &mut Llama) -> Result<()> {
        tch::no_grad(|| -> Result<()> {
            for layer in model.layers.iter_mut() {
                for target in Projection::ALL {
                    let linear = target.of(layer);
                    if let Some(lora) = linear.lora.take() {
                        let delta = lora.delta().to_kind(linear.weight.kind());
                        let _ = linear.weight.f_add_(&delta)?;
                    }
                }
            }
            Ok(())
        })
    }
}

/// While alive, the adapters of `lora` are off ([`Lora::disabled`]); dropping it turns
/// them back on.
#[must_use = "the adapters are back on as soon as the guard drops"]
pub struct AdaptersOff<'a> {
    lora: &'a Lora,
}

impl Drop for AdaptersOff<'_> {
    fn drop(&mut self) {
        self.lora.set_enabled(true);
    }
}

/// adapter_config.json as PEFT writes it (the fields PEFT needs to load the adapter).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeftConfig {
    pub peft_type: String,
    pub task_type: String,
    pub base_model_name_or_path: Option<String>,
    pub r: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub target_modules: Vec<String>,
    #[serde(default)]
    pub bias: String,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    #[serde(default)]
    pub inference_mode: bool,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub use_dora: bool,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl PeftConfig {
    fn new(config: &LoraConfig, base_model: &str) -> Self {
        PeftConfig {
            peft_type: "LORA".into(),
            task_type: "CAUSAL_LM".into(),
            base_model_name_or_path: Some(base_model.to_owned()),
            r: config.r,
            lora_alpha: config.alpha,
            lora_dropout: config.dropout,
            target_modules: config.target_modules.clone(),
            bias: "none".into(),
            fan_in_fan_out: false,
            inference_mode: true,
            use_rslora: false,
            use_dora: false,
            other: BTreeMap::from([(
                "init_lora_weights".to_owned(),
                serde_json::Value::Bool(true),
            )]),
        }
    }

    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(ADAPTER_CONFIG);
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        let config: PeftConfig =
            serde_json::from_str(&text).map_err(|source| ModelError::Json {
                path: path.clone(),
                source,
            })?;
        let unsupported = if config.peft_type != "LORA" {
            Some(format!("peft_type `{}` (only LORA)", config.peft_type))
        } else if config.use_rslora || config.use_dora || config.fan_in_fan_out {
            Some("use_rslora, use_dora or fan_in_fan_out".to_owned())
        } else if !(config.bias.is_empty() || config.bias == "none") {
            Some(format!("bias = `{}` (only none)", config.bias))
        } else {
            None
        };
        match unsupported {
            Some(what) => Err(ModelError::Config {
                path,
                message: format!("unsupported adapter: {what}"),
            }),
            None => Ok(config),
        }
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(ADAPTER_CONFIG);
        let text = serde_json::to_string_pretty(self).map_err(|source| ModelError::Json {
            path: path.clone(),
            source,
        })?;
        let tmp = dir.join(".adapter_config.json.tmp");
        std::fs::write(&tmp, text).map_err(|e| ModelError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| ModelError::io(&path, e))
    }

    pub fn lora_config(&self) -> LoraConfig {
        LoraConfig {
            r: self.r,
            alpha: self.lora_alpha,
            dropout: self.lora_dropout,
            target_modules: self.target_modules.clone(),
        }
    }

    /// The base model directory: `base_model_name_or_path`, relative to the adapter's dir
    /// when relative and present there.
    pub fn base_dir(&self, adapter_dir: &Path) -> Option<PathBuf> {
        let base = PathBuf::from(self.base_model_name_or_path.as_ref()?);
        let beside = adapter_dir.join(&base);
        Some(if base.is_relative() && beside.exists() {
            beside
        } else {
            base
        })
    }
}
