//! `tiller bench generation`: forward and greedy-generation throughput at several batch
//! sizes, with Hugging Face transformers measured on the same model, prompts and settings
//! in the same run (scripts/bench/hf_generate.py under a Python that has transformers).
//! `tiller bench engine` (the engine's gains, each on its own) and `tiller bench rollout`
//! (one GRPO step's generation) live in `bench/`.

mod engine;
mod rollout;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};
use tiller_data::{ChatMessage, Tokenizer};
use tiller_model::{generate, CausalLm, GenerationConfig};

use super::shared::ModelArgs;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchCommand,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Forward (prefill) and generation tokens/s, tiller vs transformers.
    Generation(GenerationBenchArgs),
    /// What finished-row dropping and prefix sharing each bring (same outputs asserted).
    Engine(engine::EngineBenchArgs),
    /// One GRPO step's completions, generated as `tiller grpo` does (tokens/s).
    Rollout(rollout::RolloutBenchArgs),
}

#[derive(Args, Debug)]
struct GenerationBenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    batch_sizes: Vec<usize>,
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// A Python with torch + transformers; its figures are printed beside tiller's.
    #[arg(long)]
    hf_python: Option<PathBuf>,
    /// Write all figures as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Chat prompts of assorted lengths; the same list goes to transformers.
pub const PROMPTS: [&str; 16] = [
    "What is the capital of France?",
    "Write a haiku about autumn.",
    "Explain photosynthesis briefly.",
    "Give three tips for better sleep.",
    "What is a prime number?",
    "Describe a cat to a child.",
    "How do airplanes fly?",
    "Name five fruits and one fact about each of them.",
    "What does a compiler do?",
    "Summarize the plot of Cinderella in two sentences.",
    "Why is the sky blue?",
    "How do I boil an egg?",
    "What is machine learning?",
    "Write a short poem about rain on a tin roof.",
    "What are the planets of the solar system?",
    "How does a bicycle work?",
];

/// Which engine a figure measured; transformers' come from scripts/bench/hf_generate.py's
/// JSON (`"engine": "transformers"`), so an unknown name is an error when it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Tiller,
    Transformers,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Figure {
    pub engine: Engine,
    pub batch_size: usize,
    pub forward_tokens_per_s: f64,
    pub generate_tokens_per_s: f64,
}

pub fn run(args: BenchArgs) -> Result<()> {
    match args.what {
        BenchCommand::Generation(a) => generation(a),
        BenchCommand::Engine(a) => engine::run(a),
        BenchCommand::Rollout(a) => rollout::run(a),
    }
}

fn generation(args: GenerationBenchArgs) -> Result<()> {
    let (lm, tokenizer) = args.model.load()?;
    let prompts = chat_prompts(&tokenizer)?;
    let mut figures = Vec::new();
    for &b in &args.batch_sizes {
        let batch: Vec<Vec<u32>> = (0..b).map(|i| prompts[i % prompts.len()].clone()).collect();
        let forward = forward_tokens_per_s(&lm, &tokenizer, &batch)?;
        let generated = generate_tokens_per_s(&lm, &tokenizer, &batch, args.max_new_tokens)?;
        println!("tiller        batch {b:>3}: forward {forward:>8.1} tok/s, generate {generated:>7.1} tok/s");
        figures.push(Figure {
            engine: Engine::Tiller,
            batch_size: b,
            forward_tokens_per_s: forward,
            generate_tokens_per_s: generated,
        });
    }
    if let Some(python) = &args.hf_python {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/bench/hf_generate.py");
        let sizes: Vec<String> = args.batch_sizes.iter().map(|b| b.to_string()).collect();
        let output = Command::new(python)
            .arg(&script)
            .args(["--model", &args.model.model.display().to_string()])
            .args(["--batch-sizes", &sizes.join(",")])
            .args(["--max-new-tokens", &args.max_new_tokens.to_string()])
            .args([
                "--dtype",
                if args.model.dtype == tiller_model::DType::Bf16 {
                    "bf16"
                } else {
                    "f32"
                },
            ])
            .output()
            .with_context(|| format!("cannot run {}", python.display()))?;
        if !output.status.success() {
            bail!(
                "transformers benchmark failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let hf: Vec<Figure> =
            serde_json::from_slice(&output.stdout).context("transformers benchmark output")?;
        if let Some(f) = hf.iter().find(|f| f.engine != Engine::Transformers) {
            bail!(
                "{}: printed a figure for engine {:?}, not transformers",
                script.display(),
                f.engine
            );
        }
        for f in &hf {
            let ours = figures
                .iter()
                .find(|o| o.batch_size == f.batch_size && o.engine == Engine::Tiller);
            let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
            println!(
                "transformers  batch {:>3}: forward {:>8.1} tok/s, generate {:>7.1} tok/s   tiller/transformers: forward {:.2}x, generate {:.2}x",
                f.batch_size,
                f.forward_tokens_per_s,
                f.generate_tokens_per_s,
                ours.map_or(f64::NAN, |o| ratio(o.forward_tokens_per_s, f.forward_tokens_per_s)),
                ours.map_or(f64::NAN, |o| ratio(o.generate_tokens_per_s, f.generate_tokens_per_s)),
            );
        }
        figures.extend(hf);
    }
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&figures)?)
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}

fn chat_prompts(tokenizer: &Tokenizer) -> Result<Vec<Vec<u32>>> {
    let template = tokenizer.require_chat_template()?;
    PROMPTS
        .iter()
        .map(|p| Ok(tokenizer.encode(&template.apply(&[ChatMessage::user(*p)], true)?, false)?))
        .collect()
}

/// Prefill throughput: one forward over the batch (right-padded), real tokens per second.
fn forward_tokens_per_s(lm: &CausalLm, tokenizer: &Tokenizer, batch: &[Vec<u32>]) -> Result<f64> {
    let longest = batch.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = vec![tokenizer.pad_id as i64; batch.len() * longest];
    for (row, p) in batch.iter().enumerate() {
        for (j, &id) in p.iter().enumerate() {
            ids[row * longest + j] = id as i64;
        }
    }
    let (b, t) = (batch.len() as i64, longest as i64);
    let ids = Tensor::from_slice(&ids).view([b, t]).to_device(lm.device());
    let positions = Tensor::arange(t, (Kind::Int64, lm.device())).expand([b, t], false);
    let run = || {
        tch::no_grad(|| {
            lm.model.logits(
                &lm.model
                    .forward(&ids, &positions, None, None)
                    .select(1, t - 1),
            )
        })
    };
    let _warm_up = run();
    let repeats = 3;
    let started = Instant::now();
    for _ in 0..repeats {
        let _logits = run();
    }
    let real: usize = batch.iter().map(Vec::len).sum();
    Ok((real * repeats) as f64 / started.elapsed().as_secs_f64())
}

/// Greedy generation of exactly `max_new` tokens per row (no stop tokens), new tokens/s.
fn generate_tokens_per_s(
    lm: &CausalLm,
    tokenizer: &Tokenizer,
    batch: &[Vec<u32>],
    max_new: usize,
) -> Result<f64> {
    let config = GenerationConfig {
        stop_token_ids: vec![],
        ..GenerationConfig::greedy(max_new, tokenizer)
    };
    let indices: Vec<usize> = (0..batch.len()).collect();
    generate(
        lm,
        tokenizer,
        &batch[..1],
        &indices[..1],
        &GenerationConfig {
            max_new_tokens: 4,
            ..config.clone()
        },
    )?; // warm-up
    let started = Instant::now();
    let out = generate(lm, tokenizer, batch, &indices, &config)?;
    let tokens: usize = out.iter().map(|g| g.tokens.len()).sum();
    Ok(tokens as f64 / started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_are_parsed_when_the_figures_are_read() {
        let figure = |engine: &str| {
            format!(
                r#"{{"engine": "{engine}", "batch_size": 16, "forward_tokens_per_s": 1.5, "generate_tokens_per_s": 2.5}}"#
            )
        };
        let hf: Figure = serde_json::from_str(&figure("transformers")).unwrap();
        assert_eq!(hf.engine, Engine::Transformers);
        let err = serde_json::from_str::<Figure>(&figure("tiler")).unwrap_err();
        assert!(err.to_string().contains("tiler"), "{err}");
        let ours = serde_json::to_string(&Figure {
            engine: Engine::Tiller,
            batch_size: 1,
            forward_tokens_per_s: 1.0,
            generate_tokens_per_s: 1.0,
        })
        .unwrap();
        assert!(ours.contains(r#""engine":"tiller""#), "{ours}");
    }
}
