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

/// Whether a driver error without a SQLSTATE is the connection failing.
fn connection_failed(error: &tokio_postgres::Error) -> bool {
    use std::error::Error as _;
    if error.is_closed() {
        return true;
    }
    if error
        .source()
        .is_some_and(|source| source.downcast_ref::<std::io::Error>().is_some())
    {
        return true;
    }
    let text = error.to_string();
    ["error connecting", "timeout", "error communicating", "TLS"]
        .iter()
        .any(|sign| text.contains(sign))
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

    /// True when trying again later can succeed: the database could not be
    /// reached or went away, or the statement lost a race it may win next
    /// time (a serialization failure or deadlock, class 40; a lock not
    /// granted within `lock_timeout`, 55P03; a statement cancelled by
    /// `statement_timeout`, 57014). The caller should answer 503 or retry
    /// with a backoff, not report a bug.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Pool(deadpool_postgres::PoolError::Timeout(_)) => true,
            StoreError::Pool(deadpool_postgres::PoolError::Closed) => true,
            _ => match self.db_error() {
                Some(error) => match error.code() {
                    // Class 08: connection exceptions; 57P01-03: shutdown;
                    // 53xxx: out of connections or resources; 40xxx,
                    // 55P03, 57014: lost a race or a timeout (above).
                    Some(code) => {
                        let code = code.code();
                        code.starts_with("08")
                            || code.starts_with("53")
                            || code.starts_with("40")
                            || *code == *SqlState::LOCK_NOT_AVAILABLE.code()
                            || *code == *SqlState::QUERY_CANCELED.code()
                            || *code == *SqlState::ADMIN_SHUTDOWN.code()
                            || *code == *SqlState::CRASH_SHUTDOWN.code()
                            || *code == *SqlState::CANNOT_CONNECT_NOW.code()
                    }
                    // No SQLSTATE: the connection failed (IO, closed,
                    // timed out, TLS) -- or the statement itself is wrong:
                    // a value the driver cannot encode, a column it cannot
                    // decode. Those fail the same way every time, so they
                    // are errors, never an outage to wait out.
                    None => connection_failed(error),
                },
                None => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_value_the_driver_cannot_encode_is_no_outage() {
        // A parameter of the wrong type fails in the driver, before the
        // statement runs.
        // The tests' server (scripts/test names it when it needs a login),
        // its database `postgres`.
        let server = std::env::var("SYNCWAY_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let url = match server.rsplit_once('/') {
            Some((server, _)) => format!("{server}/postgres"),
            None => server,
        };
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("the test Postgres (scripts/services starts it)");
        tokio::spawn(connection);
        let error = client
            .query("SELECT $1::int8", &[&1i32])
            .await
            .map(|_| ())
            .expect_err("an i32 is no int8");
        assert!(!StoreError::Db(error).is_unavailable());
        let refused = tokio_postgres::connect(
            "postgres://postgres@127.0.0.1:1/none",
            tokio_postgres::NoTls,
        )
        .await
        .map(|_| ())
        .expect_err("nothing listens on port 1");
        assert!(StoreError::Db(refused).is_unavailable());
        // Lost races and timeouts are tried again; a broken statement is not.
        for (code, again) in [
            ("40001", true),
            ("40P01", true),
            ("55P03", true),
            ("57014", true),
            ("23505", false),
            ("42703", false),
        ] {
            let raised = client
                .batch_execute(&format!(
                    "DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '{code}'; END $$"
                ))
                .await
                .expect_err("the block raises");
            assert_eq!(StoreError::Db(raised).is_unavailable(), again, "{code}");
        }
        // A real statement timeout, too.
        let timed_out = client
            .batch_execute("SET statement_timeout = '10ms'; SELECT pg_sleep(1)")
            .await
            .expect_err("the sleep outlasts the timeout");
        assert!(StoreError::Db(timed_out).is_unavailable());
    }
}
