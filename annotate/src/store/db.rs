//! One SQL interface over the two backends, so every query of the store is written once.
//!
//! The store's SQL is written in the subset SQLite and PostgreSQL share: `?N` placeholders
//! (rewritten to `$N` for PostgreSQL), `COUNT(*) FILTER (WHERE …)` instead of summing
//! booleans, `RETURNING id` instead of `last_insert_rowid()`, `CAST(?N AS BIGINT)` where a
//! parameter's type cannot be inferred. Parameters are a small closed [`Param`] enum and
//! rows are read into a closed [`Value`] enum, so the two drivers' type systems meet in
//! one place (PostgreSQL is strict: an `i64` must go to a `BIGINT`, a `bool` to a
//! `BOOLEAN`; SQLite stores both as integers).

use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error as StdError;

use postgres::types::{IsNull, ToSql, Type};

use crate::error::{AppError, Result};

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

    fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<postgres::Row>> {
        let statement = self.statement(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        Ok(self.client.query(&statement, &refs)?)
    }

    fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64> {
        let statement = self.statement(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        Ok(self.client.execute(&statement, &refs)?)
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
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => quoted = !quoted,
            '?' if !quoted && chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push('$');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

/// A query parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Param<'a> {
    Null,
    Int(i64),
    Real(f64),
    Bool(bool),
    Text(&'a str),
}

/// What can be passed as a [`Param`] (see the `params!` macro).
pub(crate) trait ToParam {
    fn param(&self) -> Param<'_>;
}

impl ToParam for i64 {
    fn param(&self) -> Param<'_> {
        Param::Int(*self)
    }
}
impl ToParam for u32 {
    fn param(&self) -> Param<'_> {
        Param::Int(i64::from(*self))
    }
}
impl ToParam for f64 {
    fn param(&self) -> Param<'_> {
        Param::Real(*self)
    }
}
impl ToParam for bool {
    fn param(&self) -> Param<'_> {
        Param::Bool(*self)
    }
}
impl ToParam for str {
    fn param(&self) -> Param<'_> {
        Param::Text(self)
    }
}
impl ToParam for String {
    fn param(&self) -> Param<'_> {
        Param::Text(self)
    }
}
impl<T: ToParam> ToParam for Option<T> {
    fn param(&self) -> Param<'_> {
        self.as_ref().map_or(Param::Null, ToParam::param)
    }
}
impl<T: ToParam + ?Sized> ToParam for &T {
    fn param(&self) -> Param<'_> {
        (**self).param()
    }
}

/// `params![a, b, …]`: a slice of [`Param`]s borrowed from the arguments.
macro_rules! params {
    ($($value:expr),* $(,)?) => {
        &[$($crate::store::db::ToParam::param(&$value)),*] as &[$crate::store::db::Param<'_>]
    };
}
pub(crate) use params;

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value as V, ValueRef};
        Ok(match *self {
            Param::Null => ToSqlOutput::Owned(V::Null),
            Param::Int(v) => ToSqlOutput::Owned(V::Integer(v)),
            Param::Real(v) => ToSqlOutput::Owned(V::Real(v)),
            Param::Bool(v) => ToSqlOutput::Owned(V::Integer(i64::from(v))),
            Param::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match (*self, ty) {
            (Param::Null, _) => Ok(IsNull::Yes),
            (Param::Int(v), &Type::INT8) => v.to_sql(ty, out),
            (Param::Int(v), &Type::INT4) => i32::try_from(v)?.to_sql(ty, out),
            (Param::Int(v), &Type::FLOAT8) => (v as f64).to_sql(ty, out),
            (Param::Real(v), &Type::FLOAT8) => v.to_sql(ty, out),
            (Param::Bool(v), &Type::BOOL) => v.to_sql(ty, out),
            (Param::Bool(v), &Type::INT8) => i64::from(v).to_sql(ty, out),
            (Param::Text(s), _) => s.to_sql(ty, out),
            (param, ty) => Err(format!("cannot pass {param:?} as a {ty} parameter").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// One column value of a result row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Bool(bool),
    Text(String),
}

/// A result row, read out of the driver.
#[derive(Debug, Clone)]
pub(crate) struct Row(Vec<Value>);

impl Row {
    /// Column `index` as `T` (`i64`, `u32`, `f64`, `bool`, `String`, or `Option` of one).
    pub(crate) fn get<T: FromValue>(&self, index: usize) -> Result<T> {
        let value = self.0.get(index).cloned().unwrap_or(Value::Null);
        let shown = format!("{value:?}");
        T::from_value(value).ok_or_else(|| {
            AppError::ColumnType(format!(
                "column {index} holds {shown}, expected {}",
                std::any::type_name::<T>()
            ))
        })
    }

    fn from_lite(row: &rusqlite::Row) -> rusqlite::Result<Row> {
        use rusqlite::types::ValueRef;
        let count = row.as_ref().column_count();
        let mut values = Vec::with_capacity(count);
        for index in 0..count {
            values.push(match row.get_ref(index)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(v) => Value::Int(v),
                ValueRef::Real(v) => Value::Real(v),
                ValueRef::Text(t) | ValueRef::Blob(t) => {
                    Value::Text(String::from_utf8_lossy(t).into_owned())
                }
            });
        }
        Ok(Row(values))
    }

    fn from_pg(row: &postgres::Row) -> Result<Row> {
        let mut values = Vec::with_capacity(row.len());
        for (index, column) in row.columns().iter().enumerate() {
            let value = match *column.type_() {
                Type::INT8 => row.try_get::<_, Option<i64>>(index)?.map(Value::Int),
                Type::INT4 => row
                    .try_get::<_, Option<i32>>(index)?
                    .map(|v| Value::Int(v.into())),
                Type::INT2 => row
                    .try_get::<_, Option<i16>>(index)?
                    .map(|v| Value::Int(v.into())),
                Type::FLOAT8 => row.try_get::<_, Option<f64>>(index)?.map(Value::Real),
                Type::BOOL => row.try_get::<_, Option<bool>>(index)?.map(Value::Bool),
                _ => row.try_get::<_, Option<String>>(index)?.map(Value::Text),
            };
            values.push(value.unwrap_or(Value::Null));
        }
        Ok(Row(values))
    }
}

/// A Rust type a column can be read as.
pub(crate) trait FromValue: Sized {
    fn from_value(value: Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(value: Value) -> Option<i64> {
        match value {
            Value::Int(v) => Some(v),
            Value::Bool(v) => Some(i64::from(v)),
            _ => None,
        }
    }
}
impl FromValue for u32 {
    fn from_value(value: Value) -> Option<u32> {
        i64::from_value(value).and_then(|v| u32::try_from(v).ok())
    }
}
impl FromValue for f64 {
    fn from_value(value: Value) -> Option<f64> {
        match value {
            Value::Real(v) => Some(v),
            Value::Int(v) => Some(v as f64),
            _ => None,
        }
    }
}
impl FromValue for bool {
    fn from_value(value: Value) -> Option<bool> {
        match value {
            Value::Bool(v) => Some(v),
            Value::Int(v) => Some(v != 0),
            _ => None,
        }
    }
}
impl FromValue for String {
    fn from_value(value: Value) -> Option<String> {
        match value {
            Value::Text(v) => Some(v),
            _ => None,
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: Value) -> Option<Option<T>> {
        match value {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}

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
                .query(sql, params)?
                .iter()
                .map(Row::from_pg)
                .collect(),
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
            Db::Pg(conn) => conn.borrow_mut().batch(sql),
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
