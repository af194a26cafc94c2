//! Where this process sits in a data-parallel job, from the variables torchrun (and
//! Slurm or Kubernetes launchers set up like it) exports: `RANK`, `WORLD_SIZE`,
//! `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`. `tiller ... --nproc-per-node N` sets the
//! same variables for the processes it starts, so both launch paths meet here.

use std::time::Duration;

use crate::error::{ModelError, Result};

/// The variables that make a process a rank of a job; all or none must be set.
pub const ENV_VARS: [&str; 5] = [
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
];
/// Seconds a collective may wait for the other ranks (default 600: ten minutes).
pub const TIMEOUT_VAR: &str = "TILLER_DIST_TIMEOUT";
/// Seconds the start-up rendezvous may wait for every rank to join (default 60).
pub const INIT_TIMEOUT_VAR: &str = "TILLER_DIST_INIT_TIMEOUT";

/// One rank's view of the job.
#[derive(Debug, Clone, PartialEq)]
pub struct World {
    pub rank: usize,
    pub world_size: usize,
    /// The rank on this machine: `--device cuda` means `cuda:<local_rank>`.
    pub local_rank: usize,
    /// Rank 0's host, which serves the rendezvous store.
    pub master_addr: String,
    pub master_port: u16,
    /// Bound on each collective (a dead or hung peer).
    pub timeout: Duration,
    /// Bound on the start-up rendezvous (a missing peer).
    pub init_timeout: Duration,
}

impl World {
    /// The job this process belongs to, or `None` when no launcher set `RANK` & co.
    pub fn from_env() -> Result<Option<World>> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`World::from_env`] over any variable lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<World>> {
        let set: Vec<&str> = ENV_VARS
            .iter()
            .copied()
            .filter(|v| get(v).is_some())
            .collect();
        if set.is_empty() {
            return Ok(None);
        }
        if set.len() < ENV_VARS.len() {
            let missing: Vec<&str> = ENV_VARS
                .iter()
                .copied()
                .filter(|v| !set.contains(v))
                .collect();
            return Err(invalid(format!(
                "{} set but {} not: a torchrun-style launch needs all of {}",
                set.join(", "),
                missing.join(", "),
                ENV_VARS.join(", ")
            )));
        }
        let value = |name: &str| get(name).unwrap_or_default();
        let number = |name: &str| -> Result<usize> {
            value(name).trim().parse().map_err(|_| {
                invalid(format!(
                    "{name}={:?} is not a non-negative integer",
                    value(name)
                ))
            })
        };
        let seconds = |name: &str, default: u64| -> Result<Duration> {
            match get(name) {
                None => Ok(Duration::from_secs(default)),
                Some(v) => match v.trim().parse::<f64>() {
                    Ok(s) if s > 0.0 && s.is_finite() => Ok(Duration::from_secs_f64(s)),
                    _ => Err(invalid(format!(
                        "{name}={v:?} is not a positive number of seconds"
                    ))),
                },
            }
        };
        let (rank, world_size, local_rank) = (
            number("RANK")?,
            number("WORLD_SIZE")?,
            number("LOCAL_RANK")?,
        );
        if world_size == 0 || rank >= world_size {
            return Err(invalid(format!(
                "RANK={rank} must be below WORLD_SIZE={world_size} (and WORLD_SIZE at least 1)"
            )));
        }
        let port = value("MASTER_PORT");
        let master_port = port
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| invalid(format!("MASTER_PORT={port:?} is not a port (1-65535)")))?;
        let master_addr = value("MASTER_ADDR").trim().to_owned();
        if master_addr.is_empty() {
            return Err(invalid("MASTER_ADDR is empty".into()));
        }
        Ok(Some(World {
            rank,
            world_size,
            local_rank,
            master_addr,
            master_port,
            timeout: seconds(TIMEOUT_VAR, 600)?,
            init_timeout: seconds(INIT_TIMEOUT_VAR, 60)?,
        }))
    }
}

fn invalid(message: String) -> ModelError {
    ModelError::Distributed(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn world(vars: &[(&str, &str)]) -> Result<Option<World>> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        World::from_lookup(|k| map.get(k).cloned())
    }

    const FULL: [(&str, &str); 5] = [
        ("RANK", "1"),
        ("WORLD_SIZE", "2"),
        ("LOCAL_RANK", "1"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "29500"),
    ];

    #[test]
    fn torchrun_variables_make_a_world() {
        assert_eq!(world(&[]).unwrap(), None);
        let w = world(&FULL).unwrap().unwrap();
        assert_eq!(
            (w.rank, w.world_size, w.local_rank, w.master_port),
            (1, 2, 1, 29500)
        );
        assert_eq!(w.timeout, Duration::from_secs(600));
        assert_eq!(w.init_timeout, Duration::from_secs(60));
        let mut vars = FULL.to_vec();
        vars.push((TIMEOUT_VAR, "2.5"));
        assert_eq!(
            world(&vars).unwrap().unwrap().timeout,
            Duration::from_millis(2500)
        );
    }

    #[test]
    fn bad_variables_are_named() {
        let err = world(&FULL[..3]).unwrap_err().to_string();
        assert!(err.contains("MASTER_ADDR, MASTER_PORT not"), "{err}");
        let mut vars = FULL.to_vec();
        vars[0] = ("RANK", "2");
        let err = world(&vars).unwrap_err().to_string();
        assert!(err.contains("RANK=2 must be below WORLD_SIZE=2"), "{err}");
        vars[0] = ("RANK", "x");
        assert!(world(&vars).unwrap_err().to_string().contains("RANK=\"x\""));
        let mut vars = FULL.to_vec();
        vars[4] = ("MASTER_PORT", "70000");
        assert!(world(&vars)
            .unwrap_err()
            .to_string()
            .contains("MASTER_PORT=\"70000\""));
        let mut vars = FULL.to_vec();
        vars.push((INIT_TIMEOUT_VAR, "0"));
        assert!(world(&vars)
            .unwrap_err()
            .to_string()
            .contains(INIT_TIMEOUT_VAR));
    }
}
