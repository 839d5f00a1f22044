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

pub(crate) mod oci;
pub(crate) mod outcome;
pub(crate) mod http;
pub(crate) mod config;
pub(crate) mod probe;
pub(crate) mod report;
pub(crate) mod service;
pub(crate) mod server;
pub(crate) mod cli;

// What is used from outside the crate: the binary's entry point, and what the end-to-end
// tests (a resolver hook for the dns phase), the hashing benchmark and the pool spike
// (bench/poolspike: the timed transport side by side with hyper-util's pooled client) plug into.
pub use cli::main;
pub use config::{RawConfig, Target};
pub use http::transport::{ConnTiming, ReqBody, Resolve, Transport, TransportError};
pub use oci::digest::{Digest, Verifier};
pub use outcome::{HttpRecord, Phase, RunReport};
pub use probe::Prober;

#[cfg(test)]
mod layers;
#[cfg(test)]
mod proptests;
