//! Parameters and column values: the closed types the two drivers' type systems meet in.
//! A [`Param`] converts to what each driver binds (PostgreSQL is strict: an integer goes
//! to a `BIGINT`, a flag to a `BOOLEAN`), and every result row is read into [`Value`]s,
//! so the store reads `i64`, `bool`, `f64` and `String` the same way from both.

use std::error::Error as StdError;

use tokio_postgres::types::{IsNull, ToSql, Type};

use crate::error::{AppError, Result};

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

    tokio_postgres::types::to_sql_checked!();
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

impl Value {
    /// The value as a query parameter.
    pub(crate) fn param(&self) -> Param<'_> {
        match self {
            Value::Null => Param::Null,
            Value::Int(v) => Param::Int(*v),
            Value::Real(v) => Param::Real(*v),
            Value::Bool(v) => Param::Bool(*v),
            Value::Text(s) => Param::Text(s),
        }
    }

    /// `params` owned, to keep beyond the borrow they were made from.
    pub(crate) fn owned(params: &[Param]) -> Vec<Value> {
        params
            .iter()
            .map(|param| match *param {
                Param::Null => Value::Null,
                Param::Int(v) => Value::Int(v),
                Param::Real(v) => Value::Real(v),
                Param::Bool(v) => Value::Bool(v),
                Param::Text(s) => Value::Text(s.to_string()),
            })
            .collect()
    }
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

    pub(super) fn from_lite(row: &rusqlite::Row) -> rusqlite::Result<Row> {
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

    pub(super) fn from_pg(row: &tokio_postgres::Row) -> Result<Row> {
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
