//! `--reward DIR`: the reward model scores the model's and the baseline's answers to the
//! benign prompts both answered (see `crate::eval::helpfulness`).

use std::path::Path;

use anyhow::{bail, Result};
use tiller_reward::{Reward, RewardInput};

use super::CommonArgs;
use crate::cli::reward::load_model_reward;
use crate::eval::helpfulness::{helpfulness_metrics, paired_answers, HelpfulnessItem};
use crate::eval::safety::SafetyItem;
use crate::progress;
use crate::report::{HelpfulnessSection, HELPFULNESS_DEFINITION};

/// Longest prompt + answer the reward model reads, in tokens.
const MAX_LEN: usize = 1024;

pub fn measure(
    reward_dir: &Path,
    common: &CommonArgs,
    items: &[SafetyItem],
    baseline: &[SafetyItem],
) -> Result<HelpfulnessSection> {
    let pairs = paired_answers(items, baseline);
    if pairs.is_empty() {
        bail!("--reward: no benign prompt was answered by both the model and the baseline");
    }
    let reward = load_model_reward(
        reward_dir,
        &common.device,
        common.dtype,
        common.batch_size,
        MAX_LEN,
    )?;
    let bar = progress::bar(pairs.len() as u64, "reward win rate");
    let mut scored = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(common.batch_size.max(1)) {
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
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(HelpfulnessSection {
        reward_model: reward_dir.display().to_string(),
        definition: HELPFULNESS_DEFINITION.to_owned(),
        metrics: helpfulness_metrics(&scored),
        items: scored,
    })
}
