//! The `annotate-queue` stage: the loop's way to people. It samples two answers to each
//! prompt of a file (one model twice, or a model against a second one such as the base)
//! and queues them as items of a campaign in an annotation store, creating the campaign
//! (guidelines, overlap, annotators, consent) when it does not exist yet.
//!
//! Idempotent: each item carries the sha256 of its prompt as its external id, and prompts
//! already in the campaign are not sampled or queued again, so running the pipeline twice
//! (or after a crash between the store write and the manifest) queues each prompt once.
//!
//! Annotator tokens are shown once and kept hashed in the store, so the links made when
//! the campaign is created are written to `<database>.<campaign>.links` (mode 0600) beside
//! the database; the `annotate-export` stage prints them when it waits for votes.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tiller_annotate::store::Campaign;
use tiller_annotate::{AppError, CampaignPolicy, NewCampaign, NewItem, Prompt, Store};
use tiller_data::{load_records, ChatMessage, OnBadRow, PromptRecord, Turns};

use crate::pipeline::answer_pairs::{prompt_of, sample_pairs, PairSampling};
use crate::pipeline::hashing::text_sha256;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueStage {
    /// The annotation store (SQLite), created when missing.
    pub database: PathBuf,
    pub campaign: String,
    /// Prompts: the `prompt` column, text or chat turns (as RL rollouts read it).
    pub prompts: PathBuf,
    /// Only the first `limit` prompts.
    #[serde(default)]
    pub limit: Option<usize>,
    /// One model (two samples per prompt) or two (one answer each), e.g.
    /// `["stages.dpo", "models/base"]`.
    pub models: Vec<PathBuf>,
    /// Used only when the campaign is created.
    #[serde(default)]
    pub guidelines: String,
    #[serde(default = "one")]
    pub overlap: u32,
    #[serde(default)]
    pub annotators: Vec<String>,
    #[serde(default)]
    pub consent: Option<String>,
    /// Where `tiller annotate serve` will answer; the links point there.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    #[serde(default)]
    pub sampling: PairSampling,
    /// The stage directory (set by the pipeline).
    pub out: PathBuf,
}

fn one() -> u32 {
    1
}
fn default_base_url() -> String {
    "http://127.0.0.1:8080".into()
}

/// What a queue stage did, for its manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedItems {
    pub database: String,
    pub campaign: String,
    /// Store ids of the items this run queued (empty when every prompt was there already).
    pub item_ids: Vec<i64>,
    /// Prompts of the file already in the campaign, not queued again.
    pub already_queued: usize,
}

/// The file beside `database` that keeps `campaign`'s links (see the module doc).
pub fn links_file(database: &Path, campaign: &str) -> PathBuf {
    let safe: String = campaign
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = database
        .file_name()
        .map_or("annotations".into(), |n| n.to_string_lossy().into_owned());
    database.with_file_name(format!("{name}.{safe}.links"))
}

/// The external id that makes queuing idempotent.
fn prompt_id(prompt: &Prompt) -> Result<String> {
    Ok(format!(
        "prompt-sha256:{}",
        text_sha256(&serde_json::to_string(prompt)?)
    ))
}

impl QueueStage {
    pub fn validate(&self, at: &str) -> Result<()> {
        if self.models.is_empty() || self.models.len() > 2 {
            bail!(
                "{at}: `models` has {} entries: give one model (two samples each) or two",
                self.models.len()
            );
        }
        if self.overlap == 0 {
            bail!("{at}: `overlap` = 0: each item needs at least one annotator");
        }
        if self.limit == Some(0) {
            bail!("{at}: `limit` = 0 queues nothing; leave it out for every prompt");
        }
        if self.sampling.batch_size == 0 || self.sampling.max_new_tokens == 0 {
            bail!("{at}: `sampling.batch_size` and `sampling.max_new_tokens` must be ≥ 1");
        }
        Ok(())
    }

    /// Samples answers to the prompts the campaign does not have yet and queues them.
    pub fn run(&self) -> Result<QueuedItems> {
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("cannot create {}", self.out.display()))?;
        if let Some(dir) = self.database.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let store = Store::open(&self.database)
            .with_context(|| format!("opening {}", self.database.display()))?;
        let campaign = match store.campaign_by_name(&self.campaign) {
            Ok(c) => c,
            Err(AppError::NotFound { .. }) => self.create_campaign(&store)?,
            Err(e) => return Err(e.into()),
        };
        // External ids already in the campaign; prompts repeated in the file count once.
        let mut seen: std::collections::BTreeSet<String> = store
            .item_progress(campaign.id)?
            .into_iter()
            .filter_map(|i| i.external_id)
            .collect();
        let mut records = load_records::<PromptRecord>(&self.prompts, OnBadRow::Stop)?.records;
        records.truncate(self.limit.unwrap_or(usize::MAX));
        let (mut messages, mut ids) = (Vec::new(), Vec::new());
        let mut already_queued = 0;
        for record in records {
            let chat = match record.prompt {
                Turns::Text(text) => vec![ChatMessage::user(text)],
                Turns::Messages(m) => m,
            };
            let id = prompt_id(&prompt_of(&chat))?;
            if seen.insert(id.clone()) {
                messages.push(chat);
                ids.push(id);
            } else {
                already_queued += 1;
            }
        }
        let item_ids = if messages.is_empty() {
            Vec::new()
        } else {
            let answers = sample_pairs(&self.models, &messages, &self.sampling)?;
            let items: Vec<NewItem> = messages
                .iter()
                .zip(ids)
                .zip(answers)
                .map(|((chat, id), pair)| NewItem {
                    external_id: Some(id),
                    prompt: prompt_of(chat),
                    answers: Some(pair),
                    gold: None,
                })
                .collect();
            store.add_items(campaign.id, items)?.item_ids
        };
        println!(
            "    campaign {}: {} items queued, {already_queued} prompts were queued before",
            self.campaign,
            item_ids.len()
        );
        let queued = QueuedItems {
            database: self.database.display().to_string(),
            campaign: self.campaign.clone(),
            item_ids,
            already_queued,
        };
        let record = self.out.join("queued.json");
        std::fs::write(&record, serde_json::to_string_pretty(&queued)? + "\n")
            .with_context(|| format!("cannot write {}", record.display()))?;
        Ok(queued)
    }

    /// Creates the campaign (and an admin token on a new store) and keeps the links.
    fn create_campaign(&self, store: &Store) -> Result<Campaign> {
        let (campaign, links) = store.create_campaign(NewCampaign {
            name: self.campaign.clone(),
            guidelines: self.guidelines.clone(),
            consent: self.consent.clone(),
            overlap: self.overlap,
            annotators: self.annotators.clone(),
            policy: CampaignPolicy::default(),
        })?;
        let base = self.base_url.trim_end_matches('/');
        let mut text = String::new();
        if !store.has_admin_token()? {
            let token = store.create_admin_token()?;
            text.push_str(&format!("admin\t{base}/admin#token={token}\n"));
        }
        for link in &links {
            text.push_str(&format!("{}\t{}\n", link.name, link.url(base)));
        }
        let path = links_file(&self.database, &self.campaign);
        write_private(&path, &text)?;
        println!(
            "    campaign {} created; its links (secret) are in {}",
            self.campaign,
            path.display()
        );
        Ok(campaign)
    }
}

/// Writes a file only its owner can read (it holds tokens).
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Prints where people vote: the campaign's links and the command that serves them.
pub fn print_links(database: &Path, campaign: &str) {
    let path = links_file(database, campaign);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            println!("    links ({}):", path.display());
            for line in text.lines() {
                println!("      {}", line.replace('\t', "  "));
            }
        }
        Err(_) => println!(
            "    links: not kept for campaign {campaign} (made outside the pipeline); `tiller annotate admin-token --db {}` prints a new admin link",
            database.display()
        ),
    }
    println!(
        "    serve them with: tiller annotate serve --db {}",
        database.display()
    );
}
