//! The trained refusal classifier: the reward model's backbone with a three-logit head
//! (one per [`Verdict`], in [`Verdict::ALL`]'s order) fine-tuned with cross-entropy on
//! labeled `prompt, completion, label` rows. `tiller reward train` trains it when the
//! config says `head = "refusal_classes"` ([`crate::config::Head`]); the run loop, the
//! optimizer, LoRA, checkpoints and logging are the reward model's ([`crate::train`]).
//! [`RefusalModel`] loads the result and sorts (prompt, answer) pairs; `tiller eval
//! --judge DIR` uses it when DIR holds such a checkpoint.
//!
//! The input is the conversation as the reward model reads it
//! ([`crate::reward::encode_conversation`]): the prompt and the answer through the chat
//! template, cut to `data.max_seq_len` tokens (the opening, where refusals are, is kept).

use std::path::Path;

use tch::{Device, Kind, Tensor};
use tiller_data::{
    load_records, ChatMessage, DataError, JsonRow, Loaded, OnBadRow, Record, RowLocation, Tokenizer,
};
use tiller_model::train::{AdamW, RunDir, Runtime, TrainOptions};

use crate::config::RewardTrainConfig;
use crate::error::{Result, RewardError};
use crate::model::RewardModel;
use crate::pair_metrics::PairMetrics;
use crate::refusal::Verdict;
use crate::reward::{encode_conversation, right_padded};
use crate::train::{RewardProgress, RewardSummary};

/// The head's labels, in index order: [`Verdict::ALL`]'s names.
pub fn class_labels() -> Vec<&'static str> {
    Verdict::ALL.iter().map(|v| v.name()).collect()
}

/// One labeled answer: the `prompt` and `completion` text columns and a `label`
/// ([`Verdict::parse`]'s spellings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabeledAnswer {
    pub prompt: String,
    pub completion: String,
    pub label: Verdict,
}

impl Record for LabeledAnswer {
    fn from_row(row: &JsonRow, location: &RowLocation) -> tiller_data::Result<Self> {
        let text = |field: &str| -> tiller_data::Result<String> {
            match row.get(field) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(DataError::row(location, Some(field), "must be a string")),
                None => Err(DataError::row(location, Some(field), "missing column")),
            }
        };
        let label = text("label")?;
        let label = Verdict::parse(&label).ok_or_else(|| {
            DataError::row(
                location,
                Some("label"),
                format!("unknown label {label:?} (expected {})", Verdict::LABELS),
            )
        })?;
        Ok(LabeledAnswer {
            prompt: text("prompt")?,
            completion: text("completion")?,
            label,
        })
    }

    fn to_row(&self) -> JsonRow {
        let mut row = JsonRow::new();
        row.insert("prompt".into(), self.prompt.clone().into());
        row.insert("completion".into(), self.completion.clone().into());
        row.insert("label".into(), self.label.name().into());
        row
    }
}

/// Tokenized labeled answers.
pub struct ClassSet {
    pub rows: Vec<Vec<u32>>,
    pub labels: Vec<i64>,
}

fn class_index(v: Verdict) -> i64 {
    Verdict::ALL.iter().position(|&x| x == v).unwrap_or(0) as i64
}

fn encode(tokenizer: &Tokenizer, prompt: &str, answer: &str, max_len: usize) -> Result<Vec<u32>> {
    encode_conversation(tokenizer, &[ChatMessage::user(prompt)], answer, max_len)
}

/// Reads and tokenizes a JSONL/Parquet file of labeled answers; errors name the row.
pub fn load_class_set(
    path: &Path,
    tokenizer: &Tokenizer,
    max_len: usize,
    on_bad_row: OnBadRow,
) -> Result<ClassSet> {
    let loaded: Loaded<LabeledAnswer> = load_records(path, on_bad_row)?;
    let rows = tiller_data::tokenize_loaded(&loaded, |r| {
        encode(tokenizer, &r.prompt, &r.completion, max_len)
            .map_err(|e| DataError::Dataset(e.to_string()))
    })?;
    let labels = loaded
        .records
        .iter()
        .map(|r| class_index(r.label))
        .collect();
    tracing::info!(
        "{}: {} labeled answers ({} bad rows skipped)",
        path.display(),
        rows.len(),
        loaded.skipped
    );
    Ok(ClassSet { rows, labels })
}

/// Mean cross-entropy and accuracy of the rows `indices`, with their real tokens.
fn batch_loss(
    model: &RewardModel,
    set: &ClassSet,
    indices: &[usize],
    pad: u32,
) -> Result<(Tensor, f64, usize)> {
    let rows: Vec<Vec<u32>> = indices.iter().map(|&i| set.rows[i].clone()).collect();
    let (ids, valid) = right_padded(&rows, pad, model.device());
    let targets: Vec<i64> = indices.iter().map(|&i| set.labels[i]).collect();
    let targets = Tensor::from_slice(&targets).to_device(model.device());
    let logits = model.logits(&ids, &valid);
    let loss =
        logits.f_cross_entropy_loss::<Tensor>(&targets, None, tch::Reduction::Mean, -100, 0.0)?;
    let right = logits.argmax(-1, false).eq_tensor(&targets);
    let accuracy = right
        .to_kind(Kind::Double)
        .mean(Kind::Double)
        .double_value(&[]);
    let tokens = rows.iter().map(Vec::len).sum();
    Ok((loss, accuracy, tokens))
}

/// Loss and accuracy over `set`, without gradients.
pub fn evaluate_classes(
    model: &RewardModel,
    set: &ClassSet,
    batch: usize,
    pad: u32,
) -> Result<PairMetrics> {
    let mut indices: Vec<usize> = (0..set.rows.len()).collect();
    indices.sort_by_key(|&i| set.rows[i].len());
    let mut m = PairMetrics::default();
    for chunk in indices.chunks(batch.max(1)) {
        let (loss, accuracy, _) = tch::no_grad(|| batch_loss(model, set, chunk, pad))?;
        let w = chunk.len() as f64 / set.rows.len() as f64;
        m.loss += w * loss.double_value(&[]);
        m.accuracy += w * accuracy;
    }
    Ok(m)
}

/// Trains the classifier as `config` says (`head = "refusal_classes"`); called by
/// [`crate::train::train_in`]. One process only.
pub(crate) fn train_classes(
    config: &RewardTrainConfig,
    options: &TrainOptions,
    mut model: RewardModel,
    dir: RunDir,
    on_step: &mut dyn FnMut(&RewardProgress),
) -> Result<RewardSummary> {
    if options.collective.world_size() > 1 {
        return Err(RewardError::Config(
            "head = \"refusal_classes\" trains in one process (no data parallelism)".into(),
        ));
    }
    if model.labels != class_labels() {
        return Err(RewardError::Config(format!(
            "{}: its head has labels {:?}, not the refusal classes {:?}: start from a causal LM or a refusal classifier",
            config.model.display(),
            model.labels,
            class_labels()
        )));
    }
    let tokenizer = Tokenizer::from_dir(&config.model)?;
    let (pad, max_len) = (tokenizer.pad_id, config.data.max_seq_len);
    let on_bad = config.data.on_bad_row;
    let train_set = load_class_set(&config.data.train, &tokenizer, max_len, on_bad)?;
    let eval_set = (config.data.eval.as_ref())
        .map(|p| load_class_set(p, &tokenizer, max_len, on_bad))
        .transpose()?;
    let mut optimizer = AdamW::new(model.trainable(), &config.optim);
    let spec = config.run_config();
    let mut rt = dir.start(
        "refusal classifier",
        train_set.rows.len(),
        &spec,
        &mut optimizer,
    )?;
    let t = &config.train;
    let run_eval = |rt: &mut Runtime, model: &RewardModel| -> Result<Option<PairMetrics>> {
        let Some(set) = &eval_set else {
            return Ok(None);
        };
        model.set_training(false);
        let m = evaluate_classes(model, set, t.batch_size, pad)?;
        let step = rt.state.step;
        tracing::info!(
            "step {step}: eval_loss {:.4}, eval_accuracy {:.3}",
            m.loss,
            m.accuracy
        );
        rt.write(
            step,
            &[
                ("eval_loss".into(), m.loss),
                ("eval_accuracy".into(), m.accuracy),
            ],
        )?;
        Ok(Some(m))
    };
    let eval_before = if rt.evals_before() {
        run_eval(&mut rt, &model)?
    } else {
        None
    };
    let mut eval_accuracy = eval_before.map(|m| m.accuracy);
    while !rt.done() {
        rt.begin_step();
        rt.seed_torch();
        model.set_training(true);
        optimizer.zero_grad();
        let (mut loss_sum, mut acc_sum, mut tokens) = (0.0, 0.0, 0);
        for _ in 0..t.grad_accum {
            let indices = rt.next_batch();
            if indices.is_empty() {
                continue;
            }
            let (loss, accuracy, n) = batch_loss(&model, &train_set, &indices, pad)?;
            (&loss / t.grad_accum as f64).f_backward()?;
            loss_sum += loss.double_value(&[]) / t.grad_accum as f64;
            acc_sum += accuracy / t.grad_accum as f64;
            tokens += n;
        }
        let update = rt.apply_update(&mut optimizer, loss_sum)?;
        rt.window.add("loss", loss_sum);
        rt.window.add("accuracy", acc_sum);
        rt.end_step(
            &optimizer,
            tokens as u64,
            &[("grad_norm", update.grad_norm)],
        )?;
        if rt.evals_now() {
            eval_accuracy = run_eval(&mut rt, &model)?.map(|m| m.accuracy);
        }
        // With LoRA the classifier saves merged only, at the end (a PEFT adapter has no
        // place for the class names), so intermediate checkpoints are full runs only.
        if rt.saves_now() && model.lora.is_none() {
            rt.save_checkpoint(&optimizer, |d| model.save(d, Some(&config.model)))?;
        }
        on_step(&RewardProgress {
            step: rt.state.step,
            total_steps: rt.total_steps(),
            loss: loss_sum,
            eval_accuracy,
        });
    }
    let eval_after = run_eval(&mut rt, &model)?;
    // The classifier always saves whole, adapters merged (see the checkpoints above).
    model.merge_lora()?;
    let steps = rt.state.step;
    let totals = rt.finish(|out| model.save(out, Some(&config.model)))?;
    Ok(RewardSummary {
        out: config.out.clone(),
        steps,
        eval_before,
        eval_after,
        train_tokens_per_second: totals.tokens_per_second(),
    })
}

/// A trained refusal classifier, ready to sort (prompt, answer) pairs.
pub struct RefusalModel {
    pub model: RewardModel,
    pub tokenizer: Tokenizer,
    pub batch_size: usize,
    pub max_len: usize,
}

impl RefusalModel {
    /// Whether `dir` holds a refusal classifier (a sequence classifier whose labels are
    /// the three classes), without loading its weights.
    pub fn is_classifier_dir(dir: &Path) -> bool {
        let Ok(text) = std::fs::read_to_string(dir.join("config.json")) else {
            return false;
        };
        let Ok(config) = serde_json::from_str::<serde_json::Value>(&text) else {
            return false;
        };
        let labels = class_labels();
        let id2label = &config["id2label"];
        labels
            .iter()
            .enumerate()
            .all(|(i, l)| id2label[i.to_string()].as_str() == Some(l))
            && id2label.as_object().map(|m| m.len()) == Some(labels.len())
    }

    pub fn load(
        dir: &Path,
        device: Device,
        kind: Kind,
        batch_size: usize,
        max_len: usize,
    ) -> Result<Self> {
        let model = RewardModel::load(dir, device, kind)?;
        if model.labels != class_labels() {
            return Err(RewardError::Config(format!(
                "{}: id2label is {:?}, not a refusal classifier's {:?}",
                dir.join("config.json").display(),
                model.labels,
                class_labels()
            )));
        }
        let tokenizer = Tokenizer::from_dir(dir)?;
        Ok(RefusalModel {
            model,
            tokenizer,
            batch_size,
            max_len,
        })
    }

    /// One verdict per (prompt, answer): the class with the highest logit.
    pub fn classify(&self, items: &[(&str, &str)]) -> Result<Vec<Verdict>> {
        Ok(self
            .logits(items)?
            .iter()
            .map(|l| best_of(l, &Verdict::ALL))
            .collect())
    }

    /// The three class logits ([`Verdict::ALL`]'s order) per (prompt, answer).
    pub fn logits(&self, items: &[(&str, &str)]) -> Result<Vec<[f32; 3]>> {
        let rows = items
            .iter()
            .map(|(p, a)| encode(&self.tokenizer, p, a, self.max_len))
            .collect::<Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(self.batch_size.max(1)) {
            let (ids, valid) = right_padded(chunk, self.tokenizer.pad_id, self.model.device());
            let logits = tch::no_grad(|| self.model.logits(&ids, &valid));
            let flat = Vec::<f32>::try_from(&logits.flatten(0, -1))?;
            out.extend(flat.chunks_exact(3).map(|c| [c[0], c[1], c[2]]));
        }
        Ok(out)
    }
}

/// The class among `allowed` with the highest logit.
pub fn best_of(logits: &[f32; 3], allowed: &[Verdict]) -> Verdict {
    let logit = |v: &Verdict| logits[class_index(*v) as usize];
    allowed
        .iter()
        .copied()
        .max_by(|a, b| logit(a).total_cmp(&logit(b)))
        .unwrap_or(Verdict::FullRefusal)
}
