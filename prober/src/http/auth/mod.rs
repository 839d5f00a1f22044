//! Registry auth, the parts without I/O: challenges, bearer tokens and their cache, and
//! credentials (the client's auth flow, which sends requests, is in `client/auth.rs`).

mod challenge;
mod credentials;
mod token;

pub use challenge::{parse_challenges, Challenge};
pub use credentials::{docker_config_credentials, Credentials};
pub use token::{parse_token_response, repository_scope, token_url, Action, TokenCache, TokenKey};

#[cfg(test)]
mod tests;
