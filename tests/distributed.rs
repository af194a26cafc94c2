//! `tiller sft` data parallel on CPU (Gloo over loopback) with a tiny random model:
//! `--nproc-per-node 2` equals one process with the same global batch (losses and final
//! weights), rank 0 alone writes the run directory, a rank killed mid-run makes the job
//! fail naming it (through the launcher, and rank to rank under a torchrun-style launch),
//! a two-rank run killed with SIGKILL and resumed ends with the uninterrupted run's
//! weights byte for byte, and a port in use or ranks with different configs are clear
//! errors. Reward and DPO: `distributed_trainers.rs`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use tiller_model::testing::write_tiny_checkpoint;

mod distributed_support;

use distributed_support::*;

/// A tiny model and 24 chat rows of different lengths in `dir`.
fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let model = dir.join("model");
    write_tiny_checkpoint(&model, 11).expect("tiny checkpoint");
    let data = dir.join("train.jsonl");
    let rows: Vec<String> = (0..24)
        .map(|i| {
            serde_json::json!({"messages": [
                {"role": "user", "content": format!("Spell {i} twice{}", "!".repeat(i % 5))},
                {"role": "assistant", "content": format!("{i} {i}.")},
            ]})
            .to_string()
        })
        .collect();
    std::fs::write(&data, rows.join("\n")).expect("write data");
    (model, data)
}

fn write_config(
    dir: &Path,
    name: &str,
    model: &Path,
    data: &Path,
    batch: usize,
    accum: usize,
    steps: u64,
) -> (PathBuf, PathBuf) {
    let out = dir.join(name);
    let config = format!(
        r#"model = "{}"
out = "{}"
seed = 5

[data]
train = "{}"
eval = "{}"
max_seq_len = 64
collation = "padding_free"

[train]
batch_size = {batch}
grad_accum = {accum}
max_steps = {steps}
log_every = 1
eval_every = 3
save_every = 3

[optim]
lr = 1e-3
"#,
        model.display(),
        out.display(),
        data.display(),
        data.display()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).expect("write config");
    (path, out)
}

fn data_parallel_equals_one_process(accum: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, data) = setup(dir.path());
    let steps = 6;
    let (one_cfg, one) = write_config(dir.path(), "one", &model, &data, 4, accum, steps);
    let (two_cfg, two) = write_config(dir.path(), "two", &model, &data, 2, accum, steps);
    let log = train_one_then_two(&["sft"], &one_cfg, &two_cfg);
    let global = 4 * accum;
    assert!(
        log.contains(&format!(
            "steps of {global} examples (batch_size 2 × grad_accum {accum} × 2 processes)"
        )),
        "{log}"
    );

    assert_trained_alike(&one, &two, steps as usize, 0.0);
}

#[test]
fn two_ranks_equal_one_process_with_the_same_global_batch() {
    data_parallel_equals_one_process(1);
}

#[test]
fn two_ranks_equal_one_process_with_grad_accum() {
    data_parallel_equals_one_process(2);
}

#[test]
fn a_killed_rank_is_named_by_the_launcher() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, data) = setup(dir.path());
    let (cfg, out) = write_config(dir.path(), "run", &model, &data, 2, 1, 5000);
    let mut parent = tiller(&[
        "sft",
        "--config",
        cfg.to_str().expect("utf-8"),
        "--nproc-per-node",
        "2",
    ])
    .spawn()
    .expect("spawn");
    wait_for_steps(&out, 2, &mut parent);
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", parent.id()))
        .expect("the launcher's children");
    let ranks: Vec<u32> = children
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert_eq!(ranks.len(), 2, "{children}");
    sigkill(ranks[1]);
    let result = wait_with_deadline(parent, Duration::from_secs(60));
    let log = text(&result);
    assert!(!result.status.success());
    assert!(
        log.contains("rank 1 of 2 failed (killed by signal 9); stopped the other ranks"),
        "{log}"
    );
}

/// Two ranks started by hand, as torchrun would.
fn torchrun(args: [&[&str]; 2], port: u16) -> Vec<Child> {
    (0..2)
        .map(|rank| {
            tiller(args[rank])
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", "2")
                .env("LOCAL_RANK", rank.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .spawn()
                .expect("spawn rank")
        })
        .collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn under_torchrun_a_killed_rank_is_named_by_the_survivor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, data) = setup(dir.path());
    let (cfg, out) = write_config(dir.path(), "run", &model, &data, 2, 1, 5000);
    let args: &[&str] = &["sft", "--config", cfg.to_str().expect("utf-8")];
    let mut ranks = torchrun([args, args], free_port());
    wait_for_steps(&out, 2, &mut ranks[0]);
    sigkill(ranks[1].id());
    let _ = ranks.pop().map(|mut r| r.wait());
    let rank0 = ranks.pop().expect("rank 0");
    let result = wait_with_deadline(rank0, Duration::from_secs(60));
    let log = text(&result);
    assert!(!result.status.success(), "{log}");
    assert!(
        log.contains("rank 1 stopped (no heartbeat for 2.0 s"),
        "{log}"
    );
}

#[test]
fn ranks_with_different_configs_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, data) = setup(dir.path());
    let (cfg, _) = write_config(dir.path(), "run", &model, &data, 2, 1, 4);
    let cfg = cfg.to_str().expect("utf-8");
    let ranks = torchrun(
        [
            &["sft", "--config", cfg],
            &["sft", "--config", cfg, "--max-steps", "5"],
        ],
        free_port(),
    );
    for (rank, child) in ranks.into_iter().enumerate() {
        let result = wait_with_deadline(child, Duration::from_secs(60));
        let log = text(&result);
        assert!(!result.status.success(), "rank {rank}: {log}");
        assert!(
            log.contains("the ranks disagree on the resolved config sha256"),
            "rank {rank}: {log}"
        );
    }
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, data) = setup(dir.path());
    let (cfg, _) = write_config(dir.path(), "run", &model, &data, 2, 1, 4);
    let taken = TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let result = tiller(&["sft", "--config", cfg.to_str().expect("utf-8")])
        .env("RANK", "0")
        .env("WORLD_SIZE", "2")
        .env("LOCAL_RANK", "0")
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .output()
        .expect("spawn");
    let log = text(&result);
    assert!(!result.status.success());
    assert!(
        log.contains(&format!("port {port} is already in use (MASTER_PORT)")),
        "{log}"
    );
}

#[test]
fn kto_and_ppo_start_as_many_ranks() {
    // Every trainer is data parallel: `--nproc-per-node 2` starts two ranks of kto and
    // ppo (which then fail on the missing model, each tagged with its rank).
    let dir = tempfile::tempdir().expect("tempdir");
    for trainer in ["kto", "ppo"] {
        let config = dir.path().join(format!("{trainer}.toml"));
        std::fs::write(&config, "model = \"m\"\nout = \"o\"\n").expect("write");
        let config = config.to_str().expect("utf-8");
        let result = tiller(&[trainer, "--config", config, "--nproc-per-node", "2"])
            .output()
            .expect("spawn");
        let log = text(&result);
        assert!(!result.status.success());
        assert!(!log.contains("does not run data parallel"), "{log}");
        assert!(log.contains("rank 0") || log.contains("rank 1"), "{log}");
    }
}

#[test]
fn a_two_rank_run_killed_and_resumed_equals_the_uninterrupted_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, data) = setup(dir.path());
    let steps = 30;
    let (full_cfg, full) = write_config(dir.path(), "full", &model, &data, 2, 1, steps);
    let (cut_cfg, cut) = write_config(dir.path(), "cut", &model, &data, 2, 1, steps);
    let (full_cfg, cut_cfg) = (
        full_cfg.to_str().expect("utf-8"),
        cut_cfg.to_str().expect("utf-8"),
    );
    run_ok(&mut tiller(&[
        "sft",
        "--config",
        full_cfg,
        "--nproc-per-node",
        "2",
    ]));
    // Both ranks SIGKILLed (no chance to clean up) once a checkpoint is on disk.
    let args: &[&str] = &["sft", "--config", cut_cfg];
    let mut ranks = torchrun([args, args], free_port());
    let started = Instant::now();
    while !cut.join("checkpoint-3").is_dir() {
        assert!(
            ranks[0].try_wait().expect("try_wait").is_none(),
            "the run ended before it could be interrupted"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for rank in &mut ranks {
        sigkill(rank.id());
        rank.wait().expect("wait killed rank");
    }
    assert!(
        !cut.join("model.safetensors").exists(),
        "the run finished before it was killed"
    );
    let log = run_ok(&mut tiller(&[
        "sft",
        "--config",
        cut_cfg,
        "--nproc-per-node",
        "2",
        "--resume",
    ]));
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
}

#[test]
fn a_killed_launcher_takes_its_ranks_along_and_the_run_resumes_bit_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, data) = setup(dir.path());
    let steps = 60;
    let (full_cfg, full) = write_config(dir.path(), "full", &model, &data, 2, 1, steps);
    let (cut_cfg, cut) = write_config(dir.path(), "cut", &model, &data, 2, 1, steps);
    let two = |cfg: &Path, resume: bool| {
        let mut args = vec![
            "sft",
            "--config",
            cfg.to_str().expect("utf-8"),
            "--nproc-per-node",
            "2",
        ];
        if resume {
            args.push("--resume");
        }
        tiller(&args)
    };
    run_ok(&mut two(&full_cfg, false));

    let mut launcher = two(&cut_cfg, false).spawn().expect("spawn");
    let started = Instant::now();
    while !cut.join("checkpoint-9").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint written"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let ranks = children_of(launcher.id());
    launcher.kill().expect("SIGKILL the launcher");
    let _ = launcher.wait();
    // The ranks die with their launcher (PR_SET_PDEATHSIG).
    wait_until_gone(&ranks);
    assert!(
        !cut.join("model.safetensors").exists(),
        "the killed run must not have finished"
    );

    run_ok(&mut two(&cut_cfg, true));
    let a = std::fs::read(full.join("model.safetensors")).expect("uninterrupted weights");
    let b = std::fs::read(cut.join("model.safetensors")).expect("resumed weights");
    assert!(
        a == b,
        "the resumed two-rank run differs from the uninterrupted one"
    );
    assert_eq!(losses(&full), losses(&cut));
}
