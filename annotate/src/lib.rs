//! tiller-annotate: the annotation server. People compare two answers to a prompt in a
//! browser; their votes are stored durably in SQLite and exported as TRL preference
//! pairs for `tiller reward train` and `tiller dpo`.
//!
//! Layout:
//! - [`store`]: the SQLite store (WAL, migrations, group-committed writes) and the
//!   campaign / item / queue operations the CLI and the HTTP API share;
//! - [`api`]: the axum application, [`app`], separate from binding a socket;
//! - [`web`]: the pages and their static JS/CSS, embedded in the binary;
//! - [`stats`]: agreement (raw, Cohen's κ, Krippendorff's α) and the Bradley–Terry
//!   leaderboard;
//! - [`export`]: TRL `prompt`/`chosen`/`rejected` rows with provenance and a manifest;
//! - [`serve`](mod@serve): binding, graceful shutdown, the admin link.
//!
//! What the root CLI calls: [`serve::serve`], [`export::export`], [`Store::open`],
//! [`Store::create_campaign`], [`Store::add_annotators`], [`Store::add_items`],
//! [`Store::pending_prompts`], [`Store::set_answers`], [`Store::create_admin_token`].

pub mod api;
pub mod error;
pub mod export;
pub mod serve;
pub mod stats;
pub mod store;
mod util;
pub mod web;

pub use api::{app, AppState, Limits};
pub use error::{AppError, Result};
pub use export::{export, Aggregation, ExportOptions, ExportSummary, TiePolicy};
pub use serve::{serve, ServeOptions};
pub use store::{Answer, Message, NewCampaign, NewItem, Prompt, Store};
