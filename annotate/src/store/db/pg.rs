//! The PostgreSQL connection: a blocking client over `tokio_postgres` on a runtime of its
//! own, its prepared statements, and the state of the writer's batch transaction on it
//! (what rides along with the next statement).
//!
//! Blocking, because the store's writer is a thread of its own (`writer`); over
//! `tokio_postgres` directly rather than the `postgres` crate's wrapper of it, because the
//! writer pipelines a batch's atomic statements ([`PgConn::pipeline`]), which only the
//! async client can do: every statement is sent before the first answer is read.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use tokio_postgres::types::ToSql;

use super::{dollar_placeholders, redact, Param, Row};
use crate::error::{AppError, Result};

/// A PostgreSQL connection with its prepared statements (a statement is parsed once per
/// connection, as `prepare_cached` does for SQLite).
pub(crate) struct PgConn {
    /// Runs the connection's I/O task, only while a call below waits on it.
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
    statements: HashMap<String, tokio_postgres::Statement>,
    /// The writer's batch in progress on this connection; `None` outside one.
    batch: Option<WriteBatch>,
}

/// A write batch's transaction state on the writer's connection. Transaction control
/// (`BEGIN`, the advisory lock, savepoints) waits in `prelude` and goes out with the
/// next statement, so it costs no round trip of its own; a job takes a savepoint only
/// when it runs an ordinary statement, and a job whose only statement is
/// [`Db::atomic_row`] takes none.
#[derive(Default)]
struct WriteBatch {
    /// Statements without parameters to send before the next statement.
    prelude: String,
    /// Whether savepoint `request` exists (made for this job or an earlier one).
    savepoint: bool,
    /// Whether the current job's statements run under its own savepoint.
    guarded: bool,
    /// A statement failed outside a savepoint of its job: the transaction is aborted.
    aborted: bool,
    /// The transaction's COMMIT went out with a pipeline and succeeded.
    committed: bool,
}

/// How a job left the batch's transaction (see [`PgConn::end_job`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobEnd {
    /// Its statements ran under its own savepoint: a failure rolls back to it.
    Guarded,
    /// It ran no statement, or atomic ones only: there is nothing to undo.
    Unguarded,
    /// A statement failed outside a savepoint: the whole transaction is lost.
    Aborted,
}

/// How many prepared statements a PostgreSQL connection keeps (the store has ~100).
const MAX_STATEMENTS: usize = 256;

impl PgConn {
    /// Connects to `url` (`postgres://USER@HOST[:PORT]/DB`). No TLS: use a loopback or
    /// private network, or a local socket.
    pub(crate) fn connect(url: &str) -> Result<PgConn> {
        let connect_error = |source| AppError::PgConnect {
            url: redact(url),
            source,
        };
        let mut config: tokio_postgres::Config = url.parse().map_err(connect_error)?;
        config.connect_timeout(std::time::Duration::from_secs(10));
        config.application_name("tiller-annotate");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| AppError::io("starting the PostgreSQL client's runtime", err))?;
        let (client, connection) = runtime
            .block_on(config.connect(tokio_postgres::NoTls))
            .map_err(connect_error)?;
        // The I/O task ends when the server closes the connection (`is_closed` then
        // says so) or when the client is dropped.
        runtime.spawn(connection);
        let mut conn = PgConn {
            runtime,
            client,
            statements: HashMap::new(),
            batch: None,
        };
        // A vote is acknowledged after COMMIT returns: make sure COMMIT waits for the WAL
        // flush even if the server's default says otherwise.
        conn.batch("SET synchronous_commit = on")?;
        Ok(conn)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Runs one or more statements without parameters (transaction control, DDL).
    pub(crate) fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.runtime.block_on(self.client.batch_execute(sql))?)
    }

    fn statement(&mut self, sql: &str) -> Result<tokio_postgres::Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self
            .runtime
            .block_on(self.client.prepare(&dollar_placeholders(sql)))?;
        if self.statements.len() >= MAX_STATEMENTS {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    /// Starts a write batch: `prelude` (its `BEGIN` and lock) goes out with the first
    /// statement.
    pub(crate) fn begin_batch(&mut self, prelude: &str) {
        self.batch = Some(WriteBatch {
            prelude: prelude.to_string(),
            ..WriteBatch::default()
        });
    }

    /// Starts the next job of the batch.
    pub(crate) fn begin_job(&mut self) {
        if let Some(batch) = &mut self.batch {
            batch.guarded = false;
        }
    }

    /// How the job since [`PgConn::begin_job`] left the transaction.
    pub(crate) fn end_job(&self) -> JobEnd {
        match &self.batch {
            Some(batch) if batch.aborted => JobEnd::Aborted,
            Some(batch) if batch.guarded => JobEnd::Guarded,
            _ => JobEnd::Unguarded,
        }
    }

    /// Ends the batch; returns whether its transaction is still open on the server
    /// (false when no job ran a statement, or a pipeline committed it already).
    pub(crate) fn end_batch(&mut self) -> bool {
        self.batch
            .take()
            .is_some_and(|batch| batch.prelude.is_empty() && !batch.committed)
    }

    /// Before a job's statement: sends the pending transaction control, with a fresh
    /// savepoint for the job first unless the statement is `atomic` (applies in full or
    /// not at all) or the job already has one.
    fn before_statement(&mut self, atomic: bool) -> Result<()> {
        let Some(batch) = &mut self.batch else {
            return Ok(());
        };
        if !atomic && !batch.guarded {
            let sep = if batch.prelude.is_empty() { "" } else { "; " };
            let savepoint = if batch.savepoint {
                "RELEASE request; SAVEPOINT request"
            } else {
                "SAVEPOINT request"
            };
            batch.prelude = format!("{}{sep}{savepoint}", batch.prelude);
            batch.savepoint = true;
            batch.guarded = true;
        }
        if batch.prelude.is_empty() {
            return Ok(());
        }
        let prelude = std::mem::take(&mut batch.prelude);
        if let Err(err) = self.runtime.block_on(self.client.batch_execute(&prelude)) {
            batch.aborted = true;
            return Err(err.into());
        }
        Ok(())
    }

    /// Runs `statement` as a job's statement (see [`PgConn::before_statement`]); a
    /// failure outside the job's savepoint marks the batch aborted.
    pub(super) fn guarded<T>(
        &mut self,
        atomic: bool,
        statement: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        self.before_statement(atomic)?;
        let result = statement(self);
        if let (Err(_), Some(batch)) = (&result, &mut self.batch) {
            if !batch.guarded {
                batch.aborted = true;
            }
        }
        result
    }

    pub(super) fn query(
        &mut self,
        sql: &str,
        params: &[Param],
        atomic: bool,
    ) -> Result<Vec<tokio_postgres::Row>> {
        self.guarded(atomic, |conn| {
            let statement = conn.statement(sql)?;
            let refs = refs(params);
            Ok(conn
                .runtime
                .block_on(conn.client.query(&statement, &refs))?)
        })
    }

    pub(super) fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64> {
        self.guarded(false, |conn| {
            let statement = conn.statement(sql)?;
            let refs = refs(params);
            Ok(conn
                .runtime
                .block_on(conn.client.execute(&statement, &refs))?)
        })
    }

    /// Runs atomic statements (as [`Db::atomic_row`](super::Db::atomic_row) does) one
    /// after another, pipelined: the batch's pending `BEGIN` and lock, every statement
    /// and, with `commit`, the `COMMIT` are all sent, in order, before the first answer
    /// is read, so the server runs them back to back (holding the write lock no longer
    /// than it works) and the batch pays one round trip instead of one each. The
    /// statements' results come back in their order. A statement that fails marks the
    /// batch aborted (the server then refuses the ones after it, and the `COMMIT`
    /// becomes a rollback). `Err` when the `BEGIN`, the lock or the `COMMIT` failed:
    /// nothing of the batch is committed then.
    pub(crate) fn pipeline(
        &mut self,
        statements: &[(&str, &[Param])],
        commit: bool,
    ) -> Result<Vec<Result<Vec<Row>>>> {
        let prelude = match &mut self.batch {
            Some(batch) => std::mem::take(&mut batch.prelude),
            None => String::new(),
        };
        let prepared: Vec<Result<tokio_postgres::Statement>> = statements
            .iter()
            .map(|(sql, _)| self.statement(sql))
            .collect();
        let refs: Vec<Vec<&(dyn ToSql + Sync)>> = statements.iter().map(|(_, p)| refs(p)).collect();
        let client = &self.client;
        let begins = !prelude.is_empty();
        let mut calls: Vec<Option<Call>> = Vec::with_capacity(statements.len() + 2);
        if begins {
            calls.push(Some(Box::pin(async move {
                client.batch_execute(&prelude).await.map(|()| Vec::new())
            })));
        }
        for (statement, refs) in prepared.iter().zip(&refs) {
            calls.push(
                statement
                    .as_ref()
                    .ok()
                    .map(|statement| Box::pin(client.query(statement, refs)) as Call<'_>),
            );
        }
        if commit {
            calls.push(Some(Box::pin(async move {
                client.batch_execute("COMMIT").await.map(|()| Vec::new())
            })));
        }
        let mut answers: Vec<Option<PgRows>> = calls.iter().map(|_| None).collect();
        // Polled in order, so the first poll sends every call in order.
        self.runtime.block_on(std::future::poll_fn(|cx| {
            let mut waiting = false;
            for (call, answer) in calls.iter_mut().zip(answers.iter_mut()) {
                let Some(future) = call else { continue };
                match future.as_mut().poll(cx) {
                    Poll::Ready(result) => {
                        *answer = Some(result);
                        *call = None;
                    }
                    Poll::Pending => waiting = true,
                }
            }
            if waiting {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        }));
        drop(calls);
        let mut answers = answers.into_iter();
        let control = |answer: Option<Option<PgRows>>| -> Result<()> {
            answer.flatten().ok_or(AppError::WriterGone)??;
            Ok(())
        };
        let begun = if begins {
            control(answers.next())
        } else {
            Ok(())
        };
        let results: Vec<Result<Vec<Row>>> = prepared
            .into_iter()
            .zip(answers.by_ref())
            .map(|(statement, answer)| {
                statement?;
                let rows = answer.ok_or(AppError::WriterGone)??;
                rows.iter().map(Row::from_pg).collect()
            })
            .collect();
        let committed = if commit {
            control(answers.next())
        } else {
            Ok(())
        };
        let failed = begun.is_err() || results.iter().any(Result::is_err);
        if let Some(batch) = &mut self.batch {
            batch.aborted |= failed;
            batch.committed = commit && !failed && committed.is_ok();
        }
        begun?;
        committed?;
        Ok(results)
    }
}

/// A query's rows as the client answers them.
type PgRows = std::result::Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>;

/// A pipelined call in flight on the client (a query, or `BEGIN`/`COMMIT` with no rows).
type Call<'q> = Pin<Box<dyn Future<Output = PgRows> + 'q>>;

/// The parameters as the client takes them.
fn refs<'p>(params: &'p [Param]) -> Vec<&'p (dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}
