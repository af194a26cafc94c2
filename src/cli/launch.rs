//! Data-parallel launch, both ways. `--nproc-per-node N` (any trainer command): this
//! process becomes a launcher that re-executes the same command line N times, without
//! that flag, as ranks 0..N on this machine — with the variables torchrun sets (`RANK`,
//! `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`) — tags each line of their
//! output with the rank, and waits; if one rank fails it stops the others and says which
//! rank failed and how. Under torchrun, Slurm or Kubernetes those variables are already
//! set, and [`collective`] joins that group: the one place a trainer's
//! `Arc<dyn Collective>` comes from.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
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
    launch_with(nproc, without_nproc(std::env::args_os().skip(1)))
}

/// Runs `tiller <args>` as `nproc` ranks on this machine and waits for all of them (a
/// pipeline stage's `nproc_per_node` comes here too).
pub fn launch_with(nproc: usize, args: Vec<OsString>) -> Result<()> {
    if nproc == 0 {
        bail!("--nproc-per-node must be at least 1");
    }
    if let Some(var) = tiller_model::dist::ENV_VARS
        .iter()
        .find(|v| std::env::var_os(v).is_some())
    {
        bail!("--nproc-per-node starts its own ranks, but {var} is already set (a torchrun-style launcher); drop one of the two");
    }
    let exe = std::env::current_exe().context("cannot find the tiller executable to re-run")?;
    let port = free_port()?;
    // Like torchrun: one thread per rank unless told otherwise, so N ranks don't
    // oversubscribe the cores.
    let threads = std::env::var("OMP_NUM_THREADS").unwrap_or_else(|_| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / nproc).max(1).to_string()
    });
    tracing::info!("launching {nproc} ranks on 127.0.0.1:{port} (OMP_NUM_THREADS={threads})");
    let mut children: Vec<Child> = Vec::with_capacity(nproc);
    let mut pumps = Vec::new();
    for rank in 0..nproc {
        let mut command = Command::new(&exe);
        // SAFETY: runs in the child between fork and exec and only calls prctl, which is
        // async-signal-safe: a rank dies with its launcher (killed or not) instead of
        // training on unsupervised.
        unsafe {
            command.pre_exec(
                || match libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                },
            );
        }
        let spawned = command
            .args(&args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env("OMP_NUM_THREADS", &threads)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                stop(&mut children);
                return Err(e)
                    .with_context(|| format!("cannot start rank {rank} ({})", exe.display()));
            }
        };
        if let Some(out) = child.stdout.take() {
            pumps.push(pump(out, rank, false));
        }
        if let Some(err) = child.stderr.take() {
            pumps.push(pump(err, rank, true));
        }
        children.push(child);
    }
    let failure = wait_all(&mut children);
    for p in pumps {
        let _ = p.join();
    }
    match failure? {
        None => Ok(()),
        Some((rank, status)) => bail!(
            "rank {rank} of {nproc} failed ({}); stopped the other ranks",
            describe(status)
        ),
    }
}

/// The first rank to fail and its status, after stopping the rest; None if all succeed.
/// Of ranks found failed in the same poll, one killed by a signal is the cause (the
/// others fail because it vanished), else the lowest rank.
fn wait_all(children: &mut [Child]) -> Result<Option<(usize, ExitStatus)>> {
    use std::os::unix::process::ExitStatusExt;
    let mut done = vec![false; children.len()];
    while done.iter().any(|d| !d) {
        let mut failed = Vec::new();
        for (rank, child) in children.iter_mut().enumerate() {
            if done[rank] {
                continue;
            }
            let status = child
                .try_wait()
                .with_context(|| format!("waiting for rank {rank}"))?;
            if let Some(status) = status {
                done[rank] = true;
                if !status.success() {
                    failed.push((rank, status));
                }
            }
        }
        failed.sort_by_key(|(rank, status)| (status.signal().is_none(), *rank));
        if let Some(&first) = failed.first() {
            stop(children);
            return Ok(Some(first));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(None)
}

fn stop(children: &mut [Child]) {
    for child in children.iter_mut() {
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// Copies a rank's output line by line, each line tagged `[rank r]`.
fn pump(
    stream: impl Read + Send + 'static,
    rank: usize,
    stderr: bool,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).split(b'\n').map_while(|l| l.ok()) {
            let text = String::from_utf8_lossy(&line);
            let tagged = format!("[rank {rank}] {text}\n");
            let _ = match stderr {
                true => std::io::stderr().lock().write_all(tagged.as_bytes()),
                false => std::io::stdout().lock().write_all(tagged.as_bytes()),
            };
        }
    })
}

/// A port free on loopback now (the OS picks it; rank 0 binds it moments later).
fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").context("cannot find a free port for MASTER_PORT")?;
    Ok(listener
        .local_addr()
        .context("reading the free port")?
        .port())
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
