//! The service: every target on its schedule (`schedule`), the finished runs handed to every
//! sink (`sinks`), config reloads and the drain on shutdown (`reload`).

pub mod reload;
pub mod schedule;
pub mod sinks;
