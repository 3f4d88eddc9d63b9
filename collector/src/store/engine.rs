//! The one place that knows there are two database engines.
//!
//! Owns the connection pools, transactions and result rows of SQLite and
//! PostgreSQL behind one small surface ([`Pools`], [`Tx`], [`Row`]), and the
//! statements the store runs on them ([`Stmt`]: SQL text with numbered
//! `$n` placeholders, which both engines accept, and its bound values). The
//! store's SQL is written once above this layer; what still differs between
//! the engines is named by [`Dialect`]'s fragments here, the connection
//! settings in `sqlite.rs`/`postgres.rs`, and the batch writes of ingest.
//! It must not decide anything: it runs what it is given.

use std::borrow::Cow;

use sqlx::postgres::{PgPool, PgRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Postgres, Sqlite, Transaction};

use super::StoreError;
pub(crate) use super::fleet_sql::Dialect;
use super::fleet_sql::{Bind, Sql};
use super::rows::{ColumnType, Columns};

impl Dialect {
    /// Text compared and sorted byte by byte: PostgreSQL's default collation
    /// follows the locale, SQLite's is binary already.
    pub(crate) fn binary_collation(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " COLLATE \"C\"",
        }
    }

    /// Locks the rows a read selects until commit. SQLite has no row locks
    /// and needs none: a write transaction holds the database's only write
    /// lock from `BEGIN IMMEDIATE` on.
    pub(crate) fn lock_rows(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " FOR UPDATE",
        }
    }
}

/// A value bound to a placeholder.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'q> {
    Int(Option<i64>),
    Text(Option<&'q str>),
    Bytes(&'q [u8]),
    Bool(bool),
}

impl From<i64> for Value<'_> {
    fn from(value: i64) -> Self {
        Self::Int(Some(value))
    }
}

impl From<Option<i64>> for Value<'_> {
    fn from(value: Option<i64>) -> Self {
        Self::Int(value)
    }
}

impl<'q> From<&'q str> for Value<'q> {
    fn from(value: &'q str) -> Self {
        Self::Text(Some(value))
    }
}

impl<'q> From<&'q String> for Value<'q> {
    fn from(value: &'q String) -> Self {
        Self::Text(Some(value))
    }
}

impl<'q> From<Option<&'q str>> for Value<'q> {
    fn from(value: Option<&'q str>) -> Self {
        Self::Text(value)
    }
}

impl<'q> From<&'q [u8]> for Value<'q> {
    fn from(value: &'q [u8]) -> Self {
        Self::Bytes(value)
    }
}

impl From<bool> for Value<'_> {
    fn from(value: bool) -> Self {
        Self::Bool(value)
    }
}

/// A statement: SQL text with `$1`, `$2`, … and the values bound to them.
#[derive(Debug, Clone)]
pub(crate) struct Stmt<'q> {
    text: Cow<'q, str>,
    binds: Vec<Value<'q>>,
    /// Whether sqlx keeps it prepared: only for fixed text, so statements
    /// whose text varies do not crowd the fixed ones out of the cache.
    persistent: bool,
}

/// A statement with fixed text.
pub(crate) fn stmt(text: &str) -> Stmt<'_> {
    Stmt {
        text: Cow::Borrowed(text),
        binds: Vec::new(),
        persistent: true,
    }
}

/// A statement whose text was put together from fixed fragments (a
/// [`Dialect`] fragment); still cached, as the fragments are few.
pub(crate) fn stmt_from(text: String) -> Stmt<'static> {
    Stmt {
        text: Cow::Owned(text),
        binds: Vec::new(),
        persistent: true,
    }
}

impl<'q> Stmt<'q> {
    pub(crate) fn bind(mut self, value: impl Into<Value<'q>>) -> Self {
        self.binds.push(value.into());
        self
    }

    /// A fleet statement built by `fleet_sql`. Not cached: its text varies
    /// with the filters and the page length.
    pub(crate) fn fleet(sql: &'q Sql) -> Self {
        Self {
            text: Cow::Borrowed(sql.text()),
            binds: sql
                .binds()
                .iter()
                .map(|bind| match bind {
                    Bind::Int(v) => Value::Int(Some(*v)),
                    Bind::Text(v) => Value::Text(Some(v.as_str())),
                })
                .collect(),
            persistent: false,
        }
    }
}

/// The ways to run a statement, named for where it runs: `read_*` on the
/// readers, `write*` as a transaction of its own, the rest inside `tx`.
impl Stmt<'_> {
    pub(crate) async fn read_all(self, pools: &Pools) -> Result<Vec<Row>, StoreError> {
        pools.fetch_all(self).await
    }

    pub(crate) async fn read_optional(self, pools: &Pools) -> Result<Option<Row>, StoreError> {
        pools.fetch_optional(self).await
    }

    pub(crate) async fn read_one(self, pools: &Pools) -> Result<Row, StoreError> {
        pools
            .fetch_optional(self)
            .await?
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
    }

    pub(crate) async fn write(self, pools: &Pools) -> Result<u64, StoreError> {
        pools.write(self).await
    }

    pub(crate) async fn write_returning(self, pools: &Pools) -> Result<Option<Row>, StoreError> {
        pools.write_returning(self).await
    }

    pub(crate) async fn execute(self, tx: &mut Tx) -> Result<u64, StoreError> {
        tx.execute(self).await
    }

    pub(crate) async fn fetch_all(self, tx: &mut Tx) -> Result<Vec<Row>, StoreError> {
        tx.fetch_all(self).await
    }

    pub(crate) async fn fetch_optional(self, tx: &mut Tx) -> Result<Option<Row>, StoreError> {
        tx.fetch_optional(self).await
    }

    pub(crate) async fn fetch_one(self, tx: &mut Tx) -> Result<Row, StoreError> {
        tx.fetch_one(self).await
    }
}

/// Binds a statement's values to a query of either engine (the same code
/// for both; the types differ).
macro_rules! query {
    ($stmt:expr) => {{
        let stmt = $stmt;
        let mut query = sqlx::query(&stmt.text);
        for value in &stmt.binds {
            query = match *value {
                Value::Int(v) => query.bind(v),
                Value::Text(v) => query.bind(v),
                Value::Bytes(v) => query.bind(v),
                Value::Bool(v) => query.bind(v),
            };
        }
        query.persistent(stmt.persistent)
    }};
}

/// A result row of either engine.
pub(crate) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

impl Columns for Row {
    fn value<T: ColumnType>(&self, column: &str) -> Result<T, StoreError> {
        match self {
            Self::Sqlite(row) => row.value(column),
            Self::Postgres(row) => row.value(column),
        }
    }
}

/// The connections of one database.
#[derive(Debug, Clone)]
pub(crate) enum Pools {
    /// One writer connection and a few readers (see `sqlite.rs`).
    Sqlite {
        writer: SqlitePool,
        reader: SqlitePool,
    },
    /// One pool for reads and writes (see `postgres.rs`).
    Postgres(PgPool),
}

/// A transaction of either engine.
pub(crate) enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl Pools {
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Self::Sqlite { .. } => Dialect::Sqlite,
            Self::Postgres(_) => Dialect::Postgres,
        }
    }

    /// A write transaction. SQLite's takes the write lock up front (`BEGIN
    /// IMMEDIATE`), so it never has to upgrade a read lock, which SQLite may
    /// refuse without waiting.
    pub(crate) async fn begin_write(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Self::Sqlite { writer, .. } => Tx::Sqlite(writer.begin_with("BEGIN IMMEDIATE").await?),
            Self::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// A read-only transaction on one snapshot, so the several queries of a
    /// fleet view see the same data. A SQLite read transaction in WAL mode
    /// reads one snapshot already.
    pub(crate) async fn begin_snapshot(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Self::Sqlite { reader, .. } => Tx::Sqlite(reader.begin().await?),
            Self::Postgres(pool) => Tx::Postgres(
                pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .await?,
            ),
        })
    }

    /// Every row of a read.
    pub(crate) async fn fetch_all(&self, stmt: Stmt<'_>) -> Result<Vec<Row>, StoreError> {
        Ok(match self {
            Self::Sqlite { reader, .. } => query!(&stmt)
                .fetch_all(reader)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
            Self::Postgres(pool) => query!(&stmt)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect(),
        })
    }

    /// The first row of a read, if any.
    pub(crate) async fn fetch_optional(&self, stmt: Stmt<'_>) -> Result<Option<Row>, StoreError> {
        Ok(match self {
            Self::Sqlite { reader, .. } => {
                query!(&stmt).fetch_optional(reader).await?.map(Row::Sqlite)
            }
            Self::Postgres(pool) => query!(&stmt).fetch_optional(pool).await?.map(Row::Postgres),
        })
    }

    /// One write statement, committed: on SQLite in a transaction of its own
    /// on the writer, on PostgreSQL on the pool. Returns how many rows it
    /// changed.
    pub(crate) async fn write(&self, stmt: Stmt<'_>) -> Result<u64, StoreError> {
        match self {
            Self::Sqlite { .. } => {
                let mut tx = self.begin_write().await?;
                let affected = tx.execute(stmt).await?;
                tx.commit().await?;
                Ok(affected)
            }
            Self::Postgres(pool) => Ok(query!(&stmt).execute(pool).await?.rows_affected()),
        }
    }

    /// One write statement with `RETURNING`, committed like [`Self::write`];
    /// the row it returned, if any.
    pub(crate) async fn write_returning(&self, stmt: Stmt<'_>) -> Result<Option<Row>, StoreError> {
        match self {
            Self::Sqlite { .. } => {
                let mut tx = self.begin_write().await?;
                let row = tx.fetch_optional(stmt).await?;
                tx.commit().await?;
                Ok(row)
            }
            Self::Postgres(pool) => {
                Ok(query!(&stmt).fetch_optional(pool).await?.map(Row::Postgres))
            }
        }
    }
}

impl Tx {
    pub(crate) async fn fetch_all(&mut self, stmt: Stmt<'_>) -> Result<Vec<Row>, StoreError> {
        Ok(match self {
            Self::Sqlite(tx) => query!(&stmt)
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
            Self::Postgres(tx) => query!(&stmt)
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect(),
        })
    }

    pub(crate) async fn fetch_optional(
        &mut self,
        stmt: Stmt<'_>,
    ) -> Result<Option<Row>, StoreError> {
        Ok(match self {
            Self::Sqlite(tx) => query!(&stmt)
                .fetch_optional(&mut **tx)
                .await?
                .map(Row::Sqlite),
            Self::Postgres(tx) => query!(&stmt)
                .fetch_optional(&mut **tx)
                .await?
                .map(Row::Postgres),
        })
    }

    pub(crate) async fn fetch_one(&mut self, stmt: Stmt<'_>) -> Result<Row, StoreError> {
        self.fetch_optional(stmt)
            .await?
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
    }

    /// Runs a statement; how many rows it changed.
    pub(crate) async fn execute(&mut self, stmt: Stmt<'_>) -> Result<u64, StoreError> {
        Ok(match self {
            Self::Sqlite(tx) => query!(&stmt).execute(&mut **tx).await?.rows_affected(),
            Self::Postgres(tx) => query!(&stmt).execute(&mut **tx).await?.rows_affected(),
        })
    }

    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(tx) => tx.commit().await?,
            Self::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }

    pub(crate) async fn rollback(self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(tx) => tx.rollback().await?,
            Self::Postgres(tx) => tx.rollback().await?,
        }
        Ok(())
    }
}
