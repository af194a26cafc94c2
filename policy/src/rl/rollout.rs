//! Rollouts: draw prompts, sample completions with the KV-cache batched generator, score
//! them with any [`Reward`], and turn them into training tensors; plus the per-token
//! log-probs (and entropies) of completion tokens under a model, with gradients, at the
//! sampling temperature — what GRPO, RLOO and PPO all need from the policy and reference.
//!
//! A training batch is laid out as TRL does: each row is the prompt left-padded to the
//! longest prompt, then the completion right-padded to the longest completion:
//!
//! ```text
//!   [pad pad p p p | c c c EOS pad]      prompt width P, completion width C
//!   [  p p p p p p | c c pad pad pad]
//! ```
//! Completion token `j` of a row is predicted by the hidden state at column `P − 1 + j`.

use std::path::Path;
use std::time::Instant;

use tch::{Device, Kind, Tensor};
use tiller_data::{load_records, tokenize_prompt, ChatMessage, PromptRecord, Tokenizer, Turns};
use tiller_model::llama::{padded_causal_mask, padded_positions, Llama};
use tiller_model::train::token_logprobs;
use tiller_model::{generate, CausalLm, FinishReason, GenerationConfig};
use tiller_reward::{Reward, RewardInput};

use crate::error::{PolicyError, Result};
use crate::rl::config::RolloutConfig;

/// A prompt ready to sample from: its messages (what a reward sees) and its token ids
/// (what the policy sees, chat template applied).
#[derive(Debug, Clone)]
pub struct RolloutPrompt {
    pub messages: Vec<ChatMessage>,
    pub ids: Vec<u32>,
}

/// Reads and tokenizes the prompts file. Prompts longer than `max_prompt_len` keep their
/// last tokens (TRL truncates on the left too).
pub fn load_prompts(config: &RolloutConfig, tokenizer: &Tokenizer) -> Result<Vec<RolloutPrompt>> {
    let loaded = load_records::<PromptRecord>(&config.prompts, config.on_bad_row)?;
    let mut prompts = Vec::with_capacity(loaded.records.len());
    for (record, location) in loaded.records.iter().zip(&loaded.locations) {
        let ids = tokenize_prompt(tokenizer, &record.prompt)
            .map_err(|e| tiller_data::DataError::row(location, Some("prompt"), e.to_string()))?;
        let mut ids: Vec<u32> = ids.into_iter().map(|id| id as u32).collect();
        if let Some(max) = config.max_prompt_len {
            if ids.len() > max {
                ids.drain(..ids.len() - max);
            }
        }
        if ids.is_empty() {
            return Err(
                tiller_data::DataError::row(location, Some("prompt"), "empty prompt").into(),
            );
        }
        let messages = match &record.prompt {
            Turns::Text(text) => vec![ChatMessage::user(text.clone())],
            Turns::Messages(m) => m.clone(),
        };
        prompts.push(RolloutPrompt { messages, ids });
    }
    if prompts.is_empty() {
        return Err(PolicyError::Invalid(format!(
            "{}: no prompts",
            config.prompts.display()
        )));
    }
    Ok(prompts)
}

/// One sampled completion and what the trainers learn from it.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Index of the prompt in the prompt set.
    pub prompt_index: usize,
    pub prompt_ids: Vec<u32>,
    /// Every sampled token, a final EOS included.
    pub completion_ids: Vec<u32>,
    /// Log-probability of each completion token under the sampling policy (logits / T).
    pub old_logprobs: Vec<f32>,
    /// Decoded completion (without the EOS, cut before a stop string).
    pub text: String,
    pub finish: FinishReason,
    /// The reward's score (after any missing-EOS penalty).
    pub score: f64,
}

impl Sample {
    /// Whether the completion ran out of tokens (no EOS, no stop string).
    pub fn truncated(&self) -> bool {
        self.finish == FinishReason::Length
    }
}

/// A step's samples with the time spent and tokens produced.
#[derive(Debug, Clone)]
pub struct Rollout {
    /// `samples_per_prompt` consecutive samples per drawn prompt (a group).
    pub samples: Vec<Sample>,
    pub generation_seconds: f64,
    pub scoring_seconds: f64,
    /// Completion tokens generated.
    pub generated_tokens: usize,
}

impl Rollout {
    /// Generated tokens per second of generation.
    pub fn tokens_per_second(&self) -> f64 {
        self.generated_tokens as f64 / self.generation_seconds.max(1e-9)
    }
}

/// Samples `samples_per_prompt` completions for each prompt in `picked` (indices into
/// `prompts`) with `generation`, then scores them with `reward`. Row `i` of the request is
/// seeded by `(generation.seed, first_row + i)`, so the same seed gives the same samples
/// however the rows are split into `generate` calls (`chunk` rows each; 0: all at once)
/// or across ranks (each passing where its rows start in the global request).
#[allow(clippy::too_many_arguments)]
pub fn rollout(
    lm: &CausalLm,
    tokenizer: &Tokenizer,
    prompts: &[RolloutPrompt],
    picked: &[usize],
    samples_per_prompt: usize,
    generation: &GenerationConfig,
    chunk: usize,
    first_row: usize,
    reward: &dyn Reward,
) -> Result<Rollout> {
    let started = Instant::now();
    let rows: Vec<usize> = picked
        .iter()
        .flat_map(|&p| std::iter::repeat_n(p, samples_per_prompt))
        .collect();
    let chunk = if chunk == 0 { rows.len().max(1) } else { chunk };
    let mut samples = Vec::with_capacity(rows.len());
    for (c, part) in rows.chunks(chunk).enumerate() {
        let ids: Vec<Vec<u32>> = part.iter().map(|&p| prompts[p].ids.clone()).collect();
        let start = first_row + c * chunk;
        let indices: Vec<usize> = (start..start + part.len()).collect();
        let generated = generate(lm, tokenizer, &ids, &indices, generation)?;
        for (g, (&p, prompt_ids)) in generated.into_iter().zip(part.iter().zip(ids)) {
            samples.push(Sample {
                prompt_index: p,
                prompt_ids,
                completion_ids: g.tokens,
                old_logprobs: g.logprobs,
                text: g.text,
                finish: g.finish,
                score: 0.0,
            });
        }
    }
    let generation_seconds = started.elapsed().as_secs_f64();
    let generated_tokens = samples.iter().map(|s| s.completion_ids.len()).sum();

    let started = Instant::now();
    let inputs: Vec<RewardInput> = samples
        .iter()
        .map(|s| RewardInput {
            prompt: prompts[s.prompt_index].messages.clone(),
            completion: s.text.clone(),
        })
        .collect();
    let scores = reward.score(&inputs)?;
    if scores.len() != samples.len() {
        return Err(PolicyError::Invalid(format!(
            "reward `{}` returned {} scores for {} completions",
            reward.name(),
            scores.len(),
            samples.len()
        )));
    }
    for (s, score) in samples.iter_mut().zip(scores) {
        s.score = score;
    }
    Ok(Rollout {
        samples,
        generation_seconds,
        scoring_seconds: started.elapsed().as_secs_f64(),
        generated_tokens,
    })
}

/// Subtracts `penalty` from the score of every truncated completion (TRL's
/// `missing_eos_penalty`).
pub fn apply_missing_eos_penalty(samples: &mut [Sample], penalty: f64) {
    for s in samples.iter_mut().filter(|s| s.truncated()) {
        s.score -= penalty;
    }
}

/// Samples as tensors, laid out as the module docs show.
pub struct RolloutBatch {
    /// (b, P + C) i64
    pub input_ids: Tensor,
    /// (b, P + C) bool: real tokens.
    pub attention_mask: Tensor,
    /// (b, P + C) i64, 0 at each row's first real token.
    pub positions: Tensor,
    /// (b, C) f32: 1 on completion tokens.
    pub completion_mask: Tensor,
    /// (b, C) f32: sampling-time log-probs, 0 on padding.
    pub old_logprobs: Tensor,
    pub prompt_width: i64,
    pub completion_width: i64,
}

impl RolloutBatch {
    pub fn new(samples: &[&Sample], pad_id: u32, device: Device) -> Result<Self> {
        if samples.is_empty() {
            return Err(PolicyError::Invalid(
                "a batch needs at least one sample".into(),
            ));
        }
        let p = samples
            .iter()
            .map(|s| s.prompt_ids.len())
            .max()
            .unwrap_or(0);
        let c = samples
            .iter()
            .map(|s| s.completion_ids.len())
            .max()
            .unwrap_or(0)
            .max(1);
        let (b, t) = (samples.len(), p + c);
        let mut ids = vec![pad_id as i64; b * t];
        let mut valid = vec![false; b * t];
        for (r, s) in samples.iter().enumerate() {
            let start = r * t + p - s.prompt_ids.len();
            let tokens = s.prompt_ids.iter().chain(&s.completion_ids);
            for (j, &id) in tokens.enumerate() {
                ids[start + j] = id as i64;
                valid[start + j] = true;
            }
        }
        let completions: Vec<&[f32]> = samples.iter().map(|s| s.old_logprobs.as_slice()).collect();
        let lengths: Vec<usize> = samples.iter().map(|s| s.completion_ids.len()).collect();
        let shape = [b as i64, t as i64];
        let attention_mask = Tensor::from_slice(&valid).view(shape).to_device(device);
        Ok(RolloutBatch {
            input_ids: Tensor::from_slice(&ids).view(shape).to_device(device),
            positions: padded_positions(&attention_mask),
            attention_mask,
            completion_mask: length_mask(&lengths, c, device),
            old_logprobs: pad_rows(&completions, c, device),
            prompt_width: p as i64,
            completion_width: c as i64,
        })
    }

    /// Rows in the batch.
    pub fn rows(&self) -> i64 {
        self.input_ids.size()[0]
    }

    /// The completion tokens (b, C), padding included.
    pub fn completion_ids(&self) -> Tensor {
        self.input_ids
            .narrow(1, self.prompt_width, self.completion_width)
    }
}

/// (b, width) f32 rows of `values`, zero-padded on the right.
pub fn pad_rows(values: &[&[f32]], width: usize, device: Device) -> Tensor {
    let mut flat = vec![0f32; values.len() * width];
    for (r, row) in values.iter().enumerate() {
        let n = row.len().min(width);
        flat[r * width..r * width + n].copy_from_slice(&row[..n]);
    }
    Tensor::from_slice(&flat)
        .view([values.len() as i64, width as i64])
        .to_device(device)
}

/// (b, width) f32 mask with `lengths[r]` leading ones in row `r`.
pub fn length_mask(lengths: &[usize], width: usize, device: Device) -> Tensor {
    let ones: Vec<Vec<f32>> = lengths.iter().map(|&n| vec![1.0; n.min(width)]).collect();
    let rows: Vec<&[f32]> = ones.iter().map(Vec::as_slice).collect();
    pad_rows(&rows, width, device)
}

/// Per-token statistics of the completion tokens under a model, (b, C) f32, 0 on padding.
pub struct TokenStats {
    /// log softmax(logits / T) at each completion token.
    pub logprobs: Tensor,
    /// Entropy of softmax(logits / T) at each completion position, when asked for.
    pub entropy: Option<Tensor>,
}

/// Log-probs (and optionally entropies) of `batch`'s completion tokens under `model` at
/// `temperature`, with gradients unless called under `tch::no_grad`. One forward pass over
/// prompt + completion; the LM head runs on completion positions only.
pub fn completion_logprobs(
    model: &Llama,
    batch: &RolloutBatch,
    temperature: f64,
    with_entropy: bool,
) -> Result<TokenStats> {
    let (b, c) = (batch.rows(), batch.completion_width);
    let mask = padded_causal_mask(&batch.attention_mask);
    let hidden = model.forward(&batch.input_ids, &batch.positions, Some(&mask), None);
    let width = hidden.size()[2];
    // The hidden state before each completion token predicts it.
    let hidden = hidden
        .narrow(1, batch.prompt_width - 1, c)
        .reshape([-1, width]); // (b·C, h)
    let picked = batch
        .completion_mask
        .view([-1])
        .gt(0.5)
        .nonzero()
        .squeeze_dim(1); // (n,)
    let logits = model.logits(&hidden.index_select(0, &picked)) / temperature; // (n, V)
    let labels = batch
        .completion_ids()
        .reshape([-1])
        .index_select(0, &picked);
    let lp = token_logprobs(&logits.to_kind(Kind::Float), &labels)?;
    let (log_probs, chosen) = (lp.vocab, lp.labels); // (n, V), (n,)
    let scatter = |values: &Tensor| -> Tensor {
        Tensor::zeros([b * c], (Kind::Float, values.device()))
            .index_add(0, &picked, values)
            .view([b, c])
    };
    let entropy = with_entropy.then(|| {
        let entropy = -(log_probs.exp() * &log_probs).sum_dim_intlist(-1, false, Kind::Float);
        scatter(&entropy)
    });
    Ok(TokenStats {
        logprobs: scatter(&chosen),
        entropy,
    })
}

/// Mean of `values` over the tokens where `mask` is 1 (0 when there are none).
pub fn masked_mean(values: &Tensor, mask: &Tensor) -> Tensor {
    (values * mask).sum(Kind::Float) / mask.sum(Kind::Float).clamp_min(1.0)
}

/// Writes the samples of a step as JSON lines (`step`, `prompt`, `completion`, `score`,
/// `finish`, plus any `extra` per sample such as the advantage) to `samples.jsonl`.
pub fn log_samples(
    path: &Path,
    step: u64,
    prompts: &[RolloutPrompt],
    samples: &[Sample],
    extra: &[(&str, &[f64])],
) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| PolicyError::io(path, e))?;
    for (i, s) in samples.iter().enumerate() {
        let prompt = prompts[s.prompt_index]
            .messages
            .last()
            .map(|m| m.content.clone())
            .unwrap_or_default();
        let mut row = serde_json::json!({
            "step": step,
            "prompt": prompt,
            "completion": s.text,
            "score": s.score,
            "finish": s.finish,
            "tokens": s.completion_ids.len(),
        });
        for (name, values) in extra {
            let value = values.get(i).copied().ok_or_else(|| {
                PolicyError::Invalid(format!(
                    "{}: column `{name}` has {} values for {} samples",
                    path.display(),
                    values.len(),
                    samples.len()
                ))
            })?;
            row[*name] = serde_json::json!(value);
        }
        writeln!(file, "{row}").map_err(|e| PolicyError::io(path, e))?;
    }
    Ok(())
}

/// Drops lines of `samples.jsonl` logged after `step` (by an interrupted run), so a
/// resumed run's file reads as one run. A missing file has nothing to drop, and a last line
/// without its newline is the torn write of a killed run (dropped too); any other read
/// error or unreadable line is an error naming the file and line.
pub fn truncate_samples_log(path: &Path, step: u64) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(PolicyError::io(path, e)),
    };
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    let mut kept = String::new();
    for (i, line) in complete.lines().enumerate() {
        let bad = |message: String| PolicyError::Config {
            path: path.to_owned(),
            message: format!("line {}: {message}", i + 1),
        };
        let row: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(format!("not a JSON row ({e})")))?;
        let logged = row
            .get("step")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| bad("no integer `step`".into()))?;
        if logged <= step {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    std::fs::write(path, kept).map_err(|e| PolicyError::io(path, e))
}
