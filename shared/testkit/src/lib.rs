//! In-memory fakes of the `regate-core` ports and shared fixtures, for tests only.
