//! A standalone annotation server, for the crash-safety test and the load benchmark
//! (the `tiller annotate serve` subcommand does the same through the root CLI).
//!
//! Usage: tiller-annotate-server --db FILE [--bind 127.0.0.1:8080] [--lease-secs N]
//! [--header-timeout-secs N] [--shutdown-grace-secs N]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tiller_annotate::{serve, ServeOptions};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tiller-annotate-server: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut db: Option<PathBuf> = None;
    let mut options = ServeOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--db" => db = Some(PathBuf::from(value()?)),
            "--bind" => {
                let raw = value()?;
                options.bind = raw
                    .parse::<SocketAddr>()
                    .map_err(|err| format!("--bind {raw}: {err}"))?;
            }
            "--lease-secs" => options.limits.lease = seconds(&arg, &value()?)?,
            "--header-timeout-secs" => options.limits.header_timeout = seconds(&arg, &value()?)?,
            "--shutdown-grace-secs" => options.limits.shutdown_grace = seconds(&arg, &value()?)?,
            "--max-connections" => {
                let raw = value()?;
                options.limits.max_connections = match raw.parse::<usize>() {
                    Ok(n) if n >= 1 => n,
                    _ => {
                        return Err(format!(
                            "--max-connections {raw}: must be a whole number, at least 1"
                        ))
                    }
                };
            }
            "--help" | "-h" => {
                println!(
                    "usage: tiller-annotate-server --db FILE [--bind 127.0.0.1:8080] [--lease-secs 1800] \
                     [--header-timeout-secs 10] [--shutdown-grace-secs 10] [--max-connections 512]"
                );
                return Ok(());
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let db = db.ok_or("--db FILE is required")?;
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let runtime =
        tokio::runtime::Runtime::new().map_err(|err| format!("starting the runtime: {err}"))?;
    runtime
        .block_on(serve(&db, options))
        .map_err(|err| err.to_string())
}

fn seconds(flag: &str, raw: &str) -> Result<Duration, String> {
    let value: f64 = raw
        .parse()
        .map_err(|_| format!("{flag} {raw}: not a number of seconds"))?;
    Duration::try_from_secs_f64(value).map_err(|err| format!("{flag} {raw}: {err}"))
}
