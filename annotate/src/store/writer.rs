//! The single writer thread with group commit (see the module docs of `store`).

use std::cell::RefCell;
use std::sync::mpsc;

use rusqlite::Connection;

use super::db::{Db, JobEnd, Param, PgConn, Row, Value};
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
    /// The request's one statement when it is an [`Atomic`] one, which the PostgreSQL
    /// writer pipelines with its neighbours instead of calling [`Job::run`].
    fn atomic(&self) -> Option<(&str, &[Value])> {
        None
    }
    /// Takes the answer of the pipelined [`Job::atomic`] statement.
    fn answered(&mut self, _rows: Result<Vec<Row>>) {}
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
        let outcome = answer(commit, self.outcome);
        // The caller may have gone away (client disconnected); nothing to do then.
        match self.reply {
            Reply::Blocking(tx) => drop(tx.send(outcome)),
            Reply::Async(tx) => drop(tx.send(outcome)),
        }
    }
}

/// What a request's caller is answered, given the batch's COMMIT and the request's own
/// outcome (`None`: it never ran).
fn answer<T>(commit: Result<(), String>, outcome: Option<Result<T>>) -> Result<T> {
    match (commit, outcome) {
        // A request that failed was rolled back to its savepoint (or never applied, if
        // atomic): its own error stands.
        (_, Some(Err(err))) => Err(err),
        (Ok(()), Some(Ok(value))) => Ok(value),
        (Err(message), _) => Err(AppError::CommitFailed(message)),
        (Ok(()), None) => Err(AppError::WriterGone),
    }
}

/// A request that is one atomic statement (see `Db::atomic_row`: it applies in full or
/// not at all, and reports a refusal in its row instead of failing) and a function that
/// reads its one row: `next` and a vote on PostgreSQL (`queue_pg`). The writer sends a
/// batch's run of them pipelined, in one round trip.
pub(crate) struct Atomic<T> {
    pub(crate) sql: String,
    pub(crate) params: Vec<Value>,
    pub(crate) read: ReadRow<T>,
}

/// Reads an [`Atomic`] statement's one row into the request's answer.
pub(crate) type ReadRow<T> = Box<dyn FnOnce(&Row) -> Result<T> + Send>;

impl<T> Atomic<T> {
    /// Runs it on `conn` alone, outside a pipeline (`Job::run`).
    pub(crate) fn run(self, conn: &Db) -> Result<T> {
        let params: Vec<Param> = self.params.iter().map(Value::param).collect();
        conn.atomic_row(&self.sql, &params, self.read)
    }
}

struct AtomicRequest<T> {
    call: Option<Atomic<T>>,
    outcome: Option<Result<T>>,
    reply: tokio::sync::oneshot::Sender<Result<T>>,
}

impl<T: Send + 'static> Job for AtomicRequest<T> {
    fn atomic(&self) -> Option<(&str, &[Value])> {
        self.call
            .as_ref()
            .map(|call| (call.sql.as_str(), call.params.as_slice()))
    }

    fn answered(&mut self, rows: Result<Vec<Row>>) {
        if let Some(call) = self.call.take() {
            self.outcome = Some(rows.and_then(|rows| {
                let row = rows
                    .first()
                    .ok_or(AppError::Database(rusqlite::Error::QueryReturnedNoRows))?;
                (call.read)(row)
            }));
        }
    }

    fn run(&mut self, conn: &Db) -> bool {
        let Some(call) = self.call.take() else {
            return false;
        };
        let outcome = call.run(conn);
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), String>) {
        drop(self.reply.send(answer(commit, self.outcome)));
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

    /// Runs `call` in the writer's transaction; resolves after the commit.
    pub(super) async fn run_atomic<T: Send + 'static>(&self, call: Atomic<T>) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let request = AtomicRequest {
            call: Some(call),
            outcome: None,
            reply: tx,
        };
        self.jobs
            .send(Box::new(request))
            .map_err(|_| AppError::WriterGone)?;
        rx.await.map_err(|_| AppError::WriterGone)?
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
/// savepoint at all. A run of [`Atomic`] jobs goes out pipelined, in one round trip.
/// Should such a statement fail anyway, the transaction is lost: the batch rolls back,
/// the jobs not yet run are not run, and every job is answered with an error, none
/// acknowledged.
fn run_pg_batch(conn: &mut PgConn, url: &str, batch: &mut [Box<dyn Job>]) -> Result<(), String> {
    if conn.is_closed() {
        // The server restarted or the network dropped: connect again before failing.
        *conn = PgConn::connect(url).map_err(|err| err.to_string())?;
    }
    conn.begin_batch(&format!(
        "BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"
    ));
    let result = (|| -> Result<()> {
        let mut next = 0;
        while next < batch.len() {
            let run = batch[next..]
                .iter()
                .take_while(|job| job.atomic().is_some())
                .count();
            if run > 0 {
                // The batch's last run takes its COMMIT along.
                let last = next + run == batch.len();
                pipeline(conn, &mut batch[next..next + run], last)?;
                next += run;
                continue;
            }
            let job = &mut batch[next];
            next += 1;
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

/// Sends `jobs` (all [`Job::atomic`]) pipelined, with the batch's `COMMIT` when
/// `commit`, and hands each its answer. A failed statement loses the transaction, as an
/// atomic statement's failure does in [`run_pg_batch`].
fn pipeline(conn: &mut PgConn, jobs: &mut [Box<dyn Job>], commit: bool) -> Result<()> {
    let answers = {
        let calls: Vec<(&str, Vec<Param>)> = jobs
            .iter()
            .filter_map(|job| job.atomic())
            .map(|(sql, values)| (sql, values.iter().map(Value::param).collect()))
            .collect();
        let statements: Vec<(&str, &[Param])> = calls
            .iter()
            .map(|(sql, params)| (*sql, params.as_slice()))
            .collect();
        conn.pipeline(&statements, commit)?
    };
    let mut failed = answers.len() != jobs.len();
    for (job, answer) in jobs.iter_mut().zip(answers) {
        failed |= answer.is_err();
        job.answered(answer);
    }
    if failed {
        return Err(AppError::CommitFailed(
            "a request failed outside a savepoint; the batch was rolled back".into(),
        ));
    }
    Ok(())
}
