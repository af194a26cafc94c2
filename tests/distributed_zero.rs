//! ZeRO-1 (`optim.shard_optimizer = true`) on CPU (Gloo over loopback) with a tiny random
//! model: for `tiller sft`, `dpo`, `kto`, `reward train` and `grpo`, two ranks that each keep
//! half of the AdamW state train as one process with the same global batch (losses and
//! grad norms within 1e-5 relative, final weights within 1e-5 max abs after 6 steps, with
//! weight decay and clipping on), each rank reports about half the optimizer memory, and
//! the gathered checkpoint has the one-process optimizer file's names and values (rank 0
//! alone writes it); PPO with its policy's optimizer sharded trains as two unsharded
//! ranks do; a sharded two-rank run killed with SIGKILL and resumed ends with the
//! uninterrupted run's weights byte for byte; in one process the key changes nothing; and
//! the key is checked like any other (type and spelling).

mod distributed_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use distributed_support::*;
use tiller_model::testing::write_tiny_checkpoint;

/// A trainer under test: its subcommand and the sections of its config besides the shared
/// ones (`[data]` or `[rollout]`, its loss), with `{data}` standing for its data file.
struct Trainer {
    command: &'static [&'static str],
    sections: &'static str,
}

const SFT: Trainer = Trainer {
    command: &["sft"],
    sections: "[data]\ntrain = \"{data}\"\nmax_seq_len = 64\ncollation = \"padding_free\"\n",
};
const DPO: Trainer = Trainer {
    command: &["dpo"],
    sections: "[data]\ntrain = \"{data}\"\nmax_seq_len = 64\n\n[loss]\nbeta = 0.1\n",
};
const KTO: Trainer = Trainer {
    command: &["kto"],
    sections: "[data]\ntrain = \"{data}\"\nmax_seq_len = 64\n\n[loss]\nbeta = 0.1\n",
};
const REWARD: Trainer = Trainer {
    command: &["reward", "train"],
    sections: "[data]\ntrain = \"{data}\"\nmax_seq_len = 64\n",
};
const GRPO: Trainer = Trainer {
    command: &["grpo"],
    sections: "[rollout]\nprompts = \"{data}\"\nmax_new_tokens = 8\ntemperature = 1.0\n\n\
               [[reward.rules]]\nkind = \"length\"\ntarget_words = 2\n\n\
               [grpo]\nnum_generations = 4\nloss_type = \"dapo\"\nbeta = 0.05\n",
};

const PPO: Trainer = Trainer {
    command: &["ppo"],
    sections: "[rollout]\nprompts = \"{data}\"\nmax_new_tokens = 8\ntemperature = 1.0\n\n\
               [[reward.rules]]\nkind = \"length\"\ntarget_words = 2\n\n\
               [ppo]\nepochs = 1\nnum_mini_batches = 2\nwhiten_rewards = true\n\n\
               [ppo.kl]\nkind = \"adaptive\"\ncoef = 0.05\ntarget = 0.01\nhorizon = 10.0\n",
};

/// A tiny model and the data `trainer` reads (chat rows, preference pairs or prompts).
fn setup(dir: &Path, trainer: &Trainer) -> (PathBuf, PathBuf) {
    let model = dir.join("model");
    write_tiny_checkpoint(&model, 11).expect("tiny checkpoint");
    let row = |i: usize| match trainer.command[0] {
        "sft" => serde_json::json!({"messages": [
            {"role": "user", "content": format!("Spell {i} twice{}", "!".repeat(i % 5))},
            {"role": "assistant", "content": format!("{i} {i}.")},
        ]}),
        "grpo" | "ppo" => serde_json::json!({"prompt": format!("say {i}{}", "?".repeat(i % 3))}),
        "kto" => serde_json::json!({
            "prompt": format!("Pick {i}{}", "?".repeat(i % 4)),
            "completion": format!("{i} is {}", "x ".repeat(1 + i % 5)),
            "label": i % 3 != 0,
        }),
        _ => serde_json::json!({
            "prompt": format!("Pick {i}{}", "?".repeat(i % 4)),
            "chosen": format!("{i} is right{}", ".".repeat(i % 3)),
            "rejected": format!("no {}", "x ".repeat(1 + i % 5)),
        }),
    };
    let rows: Vec<String> = (0..24).map(|i| row(i).to_string()).collect();
    let data = dir.join("data.jsonl");
    std::fs::write(&data, rows.join("\n")).expect("write data");
    (model, data)
}

/// A run named `name` of `trainer`: `batch` examples (prompts) per rank and step, weight
/// decay and the default clipping on, `optim` lines appended to `[optim]`.
fn write_config(
    dir: &Path,
    name: &str,
    (model, data): (&Path, &Path),
    trainer: &Trainer,
    (batch, steps): (usize, u64),
    optim: &str,
) -> (PathBuf, PathBuf) {
    let out = dir.join(name);
    let config = format!(
        "model = \"{model}\"\nout = \"{out}\"\nseed = 5\n\n{sections}\n[train]\n\
         batch_size = {batch}\nmax_steps = {steps}\nlog_every = 1\nsave_every = 3\n\n\
         [optim]\nlr = 1e-3\nweight_decay = 0.1\n{optim}\n",
        model = model.display(),
        out = out.display(),
        sections = trainer
            .sections
            .replace("{data}", &data.display().to_string()),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).expect("write config");
    (path, out)
}

fn run(trainer: &Trainer, config: &Path, more: &[&str]) -> String {
    train(trainer.command, config, more)
}

/// The bytes in a run log's `optimizer state: … (N bytes)` line.
fn state_bytes(log: &str) -> u64 {
    let line = log
        .lines()
        .find(|l| l.contains("optimizer state: "))
        .unwrap_or_else(|| panic!("no optimizer state line in {log}"));
    let start = line.rfind('(').expect("(N bytes)") + 1;
    line[start..]
        .trim_end_matches(" bytes)")
        .parse()
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// One process with `2 × per_rank` examples a step against two sharded ranks with
/// `per_rank` each.
fn sharded_two_ranks_equal_one_process(trainer: &Trainer, per_rank: usize, loss_abs: f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, data) = setup(dir.path(), trainer);
    let inputs = (model.as_path(), data.as_path());
    let (one_cfg, one) = write_config(dir.path(), "one", inputs, trainer, (2 * per_rank, 6), "");
    let (two_cfg, two) = write_config(
        dir.path(),
        "two",
        inputs,
        trainer,
        (per_rank, 6),
        "shard_optimizer = true",
    );
    let one_log = run(trainer, &one_cfg, &[]);
    let two_log = run(trainer, &two_cfg, &["--nproc-per-node", "2"]);
    assert!(two_log.contains("per rank (sharded 1/2)"), "{two_log}");
    // Each rank holds half the moments, give or take one padding element per bucket.
    let (whole, half) = (state_bytes(&one_log), state_bytes(&two_log));
    // For BENCHMARKS.md (shown with --nocapture).
    println!(
        "{}: optimizer state {whole} bytes in one process, {half} per sharded rank of 2",
        trainer.command.join(" ")
    );
    assert!(
        2 * half >= whole && 2 * half - whole <= 64,
        "{whole} bytes in one process, {half} per sharded rank"
    );

    let a = assert_trained_alike(&one, &two, 6, loss_abs);
    // The losses moved: the comparison is of training, not of six copies of one number.
    assert!(a.iter().any(|l| l.1 != a[0].1), "{a:?}");
    // The gathered checkpoint is the one-process optimizer file: names and moments.
    let diff = max_weight_diff(
        &one.join("checkpoint-6/optimizer.safetensors"),
        &two.join("checkpoint-6/optimizer.safetensors"),
    );
    assert!(diff <= 1e-5, "AdamW moments differ by {diff}");
}

#[test]
fn sft_sharded_two_ranks_equal_one_process() {
    sharded_two_ranks_equal_one_process(&SFT, 2, 0.0);
}

#[test]
fn dpo_sharded_two_ranks_equal_one_process() {
    sharded_two_ranks_equal_one_process(&DPO, 2, 0.0);
}

#[test]
fn kto_sharded_two_ranks_equal_one_process() {
    sharded_two_ranks_equal_one_process(&KTO, 2, 0.0);
}

#[test]
fn reward_sharded_two_ranks_equal_one_process() {
    sharded_two_ranks_equal_one_process(&REWARD, 2, 0.0);
}

#[test]
fn grpo_sharded_two_ranks_equal_one_process() {
    // GRPO's loss is small by construction (group-centred advantages: about 4e-4 here),
    // so float noise is also allowed 1e-7 absolute, as in tests/distributed_rl.rs.
    sharded_two_ranks_equal_one_process(&GRPO, 2, 1e-7);
}

#[test]
fn ppo_with_a_sharded_policy_optimizer_equals_the_unsharded_two_ranks() {
    // The policy's optimizer is sharded (the runtime's); the critic's stays whole. With
    // this config (weight decay on) two unsharded ranks already end 1.3e-5 from one
    // process (PPO's float noise, see tests/distributed_rl.rs), so sharding is compared
    // with them: the same losses, grad norms, weights and critic.
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, data) = setup(dir.path(), &PPO);
    let inputs = (model.as_path(), data.as_path());
    let (two_cfg, two) = write_config(dir.path(), "two", inputs, &PPO, (2, 6), "");
    let shard = "shard_optimizer = true";
    let (zero_cfg, zero) = write_config(dir.path(), "zero", inputs, &PPO, (2, 6), shard);
    run(&PPO, &two_cfg, &["--nproc-per-node", "2"]);
    let log = run(&PPO, &zero_cfg, &["--nproc-per-node", "2"]);
    assert!(log.contains("per rank (sharded 1/2)"), "{log}");
    // The policy loss is near zero by construction: 1e-6 absolute, as unsharded.
    assert_trained_alike_by(&two, &zero, 6, 1e-6, "loss/policy_avg");
    let critic = |d: &Path| d.join("critic").join("model.safetensors");
    let diff = max_weight_diff(&critic(&two), &critic(&zero));
    assert!(diff <= 1e-5, "final critics differ by {diff}");
    assert!(
        max_weight_diff(
            &model.join("model.safetensors"),
            &zero.join("model.safetensors")
        ) > 1e-4,
        "the run did not train"
    );
}

#[test]
fn a_sharded_two_rank_run_killed_and_resumed_equals_the_uninterrupted_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, data) = setup(dir.path(), &SFT);
    let inputs = (model.as_path(), data.as_path());
    let shard = "shard_optimizer = true";
    let (full_cfg, full) = write_config(dir.path(), "full", inputs, &SFT, (2, 30), shard);
    let (cut_cfg, cut) = write_config(dir.path(), "cut", inputs, &SFT, (2, 30), shard);
    run(&SFT, &full_cfg, &["--nproc-per-node", "2"]);

    let mut launcher = tiller(&[
        "sft",
        "--config",
        cut_cfg.to_str().expect("utf-8"),
        "--nproc-per-node",
        "2",
    ])
    .spawn()
    .expect("spawn");
    let started = Instant::now();
    while !cut.join("checkpoint-3").is_dir() {
        assert!(
            launcher.try_wait().expect("try_wait").is_none(),
            "the run ended before it could be interrupted"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Both ranks, then the launcher, SIGKILLed: no chance to clean up.
    let ranks = children_of(launcher.id());
    assert_eq!(ranks.len(), 2, "{ranks:?}");
    ranks.iter().for_each(|&pid| sigkill(pid));
    launcher.kill().expect("SIGKILL the launcher");
    let _ = launcher.wait();
    wait_until_gone(&ranks);
    assert!(
        !cut.join("model.safetensors").exists(),
        "the run finished before it was killed"
    );

    let log = run(&SFT, &cut_cfg, &["--nproc-per-node", "2", "--resume"]);
    assert!(log.contains("checkpoint-"), "{log}");
    let read = |d: &Path| std::fs::read(d.join("model.safetensors")).expect("weights");
    assert!(
        read(&full) == read(&cut),
        "resumed weights differ from the uninterrupted run's (max abs {})",
        max_weight_diff(
            &full.join("model.safetensors"),
            &cut.join("model.safetensors")
        )
    );
    assert_eq!(losses(&full), losses(&cut));
}

#[test]
fn in_one_process_shard_optimizer_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, data) = setup(dir.path(), &SFT);
    let inputs = (model.as_path(), data.as_path());
    let (plain_cfg, plain) = write_config(dir.path(), "plain", inputs, &SFT, (4, 4), "");
    let (shard_cfg, sharded) = write_config(
        dir.path(),
        "sharded",
        inputs,
        &SFT,
        (4, 4),
        "shard_optimizer = true",
    );
    let (a, b) = (run(&SFT, &plain_cfg, &[]), run(&SFT, &shard_cfg, &[]));
    assert_eq!(state_bytes(&a), state_bytes(&b));
    for file in ["model.safetensors", "checkpoint-3/optimizer.safetensors"] {
        let read = |d: &Path| std::fs::read(d.join(file)).expect(file);
        assert!(read(&plain) == read(&sharded), "{file} differs");
    }
    assert_eq!(losses(&plain), losses(&sharded));
}

#[test]
fn the_key_is_checked_like_any_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, data) = setup(dir.path(), &SFT);
    let inputs = (model.as_path(), data.as_path());
    for (name, line, expected) in [
        ("typed", "shard_optimizer = 1", "shard_optimizer"),
        ("typo", "shard_optimiser = true", "shard_optimiser"),
    ] {
        let (cfg, out) = write_config(dir.path(), name, inputs, &SFT, (2, 2), line);
        let result = tiller(&["sft", "--config", cfg.to_str().expect("utf-8")])
            .output()
            .expect("spawn");
        let log = text(&result);
        assert!(!result.status.success(), "{log}");
        assert!(
            log.contains(expected) && log.contains(&format!("{name}.toml")),
            "{log}"
        );
        assert!(!out.exists(), "a refused config must not start a run");
    }
}
