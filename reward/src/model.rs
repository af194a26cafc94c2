//! A reward model: the transformer backbone plus a scalar head reading the last real token
//! that is not the pad token (HF's rule, so transformers scores a saved checkpoint the same),
//! with the tensor names of HF's `LlamaForSequenceClassification` (`model.*`, `score.weight`)
//! so a tiller reward checkpoint is an HF checkpoint.
//!
//! With LoRA, adapters sit on the frozen backbone and the score head stays fully trainable
//! (PEFT's `modules_to_save = ["score"]`). Such a model saves either merged (a plain
//! reward checkpoint) or as a PEFT adapter: adapter_config.json (`task_type = "SEQ_CLS"`)
//! and adapter_model.safetensors holding the adapters and `base_model.model.score.weight`,
//! the names PEFT writes; [`RewardModel::load`] reads both.

use std::collections::HashMap;
use std::path::Path;

use serde_json::json;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tiller_model::checkpoint::{
    copy_tokenizer_files, ignorable, load_var_store, save_safetensors, with_torch_seed,
};
use tiller_model::llama::{padded_positions, padding_mask, Linear, Llama};
use tiller_model::lora::{PeftConfig, ADAPTER_CONFIG, ADAPTER_WEIGHTS};
use tiller_model::train::trainable_params;
use tiller_model::{LlamaConfig, Lora, LoraConfig, ModelError};

use crate::error::{Result, RewardError};

pub struct RewardModel {
    pub vs: VarStore,
    pub backbone: Llama,
    /// (labels, hidden), no bias, as HF's `score` layer: one label for a reward model,
    /// one per class for a classifier ([`crate::classes`]).
    pub score: Linear,
    /// The head's label names in order (HF's `id2label`): `LABEL_0` for a reward model.
    pub labels: Vec<String>,
    pub config: LlamaConfig,
    /// Adapters on the backbone, when trained with LoRA.
    pub lora: Option<Lora>,
}

/// The one label of a reward model's head.
pub const REWARD_LABEL: &str = "LABEL_0";

/// A sequence-classification checkpoint's label names, in index order, from its
/// `id2label` (None for a causal LM, or a reward config without one: one label).
fn saved_labels(config: &LlamaConfig, dir: &Path) -> Result<Option<Vec<String>>> {
    if !is_reward_checkpoint(config) {
        return Ok(None);
    }
    let Some(map) = config.extra.get("id2label").and_then(|v| v.as_object()) else {
        return Ok(None);
    };
    let mut names = vec![String::new(); map.len()];
    for (key, value) in map {
        let bad = || {
            RewardError::Config(format!(
                "{}: id2label: entry {key:?} must map an index below {} to a name",
                dir.join("config.json").display(),
                map.len()
            ))
        };
        let i: usize = key.parse().map_err(|_| bad())?;
        let slot = names.get_mut(i).ok_or_else(bad)?;
        *slot = value.as_str().ok_or_else(bad)?.to_owned();
    }
    Ok(Some(names))
}

/// The score head's name in a PEFT adapter file.
const PEFT_SCORE: &str = "base_model.model.score.weight";

fn is_reward_checkpoint(config: &LlamaConfig) -> bool {
    config
        .architectures
        .iter()
        .any(|a| a.ends_with("ForSequenceClassification"))
}

impl RewardModel {
    pub fn random(config: &LlamaConfig, device: Device, kind: Kind, seed: i64) -> Self {
        Self::random_with_labels(config, &[REWARD_LABEL], device, kind, seed)
    }

    /// A random model whose head has one output per name in `labels`.
    pub fn random_with_labels(
        config: &LlamaConfig,
        labels: &[&str],
        device: Device,
        kind: Kind,
        seed: i64,
    ) -> Self {
        let (mut vs, backbone, score) = with_torch_seed(seed, || {
            let vs = VarStore::new(device);
            let root = vs.root();
            let backbone = Llama::new_backbone(&root, config);
            let score = Linear::new(&root / "score", config.hidden_size, labels.len(), false);
            (vs, backbone, score)
        });
        vs.set_kind(kind);
        RewardModel {
            vs,
            backbone,
            score,
            labels: labels.iter().map(|l| l.to_string()).collect(),
            config: config.clone(),
            lora: None,
        }
    }

    /// Loads a reward checkpoint, or starts one from a causal LM checkpoint (its LM head is
    /// dropped and the score head initialized with N(0, 0.02) from `seed`).
    pub fn load_or_init(dir: &Path, device: Device, kind: Kind, seed: i64) -> Result<Self> {
        Self::load_or_init_with_labels(dir, &[REWARD_LABEL], device, kind, seed)
    }

    /// [`RewardModel::load_or_init`] with `labels` for a new head; a checkpoint that has a
    /// head keeps its own labels (its `id2label`).
    pub fn load_or_init_with_labels(
        dir: &Path,
        labels: &[&str],
        device: Device,
        kind: Kind,
        seed: i64,
    ) -> Result<Self> {
        let config = LlamaConfig::from_file(&dir.join("config.json"))?;
        let saved = saved_labels(&config, dir)?;
        let labels: Vec<&str> = match &saved {
            Some(names) => names.iter().map(String::as_str).collect(),
            None => labels.to_vec(),
        };
        let model = Self::random_with_labels(&config, &labels, device, Kind::Float, seed);
        if is_reward_checkpoint(&config) {
            load_var_store(&model.vs, dir, &ignorable)?;
        } else {
            // Every backbone tensor must be there; only the score head is new.
            let mut backbone_only = VarStore::new(device);
            let _ = Llama::new_backbone(&backbone_only.root(), &config);
            load_var_store(&backbone_only, dir, &|name| {
                ignorable(name) || name == "lm_head.weight"
            })?;
            backbone_only.set_kind(Kind::Float);
            tch::no_grad(|| -> Result<()> {
                let target = model.vs.variables();
                for (name, t) in backbone_only.variables() {
                    let dst = target
                        .get(&name)
                        .ok_or_else(|| RewardError::Config(format!("no variable {name}")))?;
                    dst.shallow_clone().f_copy_(&t)?;
                }
                Ok(())
            })?;
        }
        let mut model = model;
        model.vs.set_kind(kind);
        Ok(model)
    }

    /// Loads a reward checkpoint (or a PEFT reward adapter, see the module docs); a causal
    /// LM checkpoint is an error.
    pub fn load(dir: &Path, device: Device, kind: Kind) -> Result<Self> {
        if !dir.join("config.json").exists() && dir.join(ADAPTER_CONFIG).exists() {
            return Self::load_adapter(dir, device, kind);
        }
        let config = LlamaConfig::from_file(&dir.join("config.json"))?;
        if !is_reward_checkpoint(&config) {
            return Err(RewardError::Config(format!(
                "{} is not a reward model (config.json architectures has no *ForSequenceClassification); train one with `tiller reward train`",
                dir.display()
            )));
        }
        Self::load_or_init(dir, device, kind, 0)
    }

    /// A PEFT reward adapter: its base (a causal LM or a reward checkpoint), the adapters
    /// and the trained score head.
    fn load_adapter(dir: &Path, device: Device, kind: Kind) -> Result<Self> {
        let peft = PeftConfig::read(dir)?;
        let base = peft.base_dir(dir).ok_or_else(|| {
            RewardError::Config(format!(
                "{}: base_model_name_or_path is missing: cannot find the base model",
                dir.join(ADAPTER_CONFIG).display()
            ))
        })?;
        let mut model = Self::load_or_init(&base, device, Kind::Float, 0)?;
        let file = dir.join(ADAPTER_WEIGHTS);
        let mut tensors = tiller_model::checkpoint::load_safetensors(&file)?;
        let score = tensors.remove(PEFT_SCORE).ok_or_else(|| {
            RewardError::Config(format!(
                "{}: no `{PEFT_SCORE}`: not a reward-model adapter",
                file.display()
            ))
        })?;
        if score.size() != model.score.weight.size() {
            return Err(RewardError::Config(format!(
                "{}: `{PEFT_SCORE}` has shape {:?}, expected {:?}",
                file.display(),
                score.size(),
                model.score.weight.size()
            )));
        }
        tch::no_grad(|| model.score.weight.shallow_clone().f_copy_(&score))?;
        let mut lora = Lora::attach_loaded(
            &mut model.vs,
            &mut model.backbone,
            &peft.lora_config(),
            tensors,
            dir,
        )?;
        let _ = model.score.weight.set_requires_grad(true);
        lora.vs.set_kind(kind);
        model.lora = Some(lora);
        model.vs.set_kind(kind);
        Ok(model)
    }

    /// Freezes the backbone and attaches fresh adapters (seeded by `seed`); the score
    /// head stays trainable.
    pub fn attach_lora(&mut self, config: &LoraConfig, seed: i64) -> Result<()> {
        let mut lora = Lora::attach_to(&mut self.vs, &mut self.backbone, config, seed)?;
        lora.vs.set_kind(self.vs.kind());
        let _ = self.score.weight.set_requires_grad(true);
        self.lora = Some(lora);
        Ok(())
    }

    /// What training updates: every weight, or the adapters and the score head.
    pub fn trainable(&self) -> Vec<(String, Tensor)> {
        let mut params = trainable_params(&self.vs);
        if let Some(lora) = &self.lora {
            params.extend(trainable_params(&lora.vs));
        }
        params.sort_by(|a, b| a.0.cmp(&b.0));
        params
    }

    /// Dropout of the adapters on (training) or off.
    pub fn set_training(&self, on: bool) {
        if let Some(lora) = &self.lora {
            lora.set_training(on);
        }
    }

    /// Folds the adapters into the backbone; the model then saves as a plain checkpoint.
    pub fn merge_lora(&mut self) -> Result<()> {
        if let Some(lora) = self.lora.take() {
            lora.merge_into(&mut self.backbone)?;
        }
        Ok(())
    }

    /// Writes the model as [`RewardModel::save`] does, or — with adapters — as a PEFT
    /// reward adapter on `base_model` (see the module docs).
    pub fn save_adapter_or_full(
        &self,
        dir: &Path,
        base_model: &Path,
        tokenizer_dir: Option<&Path>,
    ) -> Result<()> {
        let Some(lora) = &self.lora else {
            return self.save(dir, tokenizer_dir);
        };
        let base = std::path::absolute(base_model).map_err(|e| ModelError::io(base_model, e))?;
        let mut peft = lora.peft_config(&base.to_string_lossy());
        peft.task_type = "SEQ_CLS".into();
        peft.other
            .insert("modules_to_save".into(), json!(["score"]));
        let score = HashMap::from([(PEFT_SCORE.to_owned(), self.score.weight.detach())]);
        lora.save_with(dir, &peft, score)?;
        if let Some(src) = tokenizer_dir {
            copy_tokenizer_files(src, dir)?;
        }
        Ok(())
    }

    /// Writes an HF `LlamaForSequenceClassification` directory with the head's labels
    /// (adapters, if any, must be merged first).
    pub fn save(&self, dir: &Path, tokenizer_dir: Option<&Path>) -> Result<()> {
        if self.lora.is_some() {
            return Err(RewardError::Config(
                "a reward model with LoRA adapters saves as an adapter or merged".into(),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        let mut tensors = self.vs.variables();
        tensors.retain(|name, _| name != "lm_head.weight");
        save_safetensors(&tensors, &dir.join("model.safetensors"))?;
        let mut config = self.config.clone();
        let arch = match config.model_type {
            tiller_model::ModelType::Llama => "LlamaForSequenceClassification",
            tiller_model::ModelType::Qwen2 => "Qwen2ForSequenceClassification",
        };
        config.architectures = vec![arch.to_owned()];
        let id2label: serde_json::Map<String, serde_json::Value> = (self.labels.iter())
            .enumerate()
            .map(|(i, l)| (i.to_string(), json!(l)))
            .collect();
        let label2id: serde_json::Map<String, serde_json::Value> = (self.labels.iter())
            .enumerate()
            .map(|(i, l)| (l.clone(), json!(i)))
            .collect();
        config.extra.insert("id2label".into(), id2label.into());
        config.extra.insert("label2id".into(), label2id.into());
        if config.pad_token_id.is_none() {
            // HF finds the last real token through pad_token_id.
            config.pad_token_id = config.eos_token_ids().first().copied();
        }
        config.write(&dir.join("config.json"))?;
        if let Some(src) = tokenizer_dir {
            copy_tokenizer_files(src, dir)?;
        }
        Ok(())
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Hidden states (b, t, c) of `ids` (b, t), where `valid` (b, t) marks real tokens:
    /// positions and the attention mask follow `valid`, so any padding gives the same states.
    fn hidden(&self, ids: &Tensor, valid: &Tensor) -> Tensor {
        let positions = padded_positions(valid);
        // Training batches are right-padded: the causal mask alone serves them.
        let mask = padding_mask(valid);
        self.backbone.forward(ids, &positions, mask.as_ref(), None)
    }

    /// One reward per row of `ids` (b, t); `valid` (b, t) marks real tokens. Left and right
    /// padding give the same rewards: positions and the mask follow `valid`, and the head
    /// reads the position [`RewardModel::read_positions`] picks.
    pub fn rewards(&self, ids: &Tensor, valid: &Tensor) -> Tensor {
        self.logits(ids, valid).squeeze_dim(-1)
    }

    /// The head at each row's read position, (b, labels) f32: [`RewardModel::rewards`]
    /// for a one-label head, class logits for a classifier.
    pub fn logits(&self, ids: &Tensor, valid: &Tensor) -> Tensor {
        let b = ids.size()[0];
        let hidden = self.hidden(ids, valid); // (b, t, c)
        let last = self.read_positions(ids, valid);
        let c = hidden.size()[2];
        let h_last = hidden
            .gather(1, &last.view([b, 1, 1]).expand([b, 1, c], false), false)
            .squeeze_dim(1);
        self.score.forward(&h_last).to_kind(Kind::Float)
    }

    /// Where each row of `ids` (b, t) is read, (b,): its last real token whose id is not
    /// `pad_token_id` (EOS when none is set), as HF's `LlamaForSequenceClassification`
    /// finds it. With pad = EOS (SmolLM2) a string row's closing EOS is skipped, and a
    /// conversation is read at the template's newline after `<|im_end|>`. Trainer and
    /// scorer share this rule, so a checkpoint scores the same in tiller and transformers.
    pub fn read_positions(&self, ids: &Tensor, valid: &Tensor) -> Tensor {
        let t = ids.size()[1];
        let index = Tensor::arange(t, (Kind::Int64, ids.device()));
        let pad = self
            .config
            .pad_token_id
            .or_else(|| self.config.eos_token_ids().first().copied());
        let readable = match pad {
            Some(pad) => valid.logical_and(&ids.ne(i64::from(pad))),
            None => valid.shallow_clone(),
        };
        (readable.to_kind(Kind::Int64) * (index + 1)).argmax(1, false)
    }

    /// The head at every position, (b, t) f32: a value per prefix, as PPO's critic needs.
    /// At a row's read position it equals [`RewardModel::rewards`]; padded positions hold
    /// whatever the head reads there and are for the caller to mask.
    pub fn values(&self, ids: &Tensor, valid: &Tensor) -> Tensor {
        let hidden = self.hidden(ids, valid); // (b, t, c)
        self.score
            .forward(&hidden)
            .squeeze_dim(-1)
            .to_kind(Kind::Float)
    }
}
