//! Registry auth, the parts without I/O: challenges, bearer tokens, their requests and their
//! cache, credentials and where a Docker config.json keeps them (the client's auth flow, which
//! sends requests, is in `client/`; running credential helpers is `keychain`'s).

mod challenge;
mod credentials;
mod docker_config;
mod token;

pub use challenge::{parse_challenges, Challenge};
#[cfg(test)]
pub use credentials::unsigned_jwt;
pub use credentials::{token_shape, Credentials, MalformedToken, IDENTITY_TOKEN_USER};
pub use docker_config::{
    helper_server, parse_docker_config, read_capped, read_docker_config, DockerConfigEntry,
    DockerConfigError, MAX_DOCKER_CONFIG_BYTES,
};
pub use token::{
    parse_token_response, repository_scope, token_form, token_url, Action, Grant, TokenCache,
    TokenKey,
};

#[cfg(test)]
mod tests;
