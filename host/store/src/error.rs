//! The store's one error type: what a caller can act on (invalid input, missing or existing
//! resources, refusals) apart from what it cannot (SQLite failures, corrupt data).

use allpeers_model::query::QueryError;
use allpeers_model::resource::ValidationErrors;
use allpeers_model::schema::SchemaError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid resource: {0}")]
    Invalid(#[from] ValidationErrors),
    #[error("schema refused: {0}")]
    Schema(#[from] SchemaError),
    #[error("invalid query: {0}")]
    Query(#[from] QueryError),
    #[error("no resource with id {0}")]
    NotFound(String),
    #[error("a resource with id {0} already exists")]
    Exists(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("adapter for {type_name} refused the resource: {reason}")]
    Adapter { type_name: String, reason: String },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The operating system refused something the store needs besides SQLite (a thread, a
    /// path).
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;
