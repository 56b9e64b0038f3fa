#![allow(clippy::unwrap_used, clippy::expect_used)]
//! syncway's integration tests, against the real Postgres and RabbitMQ.
//!
//! Every test gets its own database and its own AMQP namespace (see
//! [`harness`]), so tests run in parallel and leave nothing behind.

mod harness;

mod api_errors;
mod api_keys;
mod audit_log;
mod broker_behaviour;
mod bulk_search;
mod cdc_source;
mod chaos;
mod cli;
mod cli_steering;
mod cli_webhooks;
mod commit_statement;
mod concurrency;
mod connections;
mod console;
mod console_http;
mod console_member;
mod console_steps;
mod containment;
mod delivery;
mod dev_setup;
mod events;
mod faults;
mod fencing;
mod fuzz;
mod fuzz_regressions;
mod hardening;
mod history;
mod hot_updates;
mod http_json_source;
mod lifecycle;
mod limits;
mod local_files_source;
mod mass_deletion;
mod memory_budget;
mod mysql_source;
mod nul_input;
mod openapi;
mod operations;
mod outage;
mod partitions;
mod postgres_source;
mod public_edges;
mod relays;
mod retention;
mod s3_source;
mod schedule_api;
mod schedules;
mod sdk;
mod secrets;
mod seen_sets;
mod source_egress;
mod steering;
mod steering_limits;
mod sync_semantics;
mod tenancy;
mod trigger_path;
mod webhooks;
