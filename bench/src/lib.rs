//! What the benchmarks of `bench/` share: OPA loaded in process, percentiles, and the tables
//! `bench/run.sh` writes into `BENCHMARKS.md`.

pub mod opa;
pub mod stats;
