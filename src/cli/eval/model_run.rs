//! Running one model over the inputs: answers for the safety prompts (or the answers given
//! with `--completions`), classified; likelihoods for CrowS-Pairs and BBQ.

use std::path::Path;

use anyhow::{Context, Result};

use super::inputs::Inputs;
use super::CommonArgs;
use crate::cli::shared::load_model;
use crate::eval::refusal::RefusalClassifier;
use crate::eval::run::{answer_prompts, score_bbq, score_crows, AnswerSettings};
use crate::eval::safety::SafetyItem;
use crate::report::build::Scored;

/// Scores `model_dir` on the inputs. `use_given` keeps answers that came with the input
/// (`--completions`); a baseline checkpoint answers for itself instead.
pub fn score(
    model_dir: Option<&Path>,
    common: &CommonArgs,
    inputs: &Inputs,
    settings: AnswerSettings,
    use_given: bool,
    classifier: &mut dyn RefusalClassifier,
) -> Result<Scored> {
    let loaded = model_dir
        .map(|d| load_model(d, &common.device, common.dtype))
        .transpose()?;
    let mut scored = Scored::default();
    if let Some(prompts) = &inputs.prompts {
        let mut answers: Vec<Option<String>> = prompts
            .iter()
            .map(|p| {
                if use_given {
                    p.completion.clone()
                } else {
                    None
                }
            })
            .collect();
        let missing: Vec<usize> = (0..prompts.len())
            .filter(|&i| answers[i].is_none())
            .collect();
        if !missing.is_empty() {
            let (lm, tokenizer) = loaded.as_ref().context("answering prompts needs --model")?;
            let asks: Vec<(&str, &str)> = missing
                .iter()
                .map(|&i| (prompts[i].source.as_str(), prompts[i].prompt.as_str()))
                .collect();
            for (&i, answer) in
                missing
                    .iter()
                    .zip(answer_prompts(lm, tokenizer, &asks, settings, "answering")?)
            {
                answers[i] = Some(answer);
            }
        }
        let answers: Vec<String> = answers.into_iter().map(Option::unwrap_or_default).collect();
        let pairs: Vec<(&str, &str)> = prompts
            .iter()
            .zip(&answers)
            .map(|(p, a)| (p.prompt.as_str(), a.as_str()))
            .collect();
        let verdicts = classifier.classify(&pairs)?;
        scored.safety = Some(
            prompts
                .iter()
                .zip(answers.iter().zip(verdicts))
                .map(|(p, (answer, verdict))| SafetyItem {
                    prompt: p.prompt.clone(),
                    category: p.category.clone(),
                    label: p.label,
                    source: p.source.clone(),
                    answer: answer.clone(),
                    verdict,
                })
                .collect(),
        );
    }
    if inputs.crows.is_some() || inputs.bbq.is_some() {
        let (lm, tokenizer) = loaded.as_ref().context("bias scoring needs --model")?;
        if let Some(pairs) = &inputs.crows {
            scored.crows = Some(score_crows(lm, tokenizer, pairs, common.score_batch_size)?);
        }
        if let Some(examples) = &inputs.bbq {
            scored.bbq = Some(score_bbq(lm, tokenizer, examples, common.score_batch_size)?);
        }
    }
    Ok(scored)
}
