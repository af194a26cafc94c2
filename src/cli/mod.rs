//! Command-line interface: one module per subcommand, each `Args` + `run`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod annotate;
mod bench;
mod curves;
mod data;
mod dpo;
pub mod eval;
mod generate;
mod grpo;
mod kto;
pub(crate) mod launch;
mod lineage;
mod model;
mod ppo;
mod reward;
pub(crate) mod rl_shared;
mod rloo;
mod run;
pub mod score;
mod serve;
mod sft;
pub mod shared;

#[derive(Parser)]
#[command(
    name = "tiller",
    version,
    about = "Align language models with human preferences"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import checkpoints (GGUF or HF) as HF-format directories; export them as GGUF.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Generate completions for prompts (a JSONL file, or one --prompt).
    Generate(generate::GenerateArgs),
    /// Log-likelihood of texts or of completions given prompts.
    Score(score::ScoreArgs),
    /// The annotation server: campaigns, model answers to compare, export of votes.
    #[command(subcommand)]
    Annotate(annotate::AnnotateCommand),
    /// Reward models: score rows, evaluate against preference pairs.
    #[command(subcommand)]
    Reward(reward::RewardCommand),
    /// Direct preference optimization (and its family) from preference pairs.
    Dpo(shared::TrainerArgs),
    /// Online RL: GRPO (group-normalized advantages) against any reward, rules included.
    Grpo(shared::TrainerArgs),
    /// Online RL: RLOO (leave-one-out baseline) against any reward, rules included.
    Rloo(shared::TrainerArgs),
    /// KTO from unpaired feedback (`prompt`/`completion`/`label`).
    Kto(shared::TrainerArgs),
    /// PPO with a value head (actor, critic, frozen reference) against a reward.
    Ppo(shared::TrainerArgs),
    /// Convert datasets from other formats.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Safety and bias reports (both by default; or `safety`, `bias`, `refusal`).
    Eval(Box<eval::EvalArgs>),
    /// Supervised fine-tuning (full or LoRA) from a TOML config.
    Sft(shared::TrainerArgs),
    /// Speed benchmarks, side by side with Hugging Face transformers.
    Bench(bench::BenchArgs),
    /// Run a pipeline of stages (SFT, reward, DPO, eval, ...), cached and resumable.
    Run(run::RunArgs),
    /// Print where a checkpoint came from, back to the base model.
    Lineage(lineage::LineageArgs),
    /// Training curves: a run's metrics.jsonl as curves.html (inline SVG charts).
    Curves(curves::CurvesArgs),
    /// Serve models behind OpenAI's HTTP API (chat/completions, completions, models).
    Serve(serve::ServeArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    tiller_model::device::keep_freed_memory();
    let result = match cli.command {
        ref c if launch::intercepts(c) => launch::run(c),
        Command::Model(cmd) => model::run(cmd),
        Command::Generate(args) => generate::run(args),
        Command::Score(args) => score::run(args),
        Command::Annotate(cmd) => annotate::run(cmd),
        Command::Reward(cmd) => reward::run(cmd),
        Command::Dpo(args) => dpo::run(args),
        Command::Grpo(args) => grpo::run(args),
        Command::Rloo(args) => rloo::run(args),
        Command::Kto(args) => kto::run(args),
        Command::Ppo(args) => ppo::run(args),
        Command::Data(cmd) => data::run(cmd),
        Command::Eval(args) => eval::run(*args),
        Command::Sft(args) => sft::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Run(args) => run::run(args),
        Command::Lineage(args) => lineage::run(args),
        Command::Curves(args) => curves::run(args),
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("TILLER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
