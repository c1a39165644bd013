//! The PostgreSQL destination (Aurora PostgreSQL, and Redshift through its PostgreSQL wire
//! protocol): `postgres://USER:PASSWORD@HOST:PORT/DB#table=TABLE&columns=COLUMN[:FIELD];...`.
//!
//! Each output, a JSON object, becomes one row of `TABLE` (`schema.table` allowed): column
//! `COLUMN` gets the output's top-level field `FIELD` (the column's own name when `:FIELD` is
//! left out), converted by PostgreSQL from text to the column's type (strings as they are,
//! numbers and booleans as their JSON text, objects and arrays as JSON text for `json`/`jsonb`
//! columns, missing fields and `null` as SQL `NULL`). `#key_column=NAME` (default `key`)
//! receives the output's content key and the insert is `ON CONFLICT (NAME) DO NOTHING`, so a
//! replayed record adds no row; the column needs a unique index. `#key_column=` (empty) turns
//! that off, for Redshift, which has no `ON CONFLICT`: replays then add rows again.
//!
//! A batch is one transaction of multi-row `INSERT`s (up to 500 rows each). When a row breaks
//! a constraint or does not convert (SQLSTATE classes 22 and 23), the batch is written again
//! row by row, each under a savepoint, so exactly the bad rows fail. Connection failures,
//! serialization failures and deadlocks are retried with backoff until the deadline.
//! Connections come from a small pool built at start-up and opened on first use, so a
//! database that is down fails deliveries, not start-up. The connection URL's own parameters
//! (`connect_timeout`, ...) follow tokio-postgres; TLS is not supported yet (plain TCP only).

use super::{BoxFuture, DeliveryError, Destination, Envelope, Options, all_failed, backoff};
use anyhow::{Context, Result, bail};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde_json::Value;
use std::str::FromStr as _;
use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

/// Rows per `INSERT` statement (PostgreSQL allows 65535 parameters per statement).
const ROWS_PER_STATEMENT: usize = 500;

/// Inserts each output as one row of a table.
#[derive(Debug)]
pub struct PostgresDestination {
    pool: Pool,
    /// The table, quoted: `"schema"."table"`.
    table: String,
    /// Quoted column names and the JSON fields they take.
    columns: Vec<(String, String)>,
    /// The quoted column receiving the content key, if any.
    key_column: Option<String>,
    /// The types of the written columns (parameters are cast to them), looked up on first use.
    types: tokio::sync::OnceCell<Vec<String>>,
}

/// Quotes an SQL identifier.
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

impl PostgresDestination {
    /// Parses the URL and options and builds the pool (no connection is made here).
    pub(crate) fn new(target: &str, mut options: Options) -> Result<Self> {
        let mut config = tokio_postgres::Config::from_str(target)
            .map_err(|e| anyhow::anyhow!("postgres URL: {e}"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        let table = options
            .take("table")
            .filter(|t| !t.is_empty())
            .context("postgres target needs #table=TABLE")?;
        let columns_spec = options
            .take("columns")
            .context("postgres target needs #columns=COLUMN[:FIELD];...")?;
        let mut columns = Vec::new();
        for entry in columns_spec
            .split(';')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (column, field) = entry.split_once(':').unwrap_or((entry, entry));
            let (column, field) = (column.trim(), field.trim());
            if column.is_empty() || field.is_empty() {
                bail!("postgres option columns: entry {entry:?} is not COLUMN[:FIELD]");
            }
            columns.push((quote(column), field.to_string()));
        }
        if columns.is_empty() {
            bail!("postgres option columns names no column");
        }
        let key_column = match options.take("key_column") {
            None => Some(quote("key")),
            Some(name) if name.trim().is_empty() => None,
            Some(name) => Some(quote(name.trim())),
        };
        options.finish()?;
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(4)
            .build()
            .context("building the postgres pool")?;
        Ok(PostgresDestination {
            pool,
            table: table.split('.').map(quote).collect::<Vec<_>>().join("."),
            columns,
            key_column,
            types: tokio::sync::OnceCell::new(),
        })
    }

    /// The text values of one row (mapped columns, then the key), or why there is none.
    fn row(&self, item: &Envelope) -> Result<Vec<Option<String>>, String> {
        let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&item.data) else {
            return Err("a row must come from a JSON object".into());
        };
        let mut row: Vec<Option<String>> = self
            .columns
            .iter()
            .map(|(_, field)| match fields.get(field) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => Some(other.to_string()),
            })
            .collect();
        if self.key_column.is_some() {
            row.push(Some(item.key.clone()));
        }
        Ok(row)
    }

    /// The quoted columns written, in parameter order.
    fn column_names(&self) -> impl Iterator<Item = &String> {
        self.columns.iter().map(|(c, _)| c).chain(&self.key_column)
    }

    /// The types of the written columns, from the catalog.
    async fn lookup_types(&self, client: &tokio_postgres::Client) -> Result<Vec<String>, Failure> {
        let rows = client
            .query(
                "SELECT attname::text, format_type(atttypid, NULL) FROM pg_attribute \
                 WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped",
                &[&self.table],
            )
            .await
            .map_err(|e| {
                Failure::classify(&format!("looking up the columns of {}", self.table), &e)
            })?;
        self.column_names()
            .map(|column| {
                rows.iter()
                    .find(|r| quote(r.get(0)) == *column)
                    .map(|r| r.get::<_, String>(1))
                    .ok_or_else(|| {
                        Failure::Final(format!("table {} has no column {column}", self.table))
                    })
            })
            .collect()
    }

    /// The `INSERT` statement for `rows` rows.
    fn statement(&self, types: &[String], rows: usize) -> String {
        let columns: Vec<&str> = self.column_names().map(String::as_str).collect();
        let width = columns.len();
        let values: Vec<String> = (0..rows)
            .map(|r| {
                let row: Vec<String> = types
                    .iter()
                    .enumerate()
                    .map(|(c, ty)| format!("${}::text::{ty}", r * width + c + 1))
                    .collect();
                format!("({})", row.join(", "))
            })
            .collect();
        let conflict = self
            .key_column
            .as_ref()
            .map(|k| format!(" ON CONFLICT ({k}) DO NOTHING"))
            .unwrap_or_default();
        format!(
            "INSERT INTO {} ({}) VALUES {}{conflict}",
            self.table,
            columns.join(", "),
            values.join(", ")
        )
    }

    /// Writes `rows` (indices into `values`) in one transaction.
    async fn insert_all(
        &self,
        client: &mut tokio_postgres::Client,
        types: &[String],
        values: &[Result<Vec<Option<String>>, String>],
        rows: &[usize],
    ) -> Result<(), tokio_postgres::Error> {
        let transaction = client.transaction().await?;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let params: Vec<&(dyn ToSql + Sync)> = chunk
                .iter()
                .filter_map(|&i| values[i].as_ref().ok())
                .flatten()
                .map(|v| v as &(dyn ToSql + Sync))
                .collect();
            transaction
                .execute(&self.statement(types, chunk.len()), &params)
                .await?;
        }
        transaction.commit().await
    }

    /// Writes `rows` one by one under savepoints in one transaction: each row's own result.
    async fn insert_each(
        &self,
        client: &mut tokio_postgres::Client,
        types: &[String],
        values: &[Result<Vec<Option<String>>, String>],
        rows: &[usize],
    ) -> Result<Vec<Result<(), String>>, tokio_postgres::Error> {
        let mut transaction = client.transaction().await?;
        let statement = transaction.prepare(&self.statement(types, 1)).await?;
        let mut results = Vec::with_capacity(rows.len());
        for &i in rows {
            let params: Vec<&(dyn ToSql + Sync)> = values[i]
                .as_ref()
                .map(|row| row.iter().map(|v| v as &(dyn ToSql + Sync)).collect())
                .unwrap_or_default();
            let savepoint = transaction.savepoint("row").await?;
            match savepoint.execute(&statement, &params).await {
                Ok(_) => {
                    savepoint.commit().await?;
                    results.push(Ok(()));
                }
                Err(e) if is_bad_row(&e) => {
                    savepoint.rollback().await?;
                    results.push(Err(format!(
                        "inserting into {}: {}",
                        self.table,
                        db_message(&e)
                    )));
                }
                Err(e) => return Err(e),
            }
        }
        transaction.commit().await?;
        Ok(results)
    }

    /// One attempt at the whole delivery.
    async fn attempt(
        &self,
        values: &[Result<Vec<Option<String>>, String>],
        rows: &[usize],
    ) -> Result<Vec<Result<(), String>>, Failure> {
        let mut client = self.pool.get().await.map_err(|e| {
            Failure::Transient(format!(
                "connecting to PostgreSQL: {}",
                super::sdk_error(&e)
            ))
        })?;
        let types = self
            .types
            .get_or_try_init(|| self.lookup_types(&client))
            .await?;
        let client: &mut tokio_postgres::Client = &mut client;
        match self.insert_all(client, types, values, rows).await {
            Ok(()) => Ok(vec![Ok(()); rows.len()]),
            Err(e) if is_bad_row(&e) => self
                .insert_each(client, types, values, rows)
                .await
                .map_err(|e| Failure::classify(&format!("inserting into {}", self.table), &e)),
            Err(e) => Err(Failure::classify(
                &format!("inserting into {}", self.table),
                &e,
            )),
        }
    }
}

/// Why an attempt wrote nothing.
#[derive(Debug)]
enum Failure {
    /// Worth another attempt: the connection or the transaction's luck may change.
    Transient(String),
    /// Would fail again.
    Final(String),
}

impl Failure {
    fn classify(what: &str, e: &tokio_postgres::Error) -> Failure {
        let message = format!("{what}: {}", db_message(e));
        let transient = match e.code() {
            None => true, // the connection itself failed
            Some(code) => {
                *code == SqlState::T_R_SERIALIZATION_FAILURE
                    || *code == SqlState::T_R_DEADLOCK_DETECTED
                    || code.code().starts_with("08")
                    || code.code().starts_with("57P")
            }
        };
        if transient {
            Failure::Transient(message)
        } else {
            Failure::Final(message)
        }
    }
}

/// Whether the error is about the data of a row (SQLSTATE class 22 or 23).
fn is_bad_row(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("23"))
}

/// The server's message when there is one (tokio-postgres' own `Display` says only "db error").
fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => super::sdk_error(e),
    }
}

impl Destination for PostgresDestination {
    fn deliver<'a>(
        &'a self,
        items: &'a [Envelope],
        deadline: Instant,
    ) -> BoxFuture<'a, Vec<Result<(), DeliveryError>>> {
        Box::pin(async move {
            let values: Vec<Result<Vec<Option<String>>, String>> =
                items.iter().map(|i| self.row(i)).collect();
            let rows: Vec<usize> = (0..items.len()).filter(|&i| values[i].is_ok()).collect();
            let mut results = all_failed(items.len(), "not written");
            for (i, row) in values.iter().enumerate() {
                if let Err(message) = row {
                    results[i] = Err(DeliveryError::new(message.clone()));
                }
            }
            if rows.is_empty() {
                return results;
            }
            let mut attempt = 0;
            let written = loop {
                match self.attempt(&values, &rows).await {
                    Ok(written) => break Ok(written),
                    Err(Failure::Final(message)) => break Err(message),
                    Err(Failure::Transient(message)) => {
                        attempt += 1;
                        if attempt >= 3 || !backoff(attempt, deadline).await {
                            break Err(message);
                        }
                    }
                }
            };
            match written {
                Ok(written) => {
                    for (&i, result) in rows.iter().zip(written) {
                        results[i] = result.map_err(DeliveryError::new);
                    }
                }
                Err(message) => {
                    for &i in &rows {
                        results[i] = Err(DeliveryError::new(message.clone()));
                    }
                }
            }
            results
        })
    }
}
