//! Pure types shared by every syncway crate: job statuses and their legal
//! transitions, the wire form of jobs, the queue message format, error
//! categories, connector configurations, entity hashing and schedules.
//!
//! This crate performs no IO (an architectural invariant): it can be used from
//! the API, the worker, the store and tests alike.

pub mod api_key;
pub mod attempts;
pub mod config;
pub mod connection;
pub mod entity;
pub mod error_category;
pub mod job;
pub mod message;
pub mod names;
pub mod schedule;

pub use api_key::KeyRole;
pub use config::{
    ConfigError, ConnectorConfig, HttpJsonConfig, LocalFilesConfig, MysqlConfig, PostgresCdcConfig,
    PostgresConfig, S3Config, StubConfig, StubFailKind, TableConfig,
};
pub use connection::ConnectionStatus;
pub use entity::{ContentHash, canonical_json, content_hash};
pub use error_category::ErrorCategory;
pub use job::{JobStatus, JobTrigger, SourceConnectionJob, UnknownStatus, WaitingReason};
pub use message::{ControlMessage, JobMessage, MessageError, Route};
