//! `tiller annotate ...`: run the annotation server, set up campaigns, queue model answers,
//! export votes as preference pairs (or KTO rows), rotate the admin token, record a
//! withdrawal of consent. The server and store live in tiller-annotate (no libtorch);
//! this module adds what needs a model: `generate` (generate.rs). The campaign and export
//! subcommands have their own files; the small ones are here.

mod campaign;
mod export;
mod generate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use tiller_annotate::store::RecordedBy;
use tiller_annotate::{serve, ServeOptions, Store};

pub use campaign::CampaignArgs;
pub use export::ExportArgs;
pub use generate::GenerateArgs;

#[derive(Subcommand)]
pub enum AnnotateCommand {
    /// Serve the annotator and admin pages (loopback unless --bind says otherwise).
    Serve(ServeArgs),
    /// Create a campaign and print its annotator links.
    Campaign(CampaignArgs),
    /// Sample two answers per prompt and queue them as items of a campaign.
    Generate(GenerateArgs),
    /// Export votes as TRL prompt/chosen/rejected pairs or KTO rows (.jsonl or .parquet)
    /// plus a manifest.
    Export(ExportArgs),
    /// Replace the admin token with a new one and print the new admin link (once).
    AdminToken(AdminTokenArgs),
    /// Record that an annotator withdrew consent (their votes leave every export).
    Withdraw(WithdrawArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    /// The store: a SQLite file (created if missing), or `postgres://USER@HOST[:PORT]/DB`
    /// (no TLS; several servers may share one PostgreSQL database).
    #[arg(long)]
    db: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Seconds an annotator holds an item they do not act on before it returns to the queue.
    #[arg(long, default_value_t = 1800.0)]
    lease_secs: f64,
    /// Seconds a connection has to send a whole request head.
    #[arg(long, default_value_t = 10.0)]
    header_timeout_secs: f64,
    /// Seconds in-flight requests get on shutdown before connections are closed.
    #[arg(long, default_value_t = 10.0)]
    shutdown_grace_secs: f64,
    /// Connections served at once; more wait until one closes.
    #[arg(long, default_value_t = tiller_annotate::api::DEFAULT_MAX_CONNECTIONS as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
}

#[derive(Args)]
pub struct AdminTokenArgs {
    #[arg(long)]
    db: PathBuf,
    /// Base URL the link points at.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base_url: String,
}

#[derive(Args)]
pub struct WithdrawArgs {
    #[arg(long)]
    db: PathBuf,
    #[arg(long)]
    campaign: String,
    /// The annotator's name in the campaign.
    #[arg(long)]
    annotator: String,
}

pub fn run(cmd: AnnotateCommand) -> Result<()> {
    match cmd {
        AnnotateCommand::Serve(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let mut options = ServeOptions {
                bind: args.bind,
                ..ServeOptions::default()
            };
            options.limits.lease = seconds("--lease-secs", args.lease_secs)?;
            options.limits.header_timeout =
                seconds("--header-timeout-secs", args.header_timeout_secs)?;
            options.limits.shutdown_grace =
                seconds("--shutdown-grace-secs", args.shutdown_grace_secs)?;
            options.limits.max_connections =
                usize::try_from(args.max_connections).unwrap_or(usize::MAX);
            runtime.block_on(serve(&args.db, options))?;
            Ok(())
        }
        AnnotateCommand::AdminToken(args) => {
            let store = open_existing(&args.db)?;
            let token = store.rotate_admin_token()?;
            println!(
                "admin link (shown once, keep it secret; older admin links stop working): {}/admin#token={token}",
                args.base_url.trim_end_matches('/')
            );
            Ok(())
        }
        AnnotateCommand::Withdraw(args) => {
            let store = open_existing(&args.db)?;
            let campaign = store.campaign_by_name(&args.campaign)?;
            let id = store.annotator_id(campaign.id, &args.annotator)?;
            let record = store.withdraw(id, RecordedBy::Admin)?;
            println!(
                "withdrawal recorded for {} ({}): {} votes covered{}",
                args.annotator,
                record.pseudonym,
                record.votes,
                if record.erased {
                    ", erased"
                } else {
                    ", kept out of exports"
                }
            );
            Ok(())
        }
        AnnotateCommand::Campaign(args) => campaign::run(args),
        AnnotateCommand::Generate(args) => generate::run(args),
        AnnotateCommand::Export(args) => export::run(args),
    }
}

/// `seconds` as a duration, naming `flag` when it is negative or not finite.
fn seconds(flag: &str, seconds: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(seconds).with_context(|| format!("{flag} {seconds}"))
}

/// Opens a store that must already exist (opening creates an empty one otherwise).
fn open_existing(db: &Path) -> Result<Store> {
    if !tiller_annotate::store::exists(db) {
        bail!("--db {}: no such database", db.display());
    }
    Ok(Store::open(db)?)
}
