//! The PostgreSQL connection: the sync client, its prepared statements, and the state
//! of the writer's batch transaction on it (what rides along with the next statement).

use std::collections::HashMap;

use postgres::types::ToSql;

use super::{dollar_placeholders, redact, Param};
use crate::error::{AppError, Result};

/// A PostgreSQL connection with its prepared statements (a statement is parsed once per
/// connection, as `prepare_cached` does for SQLite).
pub(crate) struct PgConn {
    client: postgres::Client,
    statements: HashMap<String, postgres::Statement>,
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
        let config: postgres::Config = url.parse().map_err(|source| AppError::PgConnect {
            url: redact(url),
            source,
        })?;
        let mut config = config;
        config.connect_timeout(std::time::Duration::from_secs(10));
        config.application_name("tiller-annotate");
        let mut client = config
            .connect(postgres::NoTls)
            .map_err(|source| AppError::PgConnect {
                url: redact(url),
                source,
            })?;
        // A vote is acknowledged after COMMIT returns: make sure COMMIT waits for the WAL
        // flush even if the server's default says otherwise.
        client.batch_execute("SET synchronous_commit = on")?;
        Ok(PgConn {
            client,
            statements: HashMap::new(),
            batch: None,
        })
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Runs one or more statements without parameters (transaction control, DDL).
    pub(crate) fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.client.batch_execute(sql)?)
    }

    fn statement(&mut self, sql: &str) -> Result<postgres::Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(&dollar_placeholders(sql))?;
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

    /// Ends the batch; returns whether its transaction was ever opened on the server
    /// (false when no job ran a statement: there is nothing to commit).
    pub(crate) fn end_batch(&mut self) -> bool {
        self.batch
            .take()
            .is_some_and(|batch| batch.prelude.is_empty())
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
        if let Err(err) = self.client.batch_execute(&prelude) {
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
    ) -> Result<Vec<postgres::Row>> {
        self.guarded(atomic, |conn| {
            let statement = conn.statement(sql)?;
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            Ok(conn.client.query(&statement, &refs)?)
        })
    }

    pub(super) fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64> {
        self.guarded(false, |conn| {
            let statement = conn.statement(sql)?;
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            Ok(conn.client.execute(&statement, &refs)?)
        })
    }
}
