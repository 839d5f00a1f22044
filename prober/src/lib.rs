//! registry-prober: a synthetic end-to-end prober for OCI container registries.
//!
//! The modules are layers, each importing only from the ones before it (a test holds them to
//! it), and read in this order they follow one probe run:
//! - `oci`: digests, the streaming verifier, the random image of a run;
//! - `outcome`: the closed `Step`, `Reason` and `Phase` sets and the reports a run produces;
//! - `http`: timed connections and the Distribution API client, recording every exchange;
//! - `config`: the YAML as written, validated into what the prober runs on;
//! - `probe`: one run of one target: push, pull and verify, old content, cleanup;
//! - `report`: what runs produced, as text, JSON, metrics, traces and the status page;
//! - `service`: the schedule, reloads and shutdown;
//! - `server`: the HTTP endpoints, reading only `report`;
//! - `cli`: the `registry-prober` command.

pub mod oci;
pub mod outcome;
pub mod http;
pub mod config;
pub mod probe;
pub mod report;
pub mod service;
pub mod server;
pub mod cli;

#[cfg(test)]
mod layers;
