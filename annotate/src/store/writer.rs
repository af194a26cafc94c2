//! The single writer thread with group commit (see the module docs of `store`).

use std::sync::mpsc;

use rusqlite::Connection;

use crate::error::{AppError, Result};

/// At most this many requests share one transaction, bounding the latency a request at
/// the end of a batch pays for the ones before it.
const MAX_BATCH: usize = 512;

/// A queued write: `run` executes inside the batch transaction, `finish` answers the
/// caller once the batch's fate (commit or rollback) is known.
trait Job: Send {
    /// Runs the request; returns false when it failed and must be rolled back.
    fn run(&mut self, conn: &Connection) -> bool;
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
    F: FnOnce(&Connection) -> Result<T> + Send + 'static,
{
    fn run(&mut self, conn: &Connection) -> bool {
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
    pub(super) fn spawn(conn: Connection) -> Result<Writer> {
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
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
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
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
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

fn writer_loop(conn: Connection, queue: mpsc::Receiver<Box<dyn Job>>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let commit = run_batch(&conn, &mut batch);
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
            if !job.run(conn) {
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
