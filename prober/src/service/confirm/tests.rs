use super::*;

const INTERVAL: Duration = Duration::from_secs(30);
const FAST: Duration = Duration::from_millis(20);

fn confirmer(runs: u32) -> Confirmer {
    Confirmer::new(Confirmation {
        runs,
        delay: Duration::from_secs(5),
    })
}

/// A scheduled run due at `t0`, ended `took` later; the next is due an interval after `t0`.
fn scheduled(c: &mut Confirmer, t0: Instant, success: bool, took: Duration) -> Next {
    c.scheduled();
    c.ended(success, false, t0 + took, took, t0 + INTERVAL)
}

#[test]
fn one_transient_failure_gets_one_confirmation_and_its_success_ends_the_streak() {
    let mut c = confirmer(2);
    let t0 = Instant::now();
    let next = scheduled(&mut c, t0, false, FAST);
    assert_eq!(next, Next::ConfirmAt(t0 + FAST + Duration::from_secs(5)));
    // The confirmation succeeds: nothing more until the next failure.
    assert_eq!(
        c.ended(
            true,
            false,
            t0 + Duration::from_secs(6),
            FAST,
            t0 + INTERVAL
        ),
        Next::Wait
    );
    assert_eq!(c.failed_in_a_row, 0);
}

#[test]
fn a_hard_outage_is_confirmed_by_runs_confirmations_and_then_left_to_the_schedule() {
    let mut c = confirmer(2);
    let t0 = Instant::now();
    let mut confirmations = 0;
    let mut next = scheduled(&mut c, t0, false, FAST);
    while let Next::ConfirmAt(at) = next {
        confirmations += 1;
        next = c.ended(false, false, at + FAST, FAST, t0 + INTERVAL);
    }
    assert_eq!(confirmations, 2);
    assert_eq!(next, Next::Wait);
    assert_eq!(c.failed_in_a_row, 3);
    // Confirmed: the scheduled runs of the outage get none.
    for i in 1..10 {
        assert_eq!(
            scheduled(&mut c, t0 + INTERVAL * i, false, FAST),
            Next::Wait
        );
    }
    // A success ends the outage; the next failure is confirmed again.
    assert_eq!(
        scheduled(&mut c, t0 + INTERVAL * 10, true, FAST),
        Next::Wait
    );
    assert!(matches!(
        scheduled(&mut c, t0 + INTERVAL * 11, false, FAST),
        Next::ConfirmAt(_)
    ));
}

#[test]
fn a_flapping_registry_adds_at_most_a_quarter_of_the_scheduled_runs() {
    // Every other scheduled run fails and every confirmation succeeds: each failure asks for a
    // confirmation, and none is ever confirmed.
    let runs = 2;
    let mut c = confirmer(runs);
    let t0 = Instant::now();
    let (mut confirmed, mut budget_skips) = (0, 0);
    let scheduled_runs = 400;
    for i in 0..scheduled_runs {
        let due = t0 + INTERVAL * i;
        match scheduled(&mut c, due, i % 2 == 1, FAST) {
            Next::ConfirmAt(at) => {
                confirmed += 1;
                assert_eq!(
                    c.ended(true, false, at + FAST, FAST, due + INTERVAL),
                    Next::Wait
                );
            }
            Next::Skip(ConfirmationSkipCause::Budget) => budget_skips += 1,
            Next::Wait => assert_eq!(i % 2, 1, "run {i} failed and asked for nothing"),
            other => panic!("run {i}: {other:?}"),
        }
    }
    assert!(
        confirmed <= SAVED * runs + scheduled_runs / RUNS_PER_CONFIRMATION,
        "{confirmed} confirmations for {scheduled_runs} scheduled runs"
    );
    // ...and it does get them: the budget is spent, not hoarded.
    assert!(
        confirmed >= scheduled_runs / RUNS_PER_CONFIRMATION - 1,
        "{confirmed}"
    );
    assert_eq!(confirmed + budget_skips, scheduled_runs / 2);
}

#[test]
fn a_slow_failure_is_confirmed_by_the_next_scheduled_run_instead() {
    let mut c = confirmer(2);
    let t0 = Instant::now();
    // Failed after 25 s: 25 + 5 + 25 s would end long after the next run is due at 30 s.
    assert_eq!(
        scheduled(&mut c, t0, false, Duration::from_secs(25)),
        Next::Skip(ConfirmationSkipCause::NextRunDue)
    );
    // The next run fails fast: it is confirmed (the streak is 2 of 3).
    assert!(matches!(
        scheduled(&mut c, t0 + INTERVAL, false, FAST),
        Next::ConfirmAt(_)
    ));
    assert_eq!(c.failed_in_a_row, 2);
}

#[test]
fn a_rate_limited_run_is_waited_out_and_no_confirmations_are_run_when_off() {
    let mut c = confirmer(2);
    let t0 = Instant::now();
    c.scheduled();
    assert_eq!(c.ended(false, true, t0, FAST, t0 + INTERVAL), Next::Wait);
    let mut off = confirmer(0);
    for i in 0..5 {
        assert_eq!(
            scheduled(&mut off, t0 + INTERVAL * i, false, FAST),
            Next::Wait
        );
    }
}
