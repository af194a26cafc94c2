//! Starting `tiller <args>` as N ranks on this machine: one child process per rank with
//! the variables torchrun sets (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`,
//! `MASTER_PORT`), each output line tagged with its rank, and a wait that stops every
//! rank as soon as one fails and says which and how. `--nproc-per-node` on a trainer
//! command (`cli::launch`) and `nproc_per_node` on a pipeline stage both come here.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Runs `tiller <args>` as `nproc` ranks on this machine and waits for all of them.
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
