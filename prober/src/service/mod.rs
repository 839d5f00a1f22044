//! The service: every target on its schedule, config reloads, and the drain on shutdown.

pub mod schedule;
