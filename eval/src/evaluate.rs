//! Running an evaluation end to end: read the inputs, answer and score them with the model
//! (and with a baseline checkpoint, or take a baseline's earlier report), classify the
//! answers, build the report and write `report.json` + `report.html`. The command line and
//! the pipeline both call [`evaluate`]; [`measure_refusal`] is `tiller eval refusal`.

use std::path::Path;

use crate::classifier_agreement::{agreement, Agreement};
use crate::error::{input_err, EvalError, Result};
use crate::inputs::load_labeled;
use crate::judge::{Judge, RUBRIC};
use crate::judge_endpoint::{EndpointJudge, Rubric, HARMBENCH_PROMPT, HARMBENCH_SYSTEM};
use crate::options::{EvalOptions, JudgeEndpointOptions};
use crate::progress::Progress;
use crate::refusal::{RefusalClassifier, StringMatch, Trained, RULES, TRAINED_RULES};
use crate::report::build::{build_report, ClassifierInfo, Scored};
use crate::report::{card, ModelCard, Report};
use crate::run::{load_model, AnswerSettings};
use tiller_model::DType;
use tiller_reward::classes::RefusalModel;

mod inputs;
mod model_run;
mod reward_win_rate;

use inputs::Inputs;

/// Which classifier runs, and where.
pub struct ClassifierSetup<'a> {
    pub judge: Option<&'a Path>,
    pub endpoint: Option<&'a JudgeEndpointOptions>,
    pub device: &'a str,
    pub dtype: DType,
    pub batch_size: usize,
}

/// The tokens of prompt + answer a trained classifier reads (its training length).
const TRAINED_MAX_LEN: usize = 256;

/// The classifier the options ask for: string matching, a trained classifier or a judge
/// checkpoint (`judge`, told apart by its config), or a judge endpoint.
pub fn classifier(
    setup: &ClassifierSetup<'_>,
    progress: Box<dyn Progress>,
) -> Result<Box<dyn RefusalClassifier>> {
    if let Some(e) = setup.endpoint {
        return Ok(Box::new(EndpointJudge {
            url: e.url.clone(),
            model: e.model.clone(),
            api_key: e.api_key.clone(),
            rubric: e.rubric,
            max_tokens: 16,
            unparsed: 0,
            progress,
        }));
    }
    Ok(match setup.judge {
        None => Box::new(StringMatch),
        Some(dir) if RefusalModel::is_classifier_dir(dir) => Box::new(Trained {
            model: RefusalModel::load(
                dir,
                tiller_model::parse_device(setup.device)?,
                setup.dtype.kind(),
                setup.batch_size,
                TRAINED_MAX_LEN,
            )?,
            model_dir: dir.display().to_string(),
            progress,
        }),
        Some(dir) => {
            let (lm, tokenizer) = load_model(dir, setup.device, setup.dtype)?;
            Box::new(Judge {
                lm,
                tokenizer,
                model_dir: dir.display().to_string(),
                settings: AnswerSettings {
                    max_new_tokens: 12,
                    batch_size: setup.batch_size,
                },
                fallbacks: 0,
                progress,
            })
        }
    })
}

/// Runs the evaluations `options.which` asks for and writes the report into `options.out`.
/// `progress` is told about every long step; `judge_progress` about the judge's.
pub fn evaluate(
    options: &EvalOptions,
    progress: &mut dyn Progress,
    judge_progress: Box<dyn Progress>,
) -> Result<Report> {
    options.validate()?;
    let out = options.out.as_path();
    let inputs = Inputs::load(options, out)?;
    let model_dir = match (&options.model, inputs.needs_model()) {
        (Some(dir), _) => Some(dir.as_path()),
        (None, false) => None,
        (None, true) => {
            return Err(EvalError::option(
                "model",
                "a model directory is required (only `completions` alone runs without a model)",
            ))
        }
    };
    let safety = &options.safety;
    let mut classify = classifier(
        &ClassifierSetup {
            judge: safety.judge.as_deref(),
            endpoint: safety.judge_endpoint.as_ref(),
            device: &options.device,
            dtype: options.dtype,
            batch_size: options.batch_size,
        },
        judge_progress,
    )?;
    let info = |c: &dyn RefusalClassifier| {
        ClassifierInfo {
        name: c.name(),
        rules: match (&safety.judge, &safety.judge_endpoint) {
            (_, Some(e)) if e.rubric == Rubric::HarmBench => format!(
                "{HARMBENCH_SYSTEM}\n\n{HARMBENCH_PROMPT}\n\nyes: full compliance; no: full refusal. Answers naming neither fall back to:\n{RULES}"
            ),
            (Some(dir), _) if RefusalModel::is_classifier_dir(dir) => {
                format!("{TRAINED_RULES}\n\n{RULES}")
            }
            (Some(_), _) | (_, Some(_)) => {
                format!("{RUBRIC}\n\nOutputs naming no class fall back to:\n{RULES}")
            }
            (None, None) => RULES.to_owned(),
        },
    }
    };
    let settings = AnswerSettings {
        max_new_tokens: safety.max_new_tokens,
        batch_size: options.batch_size,
    };

    let mut card = ModelCard::new(
        model_dir.map_or_else(
            || "(answers from a completions file)".to_owned(),
            |d| d.display().to_string(),
        ),
        model_dir
            .map(card::parents)
            .transpose()?
            .unwrap_or_default(),
    );
    inputs.describe(&mut card)?;
    card.set(
        "limit",
        options.limit.map_or("none".to_owned(), |n| n.to_string()),
    );
    if let Some(sample) = safety.sample {
        card.set("sample", sample.describe());
    }
    card.set("batch_size", options.batch_size);
    card.set("score_batch_size", options.score_batch_size);
    card.set("device", &options.device);
    card.set("dtype", format!("{:?}", options.dtype));
    if options.which.safety() {
        card.set(
            "decoding",
            format!(
                "greedy, chat template, max_new_tokens {}",
                safety.max_new_tokens
            ),
        );
    }
    let run = model_run::ModelRun {
        options,
        inputs: &inputs,
        settings,
    };
    let scored = run.score(model_dir, true, classify.as_mut(), progress)?;

    let baseline = match &options.baseline {
        None => None,
        Some(dir) if dir.join("report.json").exists() => {
            let report = Report::read(&dir.join("report.json"))?;
            card.baseline = Some(format!(
                "{} (report of {}, {})",
                dir.display(),
                report.card.model,
                report.card.date
            ));
            Some(Scored::from_report(&report))
        }
        Some(dir) if dir.join("config.json").exists() => {
            tracing::info!("evaluating the baseline {} on the same inputs", dir.display());
            let base = run.score(Some(dir), false, classify.as_mut(), progress)?;
            let mut base_card = card.clone();
            base_card.model = dir.display().to_string();
            base_card.parents = card::parents(dir)?;
            let base_report = build_report(base_card, base.clone(), None, &info(classify.as_ref()));
            base_report.write(&out.join("baseline"))?;
            card.baseline = Some(format!(
                "{} (evaluated here; its report is in baseline/)",
                dir.display()
            ));
            Some(base)
        }
        Some(dir) => {
            return Err(EvalError::option(
                "baseline",
                format!(
                    "{}: neither a previous output directory (report.json) nor a checkpoint (config.json)",
                    dir.display()
                ),
            ))
        }
    };
    let helpfulness = match (
        &options.reward,
        &scored.safety,
        baseline.as_ref().and_then(|b| b.safety.as_ref()),
    ) {
        (None, _, _) => None,
        (Some(dir), Some(mine), Some(base)) => Some(reward_win_rate::measure(
            dir, options, mine, base, progress,
        )?),
        (Some(_), _, _) => {
            return Err(EvalError::option(
                "reward",
                "the baseline has no safety answers to compare with",
            ))
        }
    };
    let mut report = build_report(card, scored, baseline.as_ref(), &info(classify.as_ref()));
    report.helpfulness = helpfulness;
    report.write(out)?;
    Ok(report)
}

/// What `tiller eval refusal` measures: a classifier against human labels.
pub struct RefusalOptions<'a> {
    /// XSTest's labeled completions CSV, or JSONL (`prompt`, `completion`, `label`).
    pub input: &'a Path,
    pub limit: Option<usize>,
    pub classifier: ClassifierSetup<'a>,
}

/// Classifies every labeled answer and measures the agreement with the human labels.
pub fn measure_refusal(
    options: &RefusalOptions<'_>,
    judge_progress: Box<dyn Progress>,
) -> Result<Agreement> {
    let labeled = load_labeled(options.input, options.limit)?;
    if labeled.is_empty() {
        input_err!("{}: no labeled answers", options.input.display());
    }
    let mut classify = classifier(&options.classifier, judge_progress)?;
    let items: Vec<(&str, &str)> = labeled
        .iter()
        .map(|l| (l.prompt.as_str(), l.completion.as_str()))
        .collect();
    let predicted = classify.classify(&items)?;
    let human: Vec<_> = labeled.iter().map(|l| l.label).collect();
    Ok(agreement(&classify.name(), &human, &predicted))
}
