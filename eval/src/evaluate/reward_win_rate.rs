//! The `reward` option: a reward model scores the model's and the baseline's answers to
//! the benign prompts both answered (the metrics are in `crate::helpfulness`).

use std::path::Path;

use tiller_data::Tokenizer;
use tiller_model::parse_device;
use tiller_reward::{ModelReward, Reward, RewardInput, RewardModel};

use crate::error::{EvalError, Result};
use crate::helpfulness::{helpfulness_metrics, paired_answers, HelpfulnessItem};
use crate::options::EvalOptions;
use crate::progress::Progress;
use crate::report::{HelpfulnessSection, HELPFULNESS_DEFINITION};
use crate::safety::SafetyItem;

/// Longest prompt + answer the reward model reads, in tokens.
const MAX_LEN: usize = 1024;

pub fn measure(
    reward_dir: &Path,
    options: &EvalOptions,
    items: &[SafetyItem],
    baseline: &[SafetyItem],
    progress: &mut dyn Progress,
) -> Result<HelpfulnessSection> {
    let pairs = paired_answers(items, baseline);
    if pairs.is_empty() {
        return Err(EvalError::option(
            "reward",
            "no benign prompt was answered by both the model and the baseline",
        ));
    }
    let model = RewardModel::load(
        reward_dir,
        parse_device(&options.device)?,
        options.dtype.kind(),
    )
    .map_err(|e| {
        EvalError::from(e).running(format!(
            "cannot load the reward model in {}",
            reward_dir.display()
        ))
    })?;
    let reward = ModelReward {
        model,
        tokenizer: Tokenizer::from_dir(reward_dir)?,
        batch_size: options.batch_size,
        max_len: MAX_LEN,
    };
    progress.start("reward win rate", pairs.len() as u64);
    let mut scored = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(options.batch_size.max(1)) {
        let inputs: Vec<RewardInput> = chunk
            .iter()
            .flat_map(|(mine, base)| {
                [
                    RewardInput::new(&mine.prompt, &mine.answer),
                    RewardInput::new(&base.prompt, &base.answer),
                ]
            })
            .collect();
        let rewards = reward.score(&inputs)?;
        for ((mine, base), r) in chunk.iter().zip(rewards.chunks(2)) {
            scored.push(HelpfulnessItem {
                prompt: mine.prompt.clone(),
                category: mine.category.clone(),
                answer: mine.answer.clone(),
                baseline_answer: base.answer.clone(),
                reward: r[0],
                baseline_reward: r[1],
            });
        }
        progress.advance(chunk.len() as u64);
    }
    progress.finish();
    Ok(HelpfulnessSection {
        reward_model: reward_dir.display().to_string(),
        definition: HELPFULNESS_DEFINITION.to_owned(),
        metrics: helpfulness_metrics(&scored),
        items: scored,
    })
}
