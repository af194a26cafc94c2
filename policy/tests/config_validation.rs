//! Every trainer's config file is checked when it is read, by the one shared check of the
//! sections all trainers have plus the trainer's own: values that cannot run are errors
//! naming the file and the key. A table of bad configs, for each of the seven trainers.

use std::path::Path;

use tiller_policy::dpo::DpoConfig;
use tiller_policy::kto::KtoConfig;
use tiller_policy::rl::grpo::GrpoConfig;
use tiller_policy::rl::ppo::PpoConfig;
use tiller_policy::rl::rloo::RlooConfig;
use tiller_policy::sft::SftConfig;
use tiller_reward::RewardTrainConfig;

/// Reads `text` as trainer `kind`'s config; the error message, if any.
fn load(kind: &str, path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).expect("write the config");
    let e = |e: &dyn std::fmt::Display| e.to_string();
    match kind {
        "sft" => SftConfig::from_file(path).map(drop).map_err(|x| e(&x)),
        "dpo" => DpoConfig::from_file(path).map(drop).map_err(|x| e(&x)),
        "kto" => KtoConfig::from_file(path).map(drop).map_err(|x| e(&x)),
        "grpo" => GrpoConfig::from_file(path).map(drop).map_err(|x| e(&x)),
        "rloo" => RlooConfig::from_file(path).map(drop).map_err(|x| e(&x)),
        "ppo" => PpoConfig::from_file(path).map(drop).map_err(|x| e(&x)),
        "reward" => RewardTrainConfig::from_file(path)
            .map(drop)
            .map_err(|x| e(&x)),
        other => panic!("no trainer {other}"),
    }
}

/// A valid config of trainer `kind`, with `top` added to the top-level keys and `train`,
/// `optim` to their sections. (Files need not exist: reading checks values only.)
fn config(kind: &str, top: &str, train: &str, optim: &str) -> String {
    let own = match kind {
        "sft" => "[data]\ntrain = \"train.jsonl\"\n",
        "dpo" | "kto" | "reward" => "[data]\ntrain = \"pairs.jsonl\"\n",
        "grpo" | "rloo" => "[rollout]\nprompts = \"prompts.jsonl\"\n",
        // PPO has no default reward.
        "ppo" => "[rollout]\nprompts = \"p.jsonl\"\n[[reward.rules]]\nkind = \"length\"\ntarget_words = 5\n",
        other => panic!("no trainer {other}"),
    };
    format!(
        "model = \"m\"\nout = \"o\"\n{top}\n{own}\n[train]\nbatch_size = 4\n{train}\n[optim]\nlr = 1e-5\n{optim}\n"
    )
}

const TRAINERS: [&str; 7] = ["sft", "reward", "dpo", "kto", "ppo", "grpo", "rloo"];

#[test]
fn every_trainer_reads_its_valid_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    for kind in TRAINERS {
        let path = dir.path().join(format!("{kind}.toml"));
        let text = config(kind, "", "save_every = 3", "");
        assert_eq!(load(kind, &path, &text), Ok(()), "{kind}");
    }
}

#[test]
fn values_that_cannot_run_are_errors_naming_file_and_key() {
    // (where, line, the key the error must name)
    let cases: &[(&str, &str, &str)] = &[
        ("train", "grad_accum = 0", "train.grad_accum"),
        ("train", "max_steps = 0", "train.max_steps"),
        ("train", "save_every = 0", "train.save_every"),
        ("train", "log_every = 0", "train.log_every"),
        ("train", "epochs = -1.0", "train.epochs"),
        ("train", "epochs = nan", "train.epochs"),
        ("optim", "weight_decay = -0.1", "optim.weight_decay"),
        ("optim", "eps = 0.0", "optim.eps"),
        ("optim", "betas = [0.9, 1.5]", "optim.betas[1]"),
        ("top", "device = \"tpu\"", "device"),
        ("top", "dtype = \"f8\"", "dtype"),
        ("top", "[lora]\nr = 0", "lora.r"),
        ("top", "[lora]\ndropout = 1.0", "lora.dropout"),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    for kind in TRAINERS {
        let path = dir.path().join(format!("{kind}.toml"));
        for (at, line, key) in cases {
            // A `[lora]` table must come after the top-level keys but before the rest.
            let text = match *at {
                "train" => config(kind, "", line, ""),
                "optim" => config(kind, "", "", line),
                _ if line.starts_with('[') => {
                    let base = config(kind, "", "", "");
                    format!("{base}\n{line}\n")
                }
                _ => config(kind, line, "", ""),
            };
            let err = load(kind, &path, &text).expect_err(&format!("{kind}: `{line}` loaded"));
            assert!(
                err.contains(&path.display().to_string()),
                "{kind}: `{line}`: the error names no file: {err}"
            );
            assert!(
                err.contains(key),
                "{kind}: `{line}`: the error names no `{key}`: {err}"
            );
        }
    }
}

#[test]
fn learning_rates_must_be_positive_numbers() {
    let dir = tempfile::tempdir().expect("tempdir");
    for kind in TRAINERS {
        let path = dir.path().join(format!("{kind}.toml"));
        for lr in ["-1e-5", "nan", "0.0"] {
            let text = config(kind, "", "", "").replace("lr = 1e-5", &format!("lr = {lr}"));
            let err = load(kind, &path, &text).expect_err(&format!("{kind}: lr = {lr} loaded"));
            assert!(err.contains("optim.lr"), "{kind}: lr = {lr}: {err}");
        }
        let text = config(kind, "", "", "").replace("batch_size = 4", "batch_size = 0");
        let err = load(kind, &path, &text).expect_err(&format!("{kind}: batch_size = 0 loaded"));
        assert!(err.contains("train.batch_size"), "{kind}: {err}");
    }
}

#[test]
fn unknown_loss_kinds_are_errors_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("dpo", "[loss]\nkind = \"sigmoidd\"", "kind"),
        ("grpo", "[grpo]\nloss_type = \"dapoo\"", "loss_type"),
        (
            "grpo",
            "[grpo]\nscale_rewards = \"sometimes\"",
            "scale_rewards",
        ),
        ("rloo", "[rloo]\nkl_estimator = \"k9\"", "kl_estimator"),
        (
            "sft",
            "[train]\non_non_finite = \"ignore\"",
            "on_non_finite",
        ),
    ];
    for (kind, section, key) in cases {
        let path = dir.path().join(format!("{kind}.toml"));
        let base = config(kind, "", "", "");
        // Put the section's key into the existing table, or add the table.
        let text = match section.split_once('\n') {
            Some(("[train]", line)) => base.replace("[train]\n", &format!("[train]\n{line}\n")),
            _ => format!("{base}\n{section}\n"),
        };
        let err = load(kind, &path, &text).expect_err(&format!("{kind}: `{section}` loaded"));
        assert!(err.contains(key), "{kind}: `{section}`: {err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
    }
}

#[test]
fn grad_accum_must_be_one_for_online_trainers() {
    let dir = tempfile::tempdir().expect("tempdir");
    for kind in ["ppo", "grpo", "rloo"] {
        let path = dir.path().join(format!("{kind}.toml"));
        let err = load(kind, &path, &config(kind, "", "grad_accum = 2", ""))
            .expect_err("grad_accum = 2 loaded");
        assert!(err.contains("train.grad_accum = 2"), "{kind}: {err}");
    }
}
