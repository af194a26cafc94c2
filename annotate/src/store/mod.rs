//! The annotation store: one SQLite file in WAL mode.
//!
//! **Durability.** Every write runs on one writer thread with `synchronous = FULL`, so a
//! transaction's WAL frames are fsynced before `COMMIT` returns, and a caller is answered
//! only after its transaction committed: an acknowledged vote survives a process crash
//! and a power cut. (`NORMAL` in WAL mode survives process crashes but may lose the last
//! transactions on power loss; we do not take that trade.)
//!
//! **Group commit.** An fsync costs milliseconds, so committing each vote alone would cap
//! throughput at a few hundred votes/s. The writer instead drains every request queued
//! while the previous fsync ran and commits them as one transaction, each request inside
//! its own `SAVEPOINT` so a failing request rolls back alone and the others still commit.
//!
//! **Reads** use a small pool of separate connections; WAL lets them run beside the writer.
//!
//! **Privacy.** A new database file is created 0600 before SQLite opens it; SQLite gives
//! its `-wal` and `-shm` files the main file's mode, so names, votes and rationales are
//! not readable by other local users.
//!
//! All SQL lives in this module's files (the API and export call functions here),
//! written once for both backends through [`db::Db`].
//!
//! **PostgreSQL.** A `db` of the form `postgres://USER@HOST[:PORT]/DBNAME` opens the same
//! store on a PostgreSQL server instead (the sync `postgres` client without TLS: use it
//! on loopback or a private network). Several server processes, on one machine or many,
//! can then serve the same campaigns:
//! - *Assignment stays correct across processes* because every write transaction, in
//!   every process, first takes one transaction-scoped advisory lock
//!   (`pg_advisory_xact_lock`, see `writer::WRITE_LOCK`): write batches of all
//!   processes run one at a time, exactly as SQLite's single writer runs them in one
//!   process, so "next item" cannot hand the last free slot of an item to two
//!   annotators, and the schema's constraints (the same as SQLite's, `schema_pg.rs`)
//!   back this up. We chose one lock over `SELECT … FOR UPDATE SKIP LOCKED` because
//!   assignment also updates shared counters (a campaign's open items, each holder's
//!   count) that row locks would serialize anyway, and because one lock cannot
//!   deadlock. Group commit still batches each process's requests, so the lock is
//!   taken once per batch, not per vote.
//! - *Round trips.* Inside the lock every statement is a round trip to the server, so
//!   `next` and a vote are one PL/pgSQL call each (`queue_pg.rs`, built from the same
//!   query texts SQLite runs) that needs no savepoint, and the writer sends a batch's
//!   run of such calls pipelined (`writer::Atomic`, `PgConn::pipeline`): all of them
//!   cost one round trip, plus two per batch (`BEGIN` with the lock, `COMMIT`). Other
//!   requests' savepoints ride along with their next statement (`db/pg.rs`).
//! - *Counters instead of counts.* What every `next` reports (open items, an annotator's
//!   voted/skipped/pending) is kept in rows by triggers, so it costs a row read, not a
//!   count whose MVCC visibility checks grow with the campaign.
//! - *Durability* is the same as SQLite's: a request is answered after its batch's
//!   COMMIT returned, with `synchronous_commit = on`, so the server has flushed it to
//!   its WAL.
//! - Reads run on their own connections, outside the lock (PostgreSQL's MVCC), and an
//!   export reads one `REPEATABLE READ` snapshot.
//! - Each process caches identities for [`IDENTITY_TTL`], so a consent change or a
//!   token rotation made through another process reaches it within that time.

pub(crate) mod arena;
mod arena_config;
mod assignment;
pub(crate) mod campaigns;
pub(crate) mod consent;
pub(crate) mod db;
pub(crate) mod items;
mod policy;
pub(crate) mod queue;
mod queue_pg;
pub(crate) mod reports;
pub(crate) mod review;
pub mod schema;
mod schema_pg;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

pub use arena::{ArenaConfig, ArenaModel, CampaignKind, Reveal, MAX_PROMPT_CHARS};
pub use campaigns::{
    AnnotatorLink, Campaign, CampaignPolicy, CampaignSummary, Identity, NewCampaign, OnWithdrawal,
    DEFAULT_CONSENT,
};
pub use consent::{check_consent, ConsentStatement, RecordedBy, Withdrawal, WithdrawnMatch};
pub use items::{parse_items_jsonl, Answer, ItemsAdded, Message, NewItem, PendingPrompt, Prompt};
pub use queue::{
    Assignment, AssignmentState, Choice, Progress, Strength, VoteInput, VoteReceipt, DEFAULT_LEASE,
};
pub use reports::{AnnotatorProgress, ItemProgress, ItemRecord, Outcome, VoteRecord};
pub use review::{GoldMark, GoldScore};

use crate::error::{AppError, Result};
use db::{Db, PgConn};
use writer::{WriteConn, Writer};

/// How many idle read connections to keep open (a PostgreSQL connection costs the
/// server a process, so more are kept rather than reopened under load).
const MAX_IDLE_READERS: usize = 8;
const MAX_IDLE_PG_READERS: usize = 32;
/// Bound on the identity cache; it is simply emptied when full.
const MAX_CACHED_IDENTITIES: usize = 100_000;
/// How long a cached identity is trusted. Changes made through this process (consent,
/// withdrawal, a new consent text) empty the cache at once; this bounds how long a change
/// made by another process (`tiller annotate admin-token` rotating the admin token) takes
/// to reach a running server.
const IDENTITY_TTL: Duration = Duration::from_secs(5);

/// A handle on the store; cheap to clone, safe to share between threads.
///
/// The public methods block until their transaction commits (or their read finishes):
/// call them from plain threads, or inside `tokio::task::spawn_blocking` from async code.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    /// The file, or for PostgreSQL the URL (password redacted), as a path.
    path: PathBuf,
    backend: Backend,
    writer: Writer,
    readers: Mutex<Vec<ReadConn>>,
    /// Token hash → identity and when it was looked up (see [`Store::identify`]); saves
    /// a database round trip on most requests.
    identities: Mutex<HashMap<String, (Identity, Instant)>>,
}

/// Where the store lives.
enum Backend {
    Sqlite,
    Postgres { url: String },
}

/// An idle read connection.
enum ReadConn {
    Lite(Connection),
    Pg(Box<PgConn>),
}

/// The PostgreSQL URL `db` names, if it is one (`postgres://` or `postgresql://`).
pub fn postgres_url(db: &Path) -> Option<&str> {
    db.to_str()
        .filter(|s| s.starts_with("postgres://") || s.starts_with("postgresql://"))
}

/// Whether `db` names an existing store: a file that exists, or a PostgreSQL URL (the
/// server says whether it exists when connecting).
pub fn exists(db: &Path) -> bool {
    postgres_url(db).is_some() || db.is_file()
}

impl Store {
    /// Opens (creating if needed) the store at `path` and applies schema migrations.
    /// A `postgres://USER@HOST[:PORT]/DBNAME` "path" opens it on PostgreSQL (see the
    /// module docs); the database must exist, its tables are created.
    pub fn open(path: &Path) -> Result<Store> {
        match postgres_url(path) {
            Some(url) => Store::open_postgres(url),
            None => Store::open_sqlite(path),
        }
    }

    fn open_postgres(url: &str) -> Result<Store> {
        // Also on failure: a connection must close outside async code.
        outside_runtime(|| Store::connect_postgres(url))
    }

    fn connect_postgres(url: &str) -> Result<Store> {
        let mut conn = PgConn::connect(url)?;
        schema_pg::migrate(&mut conn)?;
        let writer = Writer::spawn(WriteConn::Pg {
            conn: Box::new(conn),
            url: url.to_string(),
        })?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: PathBuf::from(db::redact(url)),
                backend: Backend::Postgres {
                    url: url.to_string(),
                },
                writer,
                readers: Mutex::new(Vec::new()),
                identities: Mutex::new(HashMap::new()),
            }),
        })
    }

    fn open_sqlite(path: &Path) -> Result<Store> {
        create_private(path)?;
        let mut conn = Connection::open(path).map_err(|source| AppError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        // journal_mode is persistent in the file; the rest is per connection.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(AppError::Unsupported(format!(
                "{} cannot use WAL mode (got {mode}); is it on a network filesystem?",
                path.display()
            )));
        }
        configure(&conn)?;
        schema::migrate(&mut conn)?;
        let writer = Writer::spawn(WriteConn::Lite(conn))?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                backend: Backend::Sqlite,
                writer,
                readers: Mutex::new(Vec::new()),
                identities: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The database file this store was opened from (for PostgreSQL, its URL without
    /// the password).
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` inside the writer's transaction and waits for the commit.
    /// Blocks the calling thread: do not call from async code, use [`Store::write_async`].
    pub(crate) fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Db) -> Result<T> + Send + 'static,
    {
        self.inner.writer.run_blocking(f)
    }

    /// Runs `f` inside the writer's transaction; resolves after the commit.
    pub(crate) async fn write_async<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Db) -> Result<T> + Send + 'static,
    {
        self.inner.writer.run_async(f).await
    }

    /// Runs `f` on a read connection (blocking).
    pub(crate) fn read<T: Send>(&self, f: impl FnOnce(&Db) -> Result<T> + Send) -> Result<T> {
        match self.inner.backend {
            Backend::Sqlite => self.read_here(f),
            Backend::Postgres { .. } => outside_runtime(|| self.read_here(f)),
        }
    }

    /// [`Store::read`] on the calling thread.
    fn read_here<T>(&self, f: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        let pooled = self
            .inner
            .readers
            .lock()
            .ok()
            .and_then(|mut idle| idle.pop());
        let mut conn = match pooled {
            Some(conn) => conn,
            None => self.open_reader()?,
        };
        let result = match &mut conn {
            ReadConn::Lite(conn) => f(&Db::Lite(conn)),
            ReadConn::Pg(conn) => f(&Db::Pg(std::cell::RefCell::new(&mut **conn))),
        };
        let (healthy, keep) = match &conn {
            ReadConn::Lite(_) => (true, MAX_IDLE_READERS),
            ReadConn::Pg(conn) => (!conn.is_closed(), MAX_IDLE_PG_READERS),
        };
        if let Ok(mut idle) = self.inner.readers.lock() {
            if healthy && idle.len() < keep {
                idle.push(conn);
            }
        }
        result
    }

    fn open_reader(&self) -> Result<ReadConn> {
        match &self.inner.backend {
            Backend::Sqlite => {
                let conn = Connection::open_with_flags(
                    &self.inner.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                configure(&conn)?;
                Ok(ReadConn::Lite(conn))
            }
            Backend::Postgres { url } => Ok(ReadConn::Pg(Box::new(PgConn::connect(url)?))),
        }
    }

    /// Who holds `token`. Identities are cached for [`IDENTITY_TTL`]; annotators before
    /// consent are always looked up, so the first request after accepting sees it.
    pub async fn identify(&self, token: String) -> Result<Identity> {
        let hash = crate::util::sha256_hex(token.as_bytes());
        let cached = self.inner.identities.lock().ok().and_then(|cache| {
            cache
                .get(&hash)
                .filter(|(_, at)| at.elapsed() < IDENTITY_TTL)
                .map(|(identity, _)| identity.clone())
        });
        if let Some(identity) = cached {
            return Ok(identity);
        }
        let identity = self
            .read_async(move |conn| campaigns::authenticate(conn, &token))
            .await?;
        let settled = match &identity {
            Identity::Admin => true,
            Identity::Annotator {
                consent_current, ..
            } => *consent_current,
        };
        if settled {
            if let Ok(mut cache) = self.inner.identities.lock() {
                if cache.len() >= MAX_CACHED_IDENTITIES {
                    cache.clear();
                }
                cache.insert(hash, (identity.clone(), Instant::now()));
            }
        }
        Ok(identity)
    }

    /// Empties the identity cache; called after a change to consent or tokens.
    pub(crate) fn forget_identities(&self) {
        if let Ok(mut cache) = self.inner.identities.lock() {
            cache.clear();
        }
    }

    /// Runs `f` on a read connection from a blocking-pool thread.
    pub(crate) async fn read_async<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Db) -> Result<T> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read_here(f))
            .await
            .map_err(|err| AppError::Background(err.to_string()))?
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A PostgreSQL client blocks on its own runtime when it closes, which tokio
        // forbids inside async code (where the last handle is often dropped).
        let readers = match self.readers.get_mut() {
            Ok(readers) => std::mem::take(readers),
            Err(poisoned) => std::mem::take(poisoned.into_inner()),
        };
        if readers.iter().any(|conn| matches!(conn, ReadConn::Pg(_))) {
            let _ = std::thread::spawn(move || drop(readers)).join();
        }
    }
}

/// Runs `f` where the sync PostgreSQL client may block: on this thread, or on a scoped
/// thread when called from async code (the client runs its own runtime, which tokio
/// does not allow to be started inside another one).
fn outside_runtime<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| {
        scope
            .spawn(f)
            .join()
            .unwrap_or_else(|_| Err(AppError::Background("a database call panicked".into())))
    })
}

/// Creates `path` empty with mode 0600 if it does not exist yet (SQLite would create it
/// with 0644 under the usual umask). An existing file keeps its mode.
fn create_private(path: &Path) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(AppError::io(format!("creating {}", path.display()), source)),
    }
}

fn configure(conn: &Connection) -> Result<()> {
    conn.set_prepared_statement_cache_capacity(64);
    // A 64 MiB page cache (the default is 2 MiB) and memory-mapped reads: the hot
    // pages of a busy campaign stay in memory instead of being re-read with pread.
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 5000;
         PRAGMA cache_size = -65536;
         PRAGMA mmap_size = 268435456;",
    )?;
    Ok(())
}
