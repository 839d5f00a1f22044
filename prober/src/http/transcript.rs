//! What a step's requests left behind: a record of every HTTP exchange, and the bearer token
//! fetches the client made on the step's behalf (the probe reports each as a step of its own).

use std::time::{Duration, SystemTime};

use crate::outcome::{Failure, HttpRecord};

#[derive(Debug, Default)]
pub struct Transcript {
    pub requests: Vec<HttpRecord>,
    pub token_fetches: Vec<TokenFetch>,
}

/// One fetch of a bearer token from the registry's token service, with its own exchanges.
#[derive(Debug)]
pub struct TokenFetch {
    /// The scope asked for, e.g. `repository:team/probe:pull,push`.
    pub scope: String,
    pub started_at: SystemTime,
    pub duration: Duration,
    pub result: Result<(), Failure>,
    pub requests: Vec<HttpRecord>,
}
