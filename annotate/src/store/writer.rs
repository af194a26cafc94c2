//! The single writer thread with group commit (see the module docs of `store`).

use std::cell::RefCell;
use std::sync::mpsc;

use rusqlite::Connection;

use super::db::{Db, JobEnd, PgConn};
use crate::error::{AppError, Result};

/// The PostgreSQL advisory lock every write transaction takes first (any constant
/// would do; this one spells "tiller"): write batches of all server processes on one
/// database run one after another, as SQLite's single writer does in one process.
pub(super) const WRITE_LOCK: i64 = 0x7469_6c6c_6572;

/// The writer's connection.
pub(super) enum WriteConn {
    Lite(Connection),
    /// PostgreSQL, with the URL to reconnect to after the connection is lost.
    Pg {
        conn: Box<PgConn>,
        url: String,
    },
}

/// At most this many requests share one transaction, bounding the latency a request at
/// the end of a batch pays for the ones before it.
const MAX_BATCH: usize = 512;

/// A queued write: `run` executes inside the batch transaction, `finish` answers the
/// caller once the batch's fate (commit or rollback) is known.
trait Job: Send {
    /// Runs the request; returns false when it failed and must be rolled back.
    fn run(&mut self, conn: &Db) -> bool;
    /// Answers the caller. `commit` is the outcome of the batch's COMMIT.
    fn finish(self: Box<Self>, commit: Result<(), String>);
}

enum Reply<T> {
    Blocking(mpsc::SyncSender<Result<T>>),
    Async(tokio::sync::oneshot::Sender<Result<T>>),
}

struct Request<T, F> {
    work: Option<F>,
    outcome: Option<Result<T>>,
    reply: Reply<T>,
}

impl<T, F> Job for Request<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Db) -> Result<T> + Send + 'static,
{
    fn run(&mut self, conn: &Db) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        // A panicking request must not take the writer thread (and every later write)
        // down with it: it fails alone and its savepoint is rolled back.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(conn)))
            .unwrap_or_else(|_| Err(AppError::Background("a database request panicked".into())));
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), String>) {
        let outcome = match (commit, self.outcome) {
            // A request that failed was rolled back to its savepoint: its own error stands.
            (_, Some(Err(err))) => Err(err),
            (Ok(()), Some(Ok(value))) => Ok(value),
            (Err(message), _) => Err(AppError::CommitFailed(message)),
            (Ok(()), None) => Err(AppError::WriterGone),
        };
        // The caller may have gone away (client disconnected); nothing to do then.
        match self.reply {
            Reply::Blocking(tx) => drop(tx.send(outcome)),
            Reply::Async(tx) => drop(tx.send(outcome)),
        }
    }
}

/// Sends jobs to the writer thread. Dropping the last handle stops the thread.
pub(super) struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    pub(super) fn spawn(conn: WriteConn) -> Result<Writer> {
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>();
        std::thread::Builder::new()
            .name("annotate-db-writer".into())
            .spawn(move || writer_loop(conn, queue))
            .map_err(|err| AppError::io("spawning the database writer thread", err))?;
        Ok(Writer { jobs })
    }

    pub(super) fn run_blocking<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Db) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let request = Request {
            work: Some(work),
            outcome: None,
            reply: Reply::Blocking(tx),
        };
        self.jobs
            .send(Box::new(request))
            .map_err(|_| AppError::WriterGone)?;
        rx.recv().map_err(|_| AppError::WriterGone)?
    }

    pub(super) async fn run_async<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Db) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let request = Request {
            work: Some(work),
            outcome: None,
            reply: Reply::Async(tx),
        };
        self.jobs
            .send(Box::new(request))
            .map_err(|_| AppError::WriterGone)?;
        rx.await.map_err(|_| AppError::WriterGone)?
    }
}

fn writer_loop(mut conn: WriteConn, queue: mpsc::Receiver<Box<dyn Job>>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let commit = match &mut conn {
            WriteConn::Lite(conn) => run_batch(conn, &mut batch),
            WriteConn::Pg { conn, url } => run_pg_batch(conn, url, &mut batch),
        };
        if let Err(message) = &commit {
            tracing::error!(%message, requests = batch.len(), "write batch rolled back");
        }
        for job in batch {
            job.finish(commit.clone());
        }
    }
}

/// Runs every job of `batch` in one transaction, each under its own savepoint.
fn run_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> Result<(), String> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|err| err.to_string())?;
    let result = (|| -> rusqlite::Result<()> {
        for job in batch.iter_mut() {
            conn.prepare_cached("SAVEPOINT request")?.execute([])?;
            if !job.run(&Db::Lite(conn)) {
                conn.prepare_cached("ROLLBACK TO request")?.execute([])?;
            }
            conn.prepare_cached("RELEASE request")?.execute([])?;
        }
        conn.execute_batch("COMMIT")
    })();
    if let Err(err) = result {
        // Best effort: the transaction may already be gone (e.g. COMMIT failed on I/O).
        let _ = conn.execute_batch("ROLLBACK");
        return Err(err.to_string());
    }
    Ok(())
}

/// The PostgreSQL version of [`run_batch`]: the batch's transaction first takes
/// [`WRITE_LOCK`], so it runs alone among all servers' write transactions on this
/// database; COMMIT returns after the WAL is flushed (`synchronous_commit = on`).
///
/// Every statement is a round trip to the server, so transaction control rides along
/// with the next statement (`PgConn::begin_batch`): `BEGIN` and the lock go out with
/// the batch's first statement, a job's savepoint with its own first statement, and a
/// job whose one statement is atomic (`Db::atomic_row`: `next` and a vote) takes no
/// savepoint at all. Should such a statement fail anyway, the transaction is lost: the
/// batch rolls back, the jobs not yet run are not run, and every job is answered with
/// an error, none acknowledged.
fn run_pg_batch(conn: &mut PgConn, url: &str, batch: &mut [Box<dyn Job>]) -> Result<(), String> {
    if conn.is_closed() {
        // The server restarted or the network dropped: connect again before failing.
        *conn = PgConn::connect(url).map_err(|err| err.to_string())?;
    }
    conn.begin_batch(&format!(
        "BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"
    ));
    let result = (|| -> Result<()> {
        for job in batch.iter_mut() {
            conn.begin_job();
            let ok = job.run(&Db::Pg(RefCell::new(&mut *conn)));
            match (ok, conn.end_job()) {
                (_, JobEnd::Aborted) => {
                    return Err(AppError::CommitFailed(
                        "a request failed outside a savepoint; the batch was rolled back".into(),
                    ))
                }
                (false, JobEnd::Guarded) => conn.batch("ROLLBACK TO request")?,
                (true, _) | (false, JobEnd::Unguarded) => {}
            }
        }
        Ok(())
    })();
    let opened = conn.end_batch();
    let result = result.and_then(|()| {
        if opened {
            // COMMIT releases the last savepoint.
            conn.batch("COMMIT")
        } else {
            Ok(())
        }
    });
    if let Err(err) = result {
        if opened {
            let _ = conn.batch("ROLLBACK");
        }
        return Err(err.to_string());
    }
    Ok(())
}
