//! Confirmation runs: after a failed run, another run of the size class a few seconds later, so
//! a hard outage is confirmed within one interval and one transient failure is cleared by the
//! next run instead of waiting an interval. A class runs confirmations until one succeeds or
//! `runs` of them have failed in a row after the run they confirm; then the failure counts as
//! confirmed and no more are run until a run succeeds.
//!
//! Bounded so a flapping registry cannot multiply the load: a class earns one confirmation per
//! [`RUNS_PER_CONFIRMATION`] scheduled runs and saves at most two streaks' worth ([`SAVED`] x
//! `runs`: a transient failure just before an outage must not leave the outage unconfirmed).
//! Over any stretch of N scheduled runs a class runs at most 2 `runs` + N / 4 confirmations: at
//! most 25% more runs than the schedule, plus two streaks. A confirmation that would end after the next scheduled
//! run starts (the failed run was slow, e.g. a timeout) is not run: that run confirms instead.

use tokio::time::{Duration, Instant};

use crate::config::Confirmation;
use crate::report::metrics::ConfirmationSkipCause;

/// Scheduled runs that earn one confirmation run.
pub(super) const RUNS_PER_CONFIRMATION: u32 = 4;
/// Streaks of confirmations a class can save up.
pub(super) const SAVED: u32 = 2;

/// What to do after a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Nothing: the run succeeded, confirmations are off, or the failure is already confirmed.
    Wait,
    /// Start a confirmation run at this instant.
    ConfirmAt(Instant),
    /// A confirmation was due and is not run, for this cause.
    Skip(ConfirmationSkipCause),
}

/// One size class's confirmation state: its failed runs in a row and its budget.
#[derive(Debug)]
pub(super) struct Confirmer {
    config: Confirmation,
    /// Runs of the class that failed in a row, scheduled and confirmation runs.
    failed_in_a_row: u32,
    /// Confirmations the class may still run, in units of 1 / RUNS_PER_CONFIRMATION.
    quarters: u32,
}

impl Confirmer {
    /// A class with its budget full.
    pub(super) fn new(config: Confirmation) -> Confirmer {
        Confirmer {
            config,
            failed_in_a_row: 0,
            quarters: config.runs * SAVED * RUNS_PER_CONFIRMATION,
        }
    }

    /// A scheduled run is due: it earns a part of a confirmation.
    pub(super) fn scheduled(&mut self) {
        self.quarters = (self.quarters + 1).min(self.config.runs * SAVED * RUNS_PER_CONFIRMATION);
    }

    /// A run of the class ended at `ended` after `took`, successful or not, rate limited or not;
    /// `next_scheduled` is when the next scheduled run is due.
    pub(super) fn ended(
        &mut self,
        success: bool,
        rate_limited: bool,
        ended: Instant,
        took: Duration,
        next_scheduled: Instant,
    ) -> Next {
        if success {
            self.failed_in_a_row = 0;
            return Next::Wait;
        }
        self.failed_in_a_row = self.failed_in_a_row.saturating_add(1);
        // Confirmed once the failed run and `runs` confirmations failed; a 429 is waited out,
        // never confirmed sooner than the registry asked.
        if self.failed_in_a_row > self.config.runs || rate_limited {
            return Next::Wait;
        }
        let at = ended + self.config.delay;
        // The confirmation is assumed to take as long as the run it confirms.
        if at + took >= next_scheduled {
            return Next::Skip(ConfirmationSkipCause::NextRunDue);
        }
        if self.quarters < RUNS_PER_CONFIRMATION {
            return Next::Skip(ConfirmationSkipCause::Budget);
        }
        self.quarters -= RUNS_PER_CONFIRMATION;
        Next::ConfirmAt(at)
    }
}

#[cfg(test)]
mod tests;
