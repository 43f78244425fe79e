//! regate's integration and end-to-end tests against the local stack (`infra/local/stack up`),
//! one binary with a module per topic (ripgrep's `tests/tests.rs` pattern). Shared helpers are
//! in `support/` and in `regate-testkit`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod decision_log;
mod direct;
mod faults;
mod identity;
mod inbox;
mod local_stack;
mod metrics;
mod pending_store;
mod slack_api;
mod task_tokens;
mod teams;
mod teams_api;
mod time;
mod workflow;
