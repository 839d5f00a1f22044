//! The service: every target on its schedule (`schedule`), confirmation runs after a failed run
//! (`confirm`), the finished runs handed to every sink (`sinks`), config reloads and the drain
//! on shutdown (`reload`).

mod confirm;
pub mod reload;
pub mod schedule;
pub mod sinks;
