//! The timed HTTP layer: connections with DNS, connect and TLS timed (`transport`), TLS
//! settings (`tls`), registry auth (`auth`), where credentials come from (`keychain`: files,
//! Docker configs, credential helpers), requests and the responses they get, what a failed
//! exchange means (`errors`), and the Distribution API client that follows redirects and
//! answers auth challenges (`client`). It records every exchange in a `Transcript` and knows
//! nothing of probes.

pub mod auth;
pub mod client;
pub mod errors;
pub mod keychain;
pub mod request;
pub mod ratelimit;
pub mod response;
pub mod tls;
pub mod transcript;
pub mod transport;
pub mod url;

pub use client::Client;
pub use errors::error_chain;
pub use request::{BodySource, Request};
pub use response::{BodyLimit, Response, MANIFEST_BODY, TAG_LIST_BODY};
pub use transcript::{TokenFetch, Transcript};
pub use url::redact_url;
