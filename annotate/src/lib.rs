//! tiller-annotate: the annotation server. People compare two answers to a prompt in a
//! browser; their votes are stored durably in SQLite and exported as TRL preference
//! pairs for `tiller reward train` and `tiller dpo`. Never links libtorch: the root CLI
//! samples answers and queues them through [`Store::add_items`].
//!
//! Layout:
//! - [`store`]: the SQLite store (WAL, migrations, group-committed writes) and the
//!   campaign / item / queue operations the CLI and the HTTP API share;
//! - [`api`]: the axum application, [`app`], separate from binding a socket;
//! - [`web`]: the pages and their static JS/CSS, embedded in the binary;
//! - [`arena`](mod@arena): live battles of arena campaigns — two OpenAI-compatible
//!   endpoints answer an annotator's prompt, streamed side by side, over HTTP;
//! - [`stats`]: inter-annotator agreement (raw, Cohen's κ, Krippendorff's α, per item)
//!   and the Bradley–Terry leaderboard;
//! - [`export`](mod@export): TRL `prompt`/`chosen`/`rejected` (or KTO `completion`/`label`)
//!   rows with provenance and a manifest, written by tiller-data's table writer (JSONL or
//!   Parquet);
//! - [`serve`](mod@serve): binding, header-read timeout, bounded graceful shutdown, the
//!   admin link.
//!
//! Invariants:
//! - Every write goes through the store's single writer thread; a caller is answered
//!   only after its transaction committed with `synchronous = FULL` (group commit keeps
//!   that fast). An acknowledged vote is on disk.
//! - The schema, not just the code, forbids an item assigned to one annotator twice or
//!   beyond its overlap (`UNIQUE`, `CHECK` and triggers).
//! - Model and user text reaches the page only through `textContent`; the CSP forbids
//!   inline script as a second line of defence.
//! - Tokens are random 256-bit secrets kept as sha256; links carry them in the URL
//!   fragment, which browsers never send to the server. The database file is 0600.
//! - Consent is versioned and can be withdrawn; a withdrawn annotator's votes are never
//!   live again, so no export, statistic or leaderboard contains them.
//!
//! What the root CLI calls:
//!
//! ```no_run
//! # async fn demo() -> tiller_annotate::Result<()> {
//! use std::path::Path;
//! use tiller_annotate::{export, serve, Answer, ExportOptions, NewCampaign, NewItem, Prompt, ServeOptions, Store};
//!
//! let db = Path::new("annotations.db");
//! let store = Store::open(db)?;
//! let (campaign, links) = store.create_campaign(NewCampaign {
//!     name: "round-1".into(),
//!     guidelines: "Prefer the more helpful, honest answer.".into(),
//!     consent: None,
//!     overlap: 3,
//!     annotators: vec!["ana".into(), "ben".into(), "chen".into()],
//!     policy: Default::default(),
//! })?;
//! for link in &links {
//!     println!("{}: {}", link.name, link.url("http://127.0.0.1:8080"));
//! }
//! let answers = [Answer { model: "sft".into(), text: "…".into() }, Answer { model: "dpo".into(), text: "…".into() }];
//! let item = NewItem { external_id: None, prompt: Prompt::Text("Why is the sky blue?".into()), answers: Some(answers), gold: None };
//! store.add_items(campaign.id, vec![item])?;
//! drop(store);
//! serve(db, ServeOptions::default()).await?; // until ctrl-c
//! export(db, Path::new("pairs.parquet"), ExportOptions::default())?;
//! # Ok(())
//! # }
//! ```

pub mod api;
pub mod arena;
pub mod error;
pub mod export;
pub mod serve;
pub mod stats;
pub mod store;
mod util;
pub mod web;

pub use api::{app, AppState, Limits};
pub use error::{AppError, Result};
pub use export::{export, Aggregation, ExportFormat, ExportOptions, ExportSummary, TiePolicy};
pub use serve::{serve, ServeOptions};
pub use store::{
    check_consent, Answer, ArenaConfig, ArenaModel, CampaignKind, CampaignPolicy, Message,
    NewCampaign, NewItem, OnWithdrawal, Prompt, Store, WithdrawnMatch,
};
