//! Running one model over the inputs: answers for the safety prompts (or the answers given
//! in `completions`), classified; likelihoods for CrowS-Pairs and BBQ.

use std::path::Path;

use super::inputs::Inputs;
use crate::error::{EvalError, Result};
use crate::options::EvalOptions;
use crate::progress::Progress;
use crate::refusal::RefusalClassifier;
use crate::report::build::Scored;
use crate::run::{answer_prompts, load_model, score_bbq, score_crows, AnswerSettings};
use crate::safety::SafetyItem;

/// The inputs and settings every model of one evaluation runs on.
pub struct ModelRun<'a> {
    pub options: &'a EvalOptions,
    pub inputs: &'a Inputs,
    pub settings: AnswerSettings,
}

impl ModelRun<'_> {
    /// Scores `model_dir` on the inputs. `use_given` keeps answers that came with the input
    /// (`completions`); a baseline checkpoint answers for itself instead.
    pub fn score(
        &self,
        model_dir: Option<&Path>,
        use_given: bool,
        classifier: &mut dyn RefusalClassifier,
        progress: &mut dyn Progress,
    ) -> Result<Scored> {
        let (options, inputs, settings) = (self.options, self.inputs, self.settings);
        let loaded = model_dir
            .map(|d| load_model(d, &options.device, options.dtype))
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
                let (lm, tokenizer) = loaded
                    .as_ref()
                    .ok_or_else(|| EvalError::option("model", "answering prompts needs a model"))?;
                let asks: Vec<(&str, &str)> = missing
                    .iter()
                    .map(|&i| (prompts[i].source.as_str(), prompts[i].prompt.as_str()))
                    .collect();
                for (&i, answer) in missing.iter().zip(answer_prompts(
                    lm,
                    tokenizer,
                    &asks,
                    settings,
                    "answering",
                    progress,
                )?) {
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
                        suite: p.suite.clone(),
                        answer: answer.clone(),
                        verdict,
                    })
                    .collect(),
            );
        }
        if inputs.crows.is_some() || inputs.bbq.is_some() {
            let (lm, tokenizer) = loaded
                .as_ref()
                .ok_or_else(|| EvalError::option("model", "bias scoring needs a model"))?;
            let batch = options.score_batch_size;
            if let Some(pairs) = &inputs.crows {
                scored.crows = Some(score_crows(lm, tokenizer, pairs, batch, progress)?);
            }
            if let Some(examples) = &inputs.bbq {
                scored.bbq = Some(score_bbq(lm, tokenizer, examples, batch, progress)?);
            }
        }
        Ok(scored)
    }
}
