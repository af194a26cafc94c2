//! One SQL interface over the two backends, so every query of the store is written once.
//!
//! The store's SQL is written in the subset SQLite and PostgreSQL share: `?N` placeholders
//! (rewritten to `$N` for PostgreSQL), `COUNT(*) FILTER (WHERE …)` instead of summing
//! booleans, `RETURNING id` instead of `last_insert_rowid()`, `CAST(?N AS BIGINT)` where a
//! parameter's type cannot be inferred. Parameters are a small closed [`Param`] enum and
//! rows are read into a closed [`values::Value`] enum, so the two drivers' type systems meet in
//! one place (PostgreSQL is strict: an `i64` must go to a `BIGINT`, a `bool` to a
//! `BOOLEAN`; SQLite stores both as integers).

mod values;

use std::cell::RefCell;
use std::collections::HashMap;

use postgres::types::ToSql;

use crate::error::{AppError, Result};
pub(crate) use values::{Param, Row, ToParam};

/// A connection the store's queries run on: borrowed for the length of one request.
pub(crate) enum Db<'a> {
    Lite(&'a rusqlite::Connection),
    Pg(RefCell<&'a mut PgConn>),
}

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
    fn guarded<T>(
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

    fn query(&mut self, sql: &str, params: &[Param], atomic: bool) -> Result<Vec<postgres::Row>> {
        self.guarded(atomic, |conn| {
            let statement = conn.statement(sql)?;
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            Ok(conn.client.query(&statement, &refs)?)
        })
    }

    fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64> {
        self.guarded(false, |conn| {
            let statement = conn.statement(sql)?;
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            Ok(conn.client.execute(&statement, &refs)?)
        })
    }
}

/// The URL without its password, for messages and manifests.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{scheme}://{name}:***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// `?N` → `$N` outside string literals.
fn dollar_placeholders(sql: &str) -> String {
    replace_placeholders(sql, |n| Some(format!("${n}")))
}

/// `?N` → `names[N - 1]` outside string literals: a store query's text inside a
/// PL/pgSQL function, its parameters bound to the function's variables. `None` when
/// the query has a placeholder beyond `names`.
pub(crate) fn named_placeholders(sql: &str, names: &[&str]) -> Option<String> {
    let mut missing = false;
    let out = replace_placeholders(sql, |n| {
        let name = n.checked_sub(1).and_then(|i| names.get(i));
        missing |= name.is_none();
        name.map(|name| name.to_string())
    });
    (!missing).then_some(out)
}

/// Replaces each `?N` outside string literals by `f(N)` (kept as it is where `f`
/// returns `None`).
fn replace_placeholders(sql: &str, mut f: impl FnMut(usize) -> Option<String>) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => quoted = !quoted,
            '?' if !quoted && chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut digits = String::new();
                while let Some(d) = chars.next_if(char::is_ascii_digit) {
                    digits.push(d);
                }
                let replaced = digits.parse().ok().and_then(&mut f);
                out.push_str(&replaced.unwrap_or_else(|| format!("?{digits}")));
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

/// `params![a, b, …]`: a slice of [`Param`]s borrowed from the arguments.
macro_rules! params {
    ($($value:expr),* $(,)?) => {
        &[$($crate::store::db::ToParam::param(&$value)),*] as &[$crate::store::db::Param<'_>]
    };
}
pub(crate) use params;

impl Db<'_> {
    /// Runs a statement; returns how many rows it changed.
    pub(crate) fn execute(&self, sql: &str, params: &[Param]) -> Result<usize> {
        match self {
            Db::Lite(conn) => Ok(conn
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(params))?),
            Db::Pg(conn) => Ok(conn.borrow_mut().execute(sql, params)? as usize),
        }
    }

    /// Every row of a query.
    pub(crate) fn rows(&self, sql: &str, params: &[Param]) -> Result<Vec<Row>> {
        match self {
            Db::Lite(conn) => {
                let mut statement = conn.prepare_cached(sql)?;
                let rows = statement
                    .query_map(rusqlite::params_from_iter(params), Row::from_lite)?
                    .collect::<rusqlite::Result<Vec<Row>>>()?;
                Ok(rows)
            }
            Db::Pg(conn) => conn
                .borrow_mut()
                .query(sql, params, false)?
                .iter()
                .map(Row::from_pg)
                .collect(),
        }
    }

    /// The one row of `sql`, a statement that applies in full or not at all even when
    /// it refuses (a PostgreSQL function that checks before it writes and reports a
    /// refusal in its result): in a write batch on PostgreSQL it runs without a savepoint
    /// of its own, saving a round trip. It must be its job's only statement; should it
    /// fail all the same, the whole batch fails unacknowledged (see `writer`).
    pub(crate) fn atomic_row<T>(
        &self,
        sql: &str,
        params: &[Param],
        f: impl FnOnce(&Row) -> Result<T>,
    ) -> Result<T> {
        match self {
            Db::Lite(_) => self.query_row(sql, params, f),
            Db::Pg(conn) => {
                let rows = conn.borrow_mut().query(sql, params, true)?;
                let row = rows
                    .first()
                    .ok_or(AppError::Database(rusqlite::Error::QueryReturnedNoRows))?;
                f(&Row::from_pg(row)?)
            }
        }
    }

    /// Every row of a query, each mapped by `f`.
    pub(crate) fn query_map<T>(
        &self,
        sql: &str,
        params: &[Param],
        f: impl FnMut(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.rows(sql, params)?.iter().map(f).collect()
    }

    /// The first row of a query mapped by `f`, if there is one.
    pub(crate) fn query_opt<T>(
        &self,
        sql: &str,
        params: &[Param],
        f: impl FnOnce(&Row) -> Result<T>,
    ) -> Result<Option<T>> {
        self.rows(sql, params)?.first().map(f).transpose()
    }

    /// The first row of a query mapped by `f`; no row is an error.
    pub(crate) fn query_row<T>(
        &self,
        sql: &str,
        params: &[Param],
        f: impl FnOnce(&Row) -> Result<T>,
    ) -> Result<T> {
        self.query_opt(sql, params, f)?
            .ok_or(AppError::Database(rusqlite::Error::QueryReturnedNoRows))
    }

    /// Runs an `INSERT` and returns the new row's `id`.
    pub(crate) fn insert(&self, sql: &str, params: &[Param]) -> Result<i64> {
        self.query_row(&format!("{sql} RETURNING id"), params, |row| row.get(0))
    }

    /// Runs `f` on one consistent snapshot of the database (a read transaction).
    pub(crate) fn snapshot<T>(&self, f: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        let (begin, end) = match self {
            Db::Lite(_) => ("BEGIN", "COMMIT"),
            Db::Pg(_) => ("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "COMMIT"),
        };
        self.batch(begin)?;
        let result = f(self);
        let closed = self.batch(if result.is_ok() { end } else { "ROLLBACK" });
        let value = result?;
        closed?;
        Ok(value)
    }

    /// Runs statements without parameters (transaction control, DDL).
    pub(crate) fn batch(&self, sql: &str) -> Result<()> {
        match self {
            Db::Lite(conn) => Ok(conn.execute_batch(sql)?),
            Db::Pg(conn) => conn.borrow_mut().guarded(false, |conn| conn.batch(sql)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_outside_literals_only() {
        assert_eq!(
            dollar_placeholders("SELECT '?1', x FROM t WHERE a = ?1 AND b = ?12 AND c = '?'"),
            "SELECT '?1', x FROM t WHERE a = $1 AND b = $12 AND c = '?'"
        );
        assert_eq!(
            named_placeholders("SELECT ?2, '?1' WHERE a = ?1 OR b = ?2", &["p_a", "p_b"]),
            Some("SELECT p_b, '?1' WHERE a = p_a OR b = p_b".to_string())
        );
        assert_eq!(named_placeholders("SELECT ?3", &["p_a", "p_b"]), None);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:secret@h:5/db"),
            "postgres://u:***@h:5/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn rows_convert_between_the_backends_types() {
        let conn = rusqlite::Connection::open_in_memory().expect("db");
        let db = Db::Lite(&conn);
        let row = db
            .query_row(
                "SELECT ?1, ?2, ?3, ?4, NULL",
                params![7_i64, true, "x", 0.5_f64],
                |row| {
                    Ok((
                        row.get::<i64>(0)?,
                        row.get::<bool>(1)?,
                        row.get::<String>(2)?,
                        row.get::<f64>(3)?,
                        row.get::<Option<i64>>(4)?,
                    ))
                },
            )
            .expect("row");
        assert_eq!(row, (7, true, "x".to_string(), 0.5, None));
        let wrong = db.query_row("SELECT 'text'", params![], |row| row.get::<i64>(0));
        assert!(matches!(wrong, Err(AppError::ColumnType(_))), "{wrong:?}");
    }
}
