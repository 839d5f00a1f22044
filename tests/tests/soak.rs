//! Soaks of the prober service against a real registry (tests/src/soak): no false pages from a
//! healthy registry with 2% transient faults, and a chaos soak that loses nothing. The short
//! versions run here, in parallel (a few minutes at 1/10 of production speed); the hour-long
//! ones are ignored and run by scripts/soak-false-pages and scripts/soak-chaos.

use std::time::Duration;

use registry_prober_e2e::soak::{self, chaos, false_pages};

/// Prints the report between markers (the scripts cut it out), writes it to $SOAK_REPORT if
/// set, and fails on the problems.
fn finish(name: &str, text: &str, problems: &[String]) {
    println!("=== {name} ===\n{text}=== end ===");
    if let Ok(path) = std::env::var("SOAK_REPORT") {
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {path}: {e}"));
    }
    assert!(problems.is_empty(), "{name}:\n{}", problems.join("\n"));
}

fn false_page_soak(speed: false_pages::Speed) {
    let seed = soak::seed_from_env().expect("SOAK_SEED");
    let run = false_pages::run(speed, seed).expect("the soak runs");
    let (text, problems) = false_pages::report(&run).expect("the report");
    finish("soak-false-pages", &text, &problems);
}

#[test]
fn a_healthy_registry_with_two_percent_transient_faults_pages_no_one_short() {
    false_page_soak(false_pages::Speed {
        factor: 10,
        duration: Duration::from_secs(90),
    });
}

/// scripts/soak-false-pages: production speed for $SOAK_SECONDS (default an hour).
#[test]
#[ignore = "an hour at production speed: scripts/soak-false-pages runs it"]
fn a_healthy_registry_with_two_percent_transient_faults_pages_no_one() {
    false_page_soak(false_pages::Speed {
        factor: 1,
        duration: soak::duration_from_env(Duration::from_secs(3600)).expect("SOAK_SECONDS"),
    });
}

fn chaos_soak(pace: chaos::Pace, check_flatness: bool) {
    let seed = soak::seed_from_env().expect("SOAK_SEED");
    let run = chaos::run(pace, seed).expect("the soak runs");
    let (text, problems) = chaos::report(&run, check_flatness).expect("the report");
    finish("soak-chaos", &text, &problems);
}

#[test]
fn a_minute_of_chaos_loses_no_run_and_leaves_nothing_behind_short() {
    chaos_soak(chaos::Pace::short(), false);
}

/// scripts/soak-chaos: $SOAK_SECONDS (default an hour) of chaos.
#[test]
#[ignore = "an hour of chaos: scripts/soak-chaos runs it"]
fn an_hour_of_chaos_loses_no_run_leaks_nothing_and_leaves_nothing_behind() {
    chaos_soak(
        chaos::Pace::hour(
            soak::duration_from_env(Duration::from_secs(3600)).expect("SOAK_SECONDS"),
        ),
        true,
    );
}
