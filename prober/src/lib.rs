//! registry-prober: a synthetic end-to-end prober for OCI container registries.
//! Read top to bottom, the modules follow one probe run:
//! config -> schedule -> client (timed HTTP) -> probe::{image, push, pull, cleanup} -> verify
//! -> report::{text, metrics, trace, export, status, health} -> server (HTTP endpoints, reading
//! only `report`).

pub mod client;
pub mod config;
pub mod probe;
pub mod report;
pub mod schedule;
pub mod server;
pub mod verify;
