//! What a step's requests left behind: a record of every HTTP exchange, the bearer token fetches
//! the client made on the step's behalf (the probe reports each as a step of its own), and the
//! deviations from the spec it tolerated.

use std::time::{Duration, SystemTime};

use crate::outcome::{Deviation, DeviationKind, Failure, HttpRecord};

#[derive(Debug, Default)]
pub struct Transcript {
    pub requests: Vec<HttpRecord>,
    pub token_fetches: Vec<TokenFetch>,
    /// What the registry did against the spec that clients tolerate.
    pub deviations: Vec<Deviation>,
}

impl Transcript {
    /// Notes a deviation from the spec that the exchange tolerated.
    pub fn deviate(&mut self, kind: DeviationKind, detail: impl Into<String>) {
        self.deviations.push(Deviation {
            kind,
            detail: detail.into(),
        });
    }
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
