//! The timed HTTP layer: connections with DNS, connect and TLS timed (`transport`), TLS
//! settings (`tls`), registry auth (`auth`), the registry's error envelope (`response`), and the
//! Distribution API client that follows redirects and answers auth challenges (`client`). It
//! returns responses and records every exchange; it knows nothing of probes.

pub mod auth;
pub mod client;
pub mod response;
pub mod tls;
pub mod transport;

pub use client::{
    error_chain, redact_url, BodySource, Client, Request, Response, Transcript, MAX_MANIFEST_BYTES,
};
