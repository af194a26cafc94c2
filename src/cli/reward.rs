//! `tiller reward score|eval`: rewards for rows, and how well a reward model agrees with
//! human preference pairs (accuracy with a 95% interval, margin, calibration).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use tiller_data::{
    load_records, ChatMessage, JsonRow, OnBadRow, PreferenceRecord, Tokenizer, Turns,
};
use tiller_model::parse_device;
use tiller_reward::calibration::evaluate_pairs;
use tiller_reward::{ModelReward, Reward, RewardInput, RewardModel};

use crate::progress;
use tiller_data::{read_rows, write_rows};

#[derive(Subcommand)]
pub enum RewardCommand {
    /// Train a reward model on preference pairs (Bradley–Terry).
    Train(crate::cli::shared::TrainerArgs),
    /// Add `reward` to prompt/completion rows, or `reward_chosen`/`reward_rejected` to pairs.
    Score(ScoreArgs),
    /// Accuracy, margin and calibration of a reward model on preference pairs.
    Eval(EvalArgs),
}

#[derive(Args)]
pub struct RewardModelArgs {
    /// A reward-model directory (from `tiller reward train`, or any HF LlamaForSequenceClassification).
    #[arg(long)]
    model: PathBuf,
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long, default_value = "f32")]
    dtype: tiller_model::DType,
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Rows longer than this many tokens are cut to it.
    #[arg(long, default_value_t = 1024)]
    max_len: usize,
}

impl RewardModelArgs {
    fn load(&self) -> Result<ModelReward> {
        load_model_reward(
            &self.model,
            &self.device,
            self.dtype,
            self.batch_size,
            self.max_len,
        )
    }
}

/// A reward model directory as a [`Reward`] (also used by `tiller eval --reward`).
pub(crate) fn load_model_reward(
    dir: &Path,
    device: &str,
    dtype: tiller_model::DType,
    batch_size: usize,
    max_len: usize,
) -> Result<ModelReward> {
    let model = RewardModel::load(dir, parse_device(device)?, dtype.kind())
        .with_context(|| format!("cannot load the reward model in {}", dir.display()))?;
    let tokenizer = Tokenizer::from_dir(dir)?;
    Ok(ModelReward {
        model,
        tokenizer,
        batch_size,
        max_len,
    })
}

#[derive(Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    model: RewardModelArgs,
    #[arg(long)]
    input: PathBuf,
    #[arg(long)]
    output: PathBuf,
}

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    model: RewardModelArgs,
    /// Preference pairs (`prompt`/`chosen`/`rejected`), JSONL or Parquet.
    #[arg(long)]
    input: PathBuf,
    /// Number of calibration bins over confidence [0.5, 1].
    #[arg(long, default_value_t = 5)]
    bins: usize,
    /// Also write the figures as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(cmd: RewardCommand) -> Result<()> {
    match cmd {
        RewardCommand::Train(args) => train(args),
        RewardCommand::Score(args) => score(args),
        RewardCommand::Eval(args) => eval(args),
    }
}

fn turns_messages(turns: &Turns, role: &str) -> Vec<ChatMessage> {
    match turns {
        Turns::Text(t) => vec![ChatMessage::new(role, t.clone())],
        Turns::Messages(m) => m.clone(),
    }
}

/// The reward inputs of a pair: the shared prompt with each answer.
fn pair_inputs(pair: &PreferenceRecord) -> (RewardInput, RewardInput) {
    let prompt = turns_messages(&pair.prompt, "user");
    let answer = |t: &Turns| {
        turns_messages(t, "assistant")
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    (
        RewardInput {
            prompt: prompt.clone(),
            completion: answer(&pair.chosen),
        },
        RewardInput {
            prompt,
            completion: answer(&pair.rejected),
        },
    )
}

fn score_pairs(scorer: &ModelReward, pairs: &[PreferenceRecord]) -> Result<Vec<(f64, f64)>> {
    let bar = progress::bar(pairs.len() as u64, "scoring");
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(scorer.batch_size.max(1)) {
        let (chosen, rejected): (Vec<_>, Vec<_>) = chunk.iter().map(pair_inputs).unzip();
        let c = scorer.score(&chosen)?;
        let r = scorer.score(&rejected)?;
        out.extend(c.into_iter().zip(r));
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}

fn score(args: ScoreArgs) -> Result<()> {
    let scorer = args.model.load()?;
    let rows = read_rows(&args.input)?;
    let mut out: Vec<JsonRow> = Vec::with_capacity(rows.len());
    if rows.first().is_some_and(|r| r.has("chosen")) {
        let pairs = load_records::<PreferenceRecord>(&args.input, OnBadRow::Stop)?;
        let rewards = score_pairs(&scorer, &pairs.records)?;
        for (row, (c, r)) in rows.into_iter().zip(rewards) {
            let mut fields = row.fields;
            fields.insert("reward_chosen".into(), json!(c));
            fields.insert("reward_rejected".into(), json!(r));
            out.push(fields);
        }
    } else {
        let inputs = rows
            .iter()
            .map(|r| {
                Ok(RewardInput {
                    prompt: r.messages()?,
                    completion: r.text("completion")?.to_owned(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let rewards = scorer.score(&inputs)?;
        for (row, reward) in rows.into_iter().zip(rewards) {
            let mut fields = row.fields;
            fields.insert("reward".into(), json!(reward));
            out.push(fields);
        }
    }
    write_rows(&args.output, &out)?;
    println!("wrote {} rows to {}", out.len(), args.output.display());
    Ok(())
}

fn eval(args: EvalArgs) -> Result<()> {
    let scorer = args.model.load()?;
    let pairs = load_records::<PreferenceRecord>(&args.input, OnBadRow::Stop)?;
    let rewards = score_pairs(&scorer, &pairs.records)?;
    let e = evaluate_pairs(&rewards, args.bins);
    println!("pairs        {}", e.pairs);
    println!(
        "accuracy     {:.3}  (95% CI {:.3}–{:.3}, Wilson)",
        e.accuracy, e.accuracy_ci95.0, e.accuracy_ci95.1
    );
    println!("mean margin  {:.4}", e.mean_margin);
    println!(
        "calibration  confidence = σ(|r_c − r_r|) of the predicted winner; ECE {:.4}",
        e.ece
    );
    println!(
        "  {:>11}  {:>6}  {:>10}  {:>8}",
        "bin", "pairs", "confidence", "accuracy"
    );
    for b in &e.bins {
        println!(
            "  {:.2}–{:.2}  {:>6}  {:>10.3}  {:>8.3}",
            b.low, b.high, b.count, b.mean_confidence, b.accuracy
        );
    }
    if let Some(path) = &args.json {
        let value: Value = serde_json::to_value(&e)?;
        std::fs::write(path, serde_json::to_string_pretty(&value)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn train(args: crate::cli::shared::TrainerArgs) -> Result<()> {
    let mut config = tiller_reward::RewardTrainConfig::from_file(&args.config)?;
    args.apply_overrides(
        &mut config.out,
        &mut config.train.max_steps,
        &mut config.device,
    );
    let resolved = config.to_toml()?;
    let options = crate::cli::launch::train_options(&mut config.device, &resolved, args.resume)?;
    let bar = progress::bar(0, "reward");
    let summary = tiller_reward::train::train_in(&config, &options, &mut |p| {
        bar.set_length(p.total_steps);
        bar.set_position(p.step);
        let acc = p
            .eval_accuracy
            .map_or(String::new(), |a| format!(" eval acc {a:.3}"));
        bar.set_message(format!("loss {:.4}{acc}", p.loss));
    })?;
    bar.finish_and_clear();
    let classes = config.head == tiller_reward::config::Head::RefusalClasses;
    println!(
        "trained {} steps ({:.0} tokens/s); {} in {}",
        summary.steps,
        summary.train_tokens_per_second,
        if classes {
            "refusal classifier"
        } else {
            "reward model"
        },
        summary.out.display()
    );
    if let (Some(b), Some(a)) = (summary.eval_before, summary.eval_after) {
        // A classifier has no reward margin.
        let margin = if classes {
            String::new()
        } else {
            format!(", margin {:.3} -> {:.3}", b.margin, a.margin)
        };
        println!(
            "held-out accuracy {:.3} -> {:.3}, loss {:.4} -> {:.4}{margin}",
            b.accuracy, a.accuracy, b.loss, a.loss
        );
    }
    if options.collective.is_main() {
        crate::cli::shared::write_curves(&summary.out)?;
    }
    Ok(())
}
