//! The store's error type, with the questions callers need answered about it:
//! which constraint was violated, and is the database unavailable (503) rather
//! than broken (500)?

use tokio_postgres::error::SqlState;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Db(#[from] tokio_postgres::Error),
    #[error("no database connection available")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("could not create the database pool")]
    CreatePool(#[from] deadpool_postgres::CreatePoolError),
    #[error("migrations failed")]
    Migrate(#[from] refinery::Error),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

impl StoreError {
    fn db_error(&self) -> Option<&tokio_postgres::Error> {
        match self {
            StoreError::Db(error) => Some(error),
            StoreError::Pool(deadpool_postgres::PoolError::Backend(error)) => Some(error),
            _ => None,
        }
    }

    /// The violated constraint (or unique index) name, if this is a
    /// constraint violation.
    pub fn constraint(&self) -> Option<&str> {
        self.db_error()?.as_db_error()?.constraint()
    }

    /// True when the database could not be reached or went away: the caller
    /// should answer 503 and try again later, not report a bug.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Pool(deadpool_postgres::PoolError::Timeout(_)) => true,
            StoreError::Pool(deadpool_postgres::PoolError::Closed) => true,
            _ => match self.db_error() {
                Some(error) => match error.code() {
                    // Class 08: connection exceptions; 57P01-03: shutdown;
                    // 53xxx: out of connections or resources.
                    Some(code) => {
                        let code = code.code();
                        code.starts_with("08")
                            || code.starts_with("53")
                            || *code == *SqlState::ADMIN_SHUTDOWN.code()
                            || *code == *SqlState::CRASH_SHUTDOWN.code()
                            || *code == *SqlState::CANNOT_CONNECT_NOW.code()
                    }
                    // No SQLSTATE: IO error, closed connection, timeout.
                    None => true,
                },
                None => false,
            },
        }
    }
}
