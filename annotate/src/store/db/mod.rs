//! One SQL interface over the two backends, so every query of the store is written once.
//!
//! The store's SQL is written in the subset SQLite and PostgreSQL share: `?N` placeholders
//! (rewritten to `$N` for PostgreSQL), `COUNT(*) FILTER (WHERE …)` instead of summing
//! booleans, `RETURNING id` instead of `last_insert_rowid()`, `CAST(?N AS BIGINT)` where a
//! parameter's type cannot be inferred. Parameters are a small closed [`Param`] enum and
//! rows are read into a closed [`values::Value`] enum, so the two drivers' type systems meet in
//! one place (PostgreSQL is strict: an `i64` must go to a `BIGINT`, a `bool` to a
//! `BOOLEAN`; SQLite stores both as integers).

mod pg;
mod values;

use std::cell::RefCell;

use crate::error::{AppError, Result};
pub(crate) use pg::{JobEnd, PgConn};
pub(crate) use values::{Param, Row, ToParam, Value};

/// A connection the store's queries run on: borrowed for the length of one request.
pub(crate) enum Db<'a> {
    Lite(&'a rusqlite::Connection),
    Pg(RefCell<&'a mut PgConn>),
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
