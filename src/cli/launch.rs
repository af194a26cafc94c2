//! Data-parallel launch, both ways. `--nproc-per-node N` (any trainer command): this
//! process becomes a launcher that re-executes the same command line N times, without
//! that flag, as ranks 0..N on this machine ([`crate::ranks`]). Under torchrun, Slurm or Kubernetes those variables are already
//! set, and [`collective`] joins that group: the one place a trainer's
//! `Arc<dyn Collective>` comes from.

use std::ffi::OsString;
use std::sync::Arc;

use anyhow::{bail, Result};
use tiller_model::dist::{Backend, Collective, ProcessGroup, Single, World};
use tiller_model::train::{DeviceName, TrainOptions};

use super::Command as Cli;

/// A trainer command's name and `--nproc-per-node`; None for other commands.
fn trainer(command: &Cli) -> Option<(&'static str, Option<usize>)> {
    let (name, args) = match command {
        Cli::Sft(a) => ("sft", a),
        Cli::Dpo(a) => ("dpo", a),
        Cli::Grpo(a) => ("grpo", a),
        Cli::Rloo(a) => ("rloo", a),
        Cli::Kto(a) => ("kto", a),
        Cli::Ppo(a) => ("ppo", a),
        Cli::Reward(crate::cli::reward::RewardCommand::Train(a)) => ("reward train", a),
        _ => return None,
    };
    Some((name, args.nproc_per_node))
}

/// The trainers that take a process group (all seven). Configs of these trainers that
/// need the whole batch are refused by the trainer itself.
const DATA_PARALLEL: [&str; 7] = ["sft", "reward train", "dpo", "kto", "grpo", "rloo", "ppo"];

/// Whether this command is the launcher's, not the trainer's: `--nproc-per-node` other
/// than 1, or a trainer that cannot run data parallel yet started as one rank of many
/// (it would run N independent copies writing one directory).
pub(super) fn intercepts(command: &Cli) -> bool {
    match trainer(command) {
        Some((name, nproc)) => {
            nproc.is_some_and(|n| n != 1)
                || (!DATA_PARALLEL.contains(&name) && launched_world_size() > 1)
        }
        None => false,
    }
}

/// `WORLD_SIZE` as a torchrun-style launcher set it (1 when unset or unreadable; the
/// trainer's own [`World::from_env`] reports a malformed value).
fn launched_world_size() -> usize {
    std::env::var("WORLD_SIZE")
        .ok()
        .and_then(|w| w.trim().parse().ok())
        .unwrap_or(1)
}

/// Runs an intercepted command: starts the ranks, or refuses a trainer that is not
/// data parallel yet.
pub(super) fn run(command: &Cli) -> Result<()> {
    let Some((name, nproc)) = trainer(command) else {
        bail!("only trainer commands run data parallel");
    };
    if !DATA_PARALLEL.contains(&name) {
        bail!(
            "`tiller {name}` does not run data parallel yet (only {}): drop --nproc-per-node, or start it as one process instead of under a torchrun-style launcher",
            DATA_PARALLEL.join(", ")
        );
    }
    launch(nproc.unwrap_or(1))
}

/// A trainer's [`TrainOptions`]: `resume`, and this rank's [`collective`].
pub fn train_options(
    device: &mut DeviceName,
    resolved_config: &str,
    resume: bool,
) -> Result<TrainOptions> {
    Ok(TrainOptions {
        resume,
        collective: collective(device, resolved_config)?,
    })
}

/// This rank's collective: the c10d group of the job the environment describes, or
/// [`Single`]. With `device = "cuda"` rank r of a job trains on `cuda:<local rank>`
/// (`device` is rewritten). Every rank checks it runs the same `resolved_config`.
pub fn collective(device: &mut DeviceName, resolved_config: &str) -> Result<Arc<dyn Collective>> {
    let Some(world) = World::from_env()? else {
        return Ok(Arc::new(Single));
    };
    let backend = match device.device() {
        tch::Device::Cpu => Backend::Gloo,
        tch::Device::Cuda(_) if device.as_str() == "cuda" => {
            *device = format!("cuda:{}", world.local_rank).parse()?;
            Backend::Nccl {
                device: world.local_rank,
            }
        }
        tch::Device::Cuda(n) => Backend::Nccl { device: n },
        other => bail!("data parallelism runs on cpu or cuda, not {other:?} (--device)"),
    };
    tracing::info!(
        "rank {} of {} ({backend:?}) joining {}:{}",
        world.rank,
        world.world_size,
        world.master_addr,
        world.master_port
    );
    let group = ProcessGroup::join(&world, backend)?;
    let hash = crate::pipeline::hashing::text_sha256(resolved_config);
    group.check_same("resolved config sha256", &hash)?;
    Ok(Arc::new(group))
}

/// Runs this command as `nproc` ranks on this machine and waits for all of them.
pub fn launch(nproc: usize) -> Result<()> {
    crate::ranks::launch_with(nproc, without_nproc(std::env::args_os().skip(1)))
}

/// The command line minus `--nproc-per-node N` / `--nproc-per-node=N`.
fn without_nproc(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for arg in args {
        if skip_value {
            skip_value = false;
            continue;
        }
        match arg.to_str() {
            Some("--nproc-per-node") => skip_value = true,
            Some(a) if a.starts_with("--nproc-per-node=") => {}
            _ => out.push(arg),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_is_dropped_from_the_ranks_command_line() {
        let args = [
            "sft",
            "--nproc-per-node",
            "2",
            "--config",
            "x.toml",
            "--nproc-per-node=3",
        ];
        let kept = without_nproc(args.iter().map(OsString::from));
        assert_eq!(kept, ["sft", "--config", "x.toml"].map(OsString::from));
    }
}
