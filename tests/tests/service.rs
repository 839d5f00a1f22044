//! `registry-prober run` as a service against the real docker-registry: metrics scraped over
//! HTTP (and linted by promtool), failing and hanging targets isolated, overruns skipped,
//! reloads, graceful shutdown with cleanup, and the status page.

use std::net::TcpListener;
use std::time::Duration;

use http::Method;
use registry_prober_e2e::fault_proxy::{Fault, FaultProxy, Rule};
use registry_prober_e2e::service::{metric_value, Service};
use registry_prober_e2e::{free_port, Registry, RegistryAuth, RegistryOptions};

/// Uncompressed layers: the byte counts these tests check are the layer sizes.
fn target(name: &str, registry: &str, repo: &str, extra: &str) -> String {
    format!("  - name: {name}\n    registry: {registry}\n    repository: {repo}\n    image: {{layers: 1, layer_size: 4KiB, compression: none}}\n{extra}")
}

fn successes(svc: &Service, name: &str) -> f64 {
    svc.metric(&format!(
        "registry_prober_runs_total{{target=\"{name}\",size_class=\"default\",result=\"success\"}}"
    ))
    .ok()
    .flatten()
    .unwrap_or(0.0)
}

fn failures(svc: &Service, name: &str, reason: &str) -> f64 {
    svc.metric(&format!(
        "registry_prober_failures_total{{target=\"{name}\",size_class=\"default\",reason=\"{reason}\"}}"
    ))
    .ok()
    .flatten()
    .unwrap_or(0.0)
}

#[test]
fn two_targets_are_scraped_with_sane_values_and_a_clean_exposition() {
    let reg = Registry::start_default().expect("registry");
    let config = format!(
        "defaults: {{interval: 1s, timeout: 1s}}\ntargets:\n{}{}",
        target("alpha", &reg.url(), "probe/alpha", ""),
        target(
            "beta",
            &reg.url(),
            "probe/beta",
            "    manifest_type: docker\n"
        )
    );
    let mut svc = Service::start(&config).expect("service starts");
    svc.wait_for("two successes per target", Duration::from_secs(20), |s| {
        Ok(successes(s, "alpha") >= 2.0 && successes(s, "beta") >= 2.0)
    })
    .expect("targets succeed");
    let text = svc.metrics().expect("metrics");
    for family in [
        "registry_prober_runs_total",
        "registry_prober_steps_total",
        "registry_prober_failures_total",
        "registry_prober_step_duration_seconds_bucket",
        "registry_prober_http_phase_duration_seconds_bucket",
        "registry_prober_bytes_total",
        "registry_prober_last_success_timestamp_seconds",
        "registry_prober_skipped_runs_total",
        "registry_prober_runs_in_flight",
        "registry_prober_cleanup_failures_total",
        "registry_prober_upload_sessions_total",
        "registry_prober_build_info",
        "registry_prober_config_reloads_total",
    ] {
        assert!(text.contains(family), "{family} missing");
    }
    // Pre-created at zero, so rate() and absent() work from the first scrape.
    assert_eq!(
        metric_value(
            &text,
            "registry_prober_failures_total{target=\"alpha\",size_class=\"default\",reason=\"dns\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        metric_value(
            &text,
            "registry_prober_runs_total{target=\"alpha\",size_class=\"default\",result=\"failure\"}"
        ),
        Some(0.0)
    );
    let pushed = metric_value(
        &text,
        "registry_prober_bytes_total{target=\"alpha\",path=\"origin\",direction=\"push\"}",
    )
    .expect("push bytes");
    assert!(pushed >= 2.0 * 4096.0, "{pushed}");
    let last = metric_value(
        &text,
        "registry_prober_last_success_timestamp_seconds{target=\"alpha\",size_class=\"default\"}",
    )
    .expect("last success");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        (now - last).abs() < 30.0,
        "last success {last} vs now {now}"
    );
    let opened = metric_value(
        &text,
        "registry_prober_upload_sessions_total{target=\"alpha\",outcome=\"opened\"}",
    )
    .expect("opened");
    let completed = metric_value(
        &text,
        "registry_prober_upload_sessions_total{target=\"alpha\",outcome=\"completed\"}",
    )
    .expect("completed");
    assert!(
        opened >= 4.0 && (opened - completed).abs() < 1.0 + 2.0,
        "opened {opened} completed {completed}"
    );
    // No digest, tag or URL as a label value.
    assert!(
        !text.contains("sha256:")
            && !text.contains("http://")
            && !text.contains("registry-prober-1"),
        "unbounded label values"
    );
    let lint = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())?;
            child.wait_with_output()
        })
        .expect("promtool runs");
    let problems = format!(
        "{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    assert!(
        lint.status.success() && problems.trim().is_empty(),
        "promtool check metrics: {problems}"
    );

    // Asked as Prometheus asks, the same exposition comes gzipped (gunzipped here by gzip(1)).
    let zipped = registry_prober_e2e::http::HttpClient::new()
        .request(
            "GET",
            &format!("{}/metrics", svc.url()),
            &[("Accept-Encoding", "gzip")],
            &[],
        )
        .expect("gzipped metrics");
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert!(
        zipped.body.len() * 5 < text.len(),
        "{} bytes of gzip",
        zipped.body.len()
    );
    let unzipped = std::process::Command::new("gzip")
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(&zipped.body)?;
            child.wait_with_output()
        })
        .expect("gzip runs");
    assert!(unzipped.status.success(), "gzip -dc failed");
    let families = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.starts_with("# TYPE "))
            .map(str::to_string)
            .collect()
    };
    let (gzipped, plain) = (
        families(&String::from_utf8_lossy(&unzipped.stdout)),
        families(&text),
    );
    assert_eq!(
        gzipped,
        plain,
        "only gzipped: {:?}; only plain: {:?}",
        gzipped
            .iter()
            .filter(|f| !plain.contains(f))
            .collect::<Vec<_>>(),
        plain
            .iter()
            .filter(|f| !gzipped.contains(f))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_target_on_a_closed_port_fails_with_connect_while_the_other_keeps_succeeding() {
    let reg = Registry::start_default().expect("registry");
    let closed = format!("http://127.0.0.1:{}", free_port());
    let config = format!(
        "defaults: {{interval: 1s, timeout: 1s}}\ntargets:\n{}{}",
        target("up", &reg.url(), "probe/up", ""),
        target("down", &closed, "probe/down", "")
    );
    let mut svc = Service::start(&config).expect("service starts");
    svc.wait_for(
        "down fails with connect and up succeeds",
        Duration::from_secs(20),
        |s| Ok(failures(s, "down", "connect") >= 2.0 && successes(s, "up") >= 2.0),
    )
    .expect("isolation");
    assert_eq!(successes(&svc, "down"), 0.0);
    assert_eq!(
        svc.get("/healthz").expect("healthz").status,
        200,
        "a registry being down never makes the prober unhealthy"
    );
}

/// `registry_prober_<family>{target="c",size_class="default",<label>}` of the service, 0 when absent.
fn class_metric(svc: &Service, family: &str, label: &str) -> f64 {
    svc.metric(&format!(
        "registry_prober_{family}{{target=\"c\",size_class=\"default\",{label}}}"
    ))
    .ok()
    .flatten()
    .unwrap_or(0.0)
}

#[test]
fn a_failed_run_is_confirmed_or_cleared_by_confirmation_runs_seconds_later() {
    let reg = Registry::start_default().expect("registry");
    let proxy = FaultProxy::start(&reg.url()).expect("proxy");
    // One transient failure: the first upload session of the first run answers 503.
    proxy.add_rule(
        Rule::new("once", "/blobs/uploads/", Fault::status(503))
            .method(Method::POST)
            .times(1),
    );
    let config = format!(
        "defaults: {{interval: 10s, timeout: 8s, confirmation_runs: 2, confirmation_delay: 500ms}}\ntargets:\n{}",
        target("c", &proxy.url(), "probe/c", "")
    );
    let mut svc = Service::start(&config).expect("service starts");
    // Cleared: the confirmation run half a second later succeeds, long before the next run.
    svc.wait_for("the confirmation run", Duration::from_secs(30), |s| {
        Ok(class_metric(s, "confirmation_runs_total", "result=\"success\"") >= 1.0)
    })
    .expect("a confirmation run after the failed run");
    let text = svc.metrics().expect("metrics");
    let runs = |result: &str| {
        metric_value(
            &text,
            &format!("registry_prober_runs_total{{target=\"c\",size_class=\"default\",result=\"{result}\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert_eq!((runs("failure"), runs("success")), (1.0, 1.0), "{text}");
    assert!(
        !text.contains("registry_prober_consecutive_failed_runs{"),
        "a success ends the streak:\n{text}"
    );
    assert_eq!(proxy.hits("once"), 1);

    // A hard outage: the next scheduled run and its 2 confirmations fail within seconds, then
    // no more confirmations until a run succeeds.
    proxy.add_rule(Rule::new("down", "/v2/", Fault::status(503)));
    let streak = |s: &Service| {
        class_metric(
            s,
            "consecutive_failed_runs",
            "path=\"origin\",step=\"ping\"",
        )
    };
    svc.wait_for("3 failed runs in a row", Duration::from_secs(30), |s| {
        Ok(streak(s) >= 3.0)
    })
    .expect("confirmed");
    let confirmed_at = std::time::Instant::now();
    assert_eq!(
        class_metric(&svc, "confirmation_runs_total", "result=\"failure\""),
        2.0
    );
    svc.wait_for("the next scheduled run", Duration::from_secs(30), |s| {
        Ok(streak(s) >= 4.0)
    })
    .expect("the outage goes on");
    assert!(
        confirmed_at.elapsed() > Duration::from_secs(2),
        "the fourth failure is the next scheduled run, not a confirmation"
    );
    assert_eq!(
        class_metric(&svc, "confirmation_runs_total", "result=\"failure\""),
        2.0,
        "no confirmations once the failure is confirmed"
    );
    // Recovery: the first success removes the streak.
    proxy.clear_rules();
    svc.wait_for("a success", Duration::from_secs(30), |s| {
        Ok(!s
            .metrics()?
            .contains("registry_prober_consecutive_failed_runs{"))
    })
    .expect("recovered");
}

#[test]
fn a_hanging_target_is_cut_at_its_deadline_and_counted() {
    let reg = Registry::start_default().expect("registry");
    // Accepts connections and never answers.
    let hang = TcpListener::bind("127.0.0.1:0").expect("bind");
    let hang_url = format!("http://{}", hang.local_addr().expect("addr"));
    let config = format!(
        "defaults: {{interval: 2s, timeout: 1s}}\ntargets:\n{}{}",
        target("ok", &reg.url(), "probe/ok", ""),
        target("hang", &hang_url, "probe/hang", "")
    );
    let mut svc = Service::start(&config).expect("service starts");
    svc.wait_for("hang times out twice", Duration::from_secs(20), |s| {
        Ok(failures(s, "hang", "timeout") >= 2.0 && successes(s, "ok") >= 2.0)
    })
    .expect("deadline");
    let text = svc.metrics().expect("metrics");
    assert_eq!(
        metric_value(
            &text,
            "registry_prober_runs_in_flight{target=\"hang\",size_class=\"default\"}"
        )
        .map(|v| v <= 1.0),
        Some(true)
    );
    drop(hang);
}

#[test]
fn an_overrunning_target_skips_runs_and_counts_them() {
    let reg = Registry::start_default().expect("registry");
    let proxy = FaultProxy::start(&reg.url()).expect("proxy");
    // Manifest pulls hang until the run deadline; cleanup then still runs, so each run lasts
    // longer than the interval and the next tick finds it still going.
    proxy.add_rule(Rule::new("hang", "/manifests/", Fault::Hang).method(Method::GET));
    let config = format!(
        "defaults: {{interval: 1s, timeout: 1s}}\ntargets:\n{}",
        target("slow", &proxy.url(), "probe/slow", "")
    );
    let mut svc = Service::start(&config).expect("service starts");
    // The skip is counted while the overrunning run is still going, before its timeout is
    // recorded: wait for both.
    svc.wait_for(
        "a skipped run and a timed-out run",
        Duration::from_secs(20),
        |s| {
            let skipped = s
                .metric("registry_prober_skipped_runs_total{target=\"slow\",size_class=\"default\",cause=\"overrun\"}")?
                .unwrap_or(0.0);
            Ok(skipped >= 1.0 && failures(s, "slow", "timeout") >= 1.0)
        },
    )
    .expect("skip and timeout counted");
}

#[test]
fn sighup_with_a_broken_config_keeps_the_old_one_and_counts_the_failure() {
    let reg = Registry::start_default().expect("registry");
    let config = format!(
        "defaults: {{interval: 1s, timeout: 1s}}\ntargets:\n{}",
        target("kept", &reg.url(), "probe/kept", "")
    );
    let mut svc = Service::start(&config).expect("service starts");
    svc.wait_for("a success", Duration::from_secs(15), |s| {
        Ok(successes(s, "kept") >= 1.0)
    })
    .expect("success");
    std::fs::write(
        svc.config_path(),
        "targets:\n  - name: kept\n    registy: nope\n",
    )
    .expect("break config");
    svc.signal("HUP").expect("sighup");
    svc.wait_for("reload failure counted", Duration::from_secs(10), |s| {
        Ok(
            s.metric("registry_prober_config_reloads_total{result=\"failure\"}")?
                .unwrap_or(0.0)
                >= 1.0,
        )
    })
    .expect("reload failure");
    let before = successes(&svc, "kept");
    svc.wait_for(
        "the old config keeps running",
        Duration::from_secs(15),
        |s| Ok(successes(s, "kept") >= before + 2.0),
    )
    .expect("old config runs");
    assert_eq!(
        svc.metric("registry_prober_config_last_reload_successful")
            .expect("metrics"),
        Some(0.0)
    );
    assert!(svc
        .log()
        .contains("Config reload failed, keeping the old config"));
    assert!(svc.log().contains("unknown field `registy`"));
}

#[test]
fn sigterm_during_an_upload_still_cancels_the_upload_session_and_exits_zero() {
    let reg = Registry::start_default().expect("registry");
    let proxy = FaultProxy::start(&reg.url()).expect("proxy");
    // The upload's PUT never gets an answer: the upload is in flight when SIGTERM arrives.
    proxy.add_rule(Rule::new("stuck-put", "/blobs/uploads/", Fault::Hang).method(Method::PUT));
    let config = format!(
        "defaults: {{interval: 5s, timeout: 3s}}\ntargets:\n{}",
        target("upload", &proxy.url(), "probe/upload", "")
    );
    let mut svc = Service::start(&config).expect("service starts");
    svc.wait_for(
        "the upload PUT is in flight",
        Duration::from_secs(15),
        |_| Ok(proxy.hits("stuck-put") >= 1),
    )
    .expect("upload started");
    assert_eq!(
        reg.storage()
            .uploads("probe/upload")
            .expect("uploads")
            .len(),
        1,
        "the session is open"
    );
    svc.signal("TERM").expect("sigterm");
    let code = svc.wait_exit(Duration::from_secs(20)).expect("exits");
    assert_eq!(code, 0);
    assert_eq!(
        reg.storage().uploads("probe/upload").expect("uploads"),
        Vec::<String>::new(),
        "session left open"
    );
    assert!(
        proxy
            .requests()
            .iter()
            .any(|(m, p)| m == "DELETE" && p.contains("/blobs/uploads/")),
        "no DELETE of the session"
    );
}

#[test]
fn the_status_page_escapes_registry_markup_and_no_credentials_leak() {
    let reg = Registry::start(RegistryOptions {
        auth: RegistryAuth::htpasswd("prober", "hunter2-secret"),
        ..Default::default()
    })
    .expect("registry");
    let proxy = FaultProxy::start(&reg.url()).expect("proxy");
    proxy.add_rule(Rule::new(
        "markup",
        "/manifests/",
        Fault::Status {
            status: 500,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: r#"{"errors":[{"code":"UNKNOWN","message":"<script>alert('pwned')</script> & more"}]}"#.into(),
        },
    ).method(Method::PUT));
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "hunter2-secret\n").expect("pw");
    let extra = format!(
        "    auth: {{username: prober, password_file: {}}}\n",
        pw.display()
    );
    let config = format!(
        "defaults: {{interval: 1s, timeout: 1s}}\ntargets:\n{}",
        target("marked", &proxy.url(), "probe/marked", &extra)
    );
    let mut svc = Service::start(&config).expect("service starts");
    svc.wait_for("a failed run", Duration::from_secs(15), |s| {
        Ok(failures(s, "marked", "http_5xx") >= 1.0)
    })
    .expect("failure");
    let page = svc.get("/").expect("page");
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(
        !html.contains("<script>alert"),
        "registry markup rendered raw"
    );
    assert!(
        html.contains("&lt;script&gt;alert("),
        "escaped message missing"
    );
    let json = svc
        .get("/?format=json")
        .expect("json")
        .json()
        .expect("json body");
    assert!(
        json.to_string().contains("<script>alert('pwned')</script>"),
        "the JSON keeps the raw text"
    );
    for (what, text) in [
        ("page", html),
        ("json", json.to_string()),
        ("metrics", svc.metrics().expect("metrics")),
        ("logs", svc.log()),
    ] {
        assert!(!text.contains("hunter2-secret"), "password in {what}");
        assert!(
            !text.contains("cHJvYmVyOmh1bnRlcjItc2VjcmV0"),
            "basic auth header in {what}"
        );
    }
}

#[test]
fn the_status_page_renders_in_headless_chromium() {
    let reg = Registry::start_default().expect("registry");
    let config = format!(
        "defaults: {{interval: 1s, timeout: 1s}}\ntargets:\n{}",
        target("shown", &reg.url(), "probe/shown", "")
    );
    let mut svc = Service::start(&config).expect("service starts");
    svc.wait_for("two successes", Duration::from_secs(15), |s| {
        Ok(successes(s, "shown") >= 2.0)
    })
    .expect("runs");
    // A target's own page, and a clear 404 for a name that is not configured.
    let own = svc.get("/?target=shown").expect("target page");
    assert_eq!(own.status, 200);
    assert!(own.text().contains("<h2>shown</h2>") && own.text().contains("all targets</a>"));
    let json = svc.get("/?target=shown&format=json").expect("target json");
    let json = json.json().expect("json");
    assert_eq!(json["target"], "shown");
    assert_eq!(json["targets"][0]["runs"][0]["detailed"], true);
    let missing = svc.get("/?target=nope").expect("unknown target");
    assert_eq!(missing.status, 404);
    assert!(
        missing.text().contains("no target named \"nope\""),
        "{}",
        missing.text()
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let png = dir.path().join("status.png");
    let out = registry_prober_e2e::run_with_timeout(
        std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
            ])
            .args([
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("profile").display()
            ))
            .args(["--window-size=1200,900"])
            .arg(format!("--screenshot={}", png.display()))
            .arg(format!("{}/", svc.url())),
        Duration::from_secs(60),
    )
    .expect("chromium runs (installed by scripts/install-deps)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    // IHDR: width and height of the rendered page.
    let width = u32::from_be_bytes(bytes[16..20].try_into().expect("4 bytes"));
    let height = u32::from_be_bytes(bytes[20..24].try_into().expect("4 bytes"));
    assert_eq!((width, height), (1200, 900));
    assert!(
        bytes.len() > 20_000,
        "a {}-byte screenshot is a blank page",
        bytes.len()
    );
}

/// `registry_prober_<series>` of the target's default size class.
fn class_metric_of(svc: &Service, series: &str, name: &str, extra: &str) -> f64 {
    svc.metric(&format!(
        "registry_prober_{series}{{target=\"{name}\",size_class=\"default\"{extra}}}"
    ))
    .ok()
    .flatten()
    .unwrap_or(0.0)
}

#[test]
fn a_stopped_schedule_counts_the_ticks_it_missed_and_every_scheduled_run_is_accounted_for() {
    let reg = Registry::start_default().expect("registry");
    let config = format!(
        "defaults: {{interval: 1s, timeout: 1s}}\ntargets:\n{}",
        target("paused", &reg.url(), "probe/paused", "")
    );
    let mut svc = Service::start(&config).expect("service starts");
    svc.wait_for("two successes", Duration::from_secs(15), |s| {
        Ok(successes(s, "paused") >= 2.0)
    })
    .expect("successes");
    // Stopped for 3.5 intervals: the ticks at +1 s .. +3 s pass while nothing runs.
    svc.signal("STOP").expect("sigstop");
    std::thread::sleep(Duration::from_millis(3500));
    svc.signal("CONT").expect("sigcont");
    svc.wait_for("the missed ticks counted", Duration::from_secs(10), |s| {
        Ok(class_metric_of(s, "skipped_runs_total", "paused", ",cause=\"missed\"") >= 2.0)
    })
    .expect("missed ticks");
    // Scheduled = ended + skipped + in flight; a run waiting for room, or one ending between
    // two counters of a scrape, is off by one for a moment, never for good.
    svc.wait_for(
        "every scheduled run accounted for",
        Duration::from_secs(10),
        |s| {
            let text = s.metrics()?;
            let v = |series: &str| metric_value(&text, series).unwrap_or(0.0);
            let class = "target=\"paused\",size_class=\"default\"";
            let scheduled = v(&format!("registry_prober_scheduled_runs_total{{{class}}}"));
            let ended = v(&format!(
                "registry_prober_runs_total{{{class},result=\"success\"}}"
            )) + v(&format!(
                "registry_prober_runs_total{{{class},result=\"failure\"}}"
            ));
            let skipped: f64 = ["overrun", "rate_limited", "missed"]
                .iter()
                .map(|c| {
                    v(&format!(
                        "registry_prober_skipped_runs_total{{{class},cause=\"{c}\"}}"
                    ))
                })
                .sum();
            // Confirmation runs (after a failure) end in runs_total too, unscheduled.
            let confirmations: f64 = ["success", "failure"]
                .iter()
                .map(|r| {
                    v(&format!(
                        "registry_prober_confirmation_runs_total{{{class},result=\"{r}\"}}"
                    ))
                })
                .sum();
            let in_flight = v(&format!("registry_prober_runs_in_flight{{{class}}}"));
            Ok(scheduled > 5.0 && scheduled + confirmations == ended + skipped + in_flight)
        },
    )
    .expect("accounted");
}

#[test]
fn a_sighup_after_a_rewrite_reloads_once() {
    let reg = Registry::start_default().expect("registry");
    let body = |layers: u32| {
        format!(
            "defaults: {{interval: 1s, timeout: 1s}}\ntargets:\n  - name: once\n    registry: {}\n    repository: probe/once\n    image: {{layers: {layers}, layer_size: 4KiB}}\n",
            reg.url()
        )
    };
    let svc = Service::start(&body(1)).expect("service starts");
    let listen = std::fs::read_to_string(svc.config_path()).expect("config");
    let listen = listen.lines().next().expect("the listen line");
    let tmp = svc.config_path().with_extension("tmp");
    std::fs::write(&tmp, format!("{listen}\n{}", body(2))).expect("new config");
    std::fs::rename(&tmp, svc.config_path()).expect("swapped in");
    svc.signal("HUP").expect("sighup");
    // The file poll (every 2 s) sees the new content too; it was loaded already.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        svc.metric("registry_prober_config_reloads_total{result=\"success\"}")
            .expect("metrics"),
        Some(1.0),
        "{}",
        svc.log()
    );
}

#[test]
fn a_reload_between_a_failed_cancel_and_the_next_sweep_still_cancels_the_session() {
    let reg = Registry::start_default().expect("registry");
    let proxy = FaultProxy::start(&reg.url()).expect("proxy");
    // The first upload's closing PUT fails without reaching the registry (the session stays
    // open, its URL current), and the cancel's DELETE fails too: the prober keeps the session
    // for its next sweep, an hour away.
    proxy.add_rule(
        Rule::new("put", "/blobs/uploads/", Fault::status(500))
            .method(Method::PUT)
            .times(1),
    );
    proxy.add_rule(
        Rule::new("cancel", "/blobs/uploads/", Fault::status(503))
            .method(Method::DELETE)
            .times(1),
    );
    let config = format!(
        "defaults: {{interval: 2s, timeout: 2s}}\ntargets:\n{}    hygiene: {{interval: 1h}}\n",
        target("kept", &proxy.url(), "probe/kept", "")
    );
    let mut svc = Service::start(&config).expect("service starts");
    svc.wait_for("the failed cancel", Duration::from_secs(20), |s| {
        Ok(proxy.hits("cancel") == 1 && failures(s, "kept", "http_5xx") >= 1.0)
    })
    .expect("cancel failed");
    svc.wait_for("a success after it", Duration::from_secs(20), |s| {
        Ok(successes(s, "kept") >= 1.0)
    })
    .expect("success");
    // The session is still open (besides, perhaps, the upload of a run in flight now, which
    // ends within its 2 s timeout).
    let stuck = reg.storage().uploads("probe/kept").expect("uploads");
    assert!(!stuck.is_empty(), "the session is still open");
    // A reload replaces the target's prober; the new one sweeps at once, with what the old
    // one still had to cancel.
    svc.signal("HUP").expect("sighup");
    svc.wait_for("the session swept", Duration::from_secs(20), |s| {
        Ok(s.metric(
            "registry_prober_swept_objects_total{target=\"kept\",kind=\"upload_session\"}",
        )?
        .unwrap_or(0.0)
            >= 1.0)
    })
    .expect("swept after the reload");
    // Runs go on every 2 s, so another upload may be open right now: the kept one is gone.
    let open = reg.storage().uploads("probe/kept").expect("uploads");
    assert!(
        stuck.iter().all(|s| !open.contains(s)),
        "open before the reload: {stuck:?}; after the sweep: {open:?}"
    );
}

#[test]
fn a_session_the_registry_refuses_to_cancel_is_not_retried_by_every_sweep() {
    let reg = Registry::start_default().expect("registry");
    let proxy = FaultProxy::start(&reg.url()).expect("proxy");
    // The registry takes the PATCH's body, the prober sees a 500: its URL's state is stale
    // and Distribution refuses to cancel through it (404 BLOB_UPLOAD_INVALID), for good.
    proxy.add_rule(
        Rule::new("lost", "/blobs/uploads/", Fault::SetStatus { status: 500 })
            .method(Method::PATCH)
            .times(1),
    );
    let config = format!(
        "defaults: {{interval: 1s, timeout: 1s}}\ntargets:\n{}    hygiene: {{interval: 1s}}\n",
        target("stale", &proxy.url(), "probe/stale", "")
    );
    let mut svc = Service::start(&config).expect("service starts");
    svc.wait_for(
        "the refused cancel, then sweeps",
        Duration::from_secs(20),
        |s| {
            let sweeps = s
                .metric("registry_prober_sweeps_total{target=\"stale\",result=\"success\"}")?
                .unwrap_or(0.0);
            Ok(failures(s, "stale", "http_5xx") >= 1.0 && sweeps >= 4.0)
        },
    )
    .expect("sweeps");
    assert_eq!(
        svc.metric("registry_prober_sweeps_total{target=\"stale\",result=\"failure\"}")
            .expect("metrics"),
        Some(0.0),
        "a sweep retried a session no request can reach"
    );
    assert_eq!(
        svc.metric("registry_prober_upload_sessions_total{target=\"stale\",outcome=\"abandoned\"}")
            .expect("metrics"),
        Some(1.0),
        "the session is counted as left open"
    );
    // Stopped first: a run in flight has a session of its own open.
    svc.signal("TERM").expect("sigterm");
    assert_eq!(svc.wait_exit(Duration::from_secs(20)).expect("exits"), 0);
    assert_eq!(
        reg.storage().uploads("probe/stale").expect("uploads").len(),
        1
    );
}

#[test]
fn a_name_that_stops_resolving_fails_a_run_within_a_minute_on_kept_connections() {
    let reg = Registry::start_default().expect("registry");
    let dir = tempfile::tempdir().expect("tempdir");
    let hosts = dir.path().join("hosts");
    let name = "registry.service.test";
    std::fs::write(&hosts, format!("127.0.0.1 {name}\n")).expect("hosts written");
    // Under 30 s, so the runs keep their connections (Distribution keeps them open).
    let config = format!(
        "defaults: {{interval: 2s, timeout: 1500ms}}\ntargets:\n{}",
        target(
            "d",
            &format!("http://{name}:{}", reg.port()),
            "probe/d",
            "    allow_plain_http: true\n"
        )
    );
    let mut svc = Service::start_with_hosts(&config, &hosts).expect("service starts");
    svc.wait_for("a first success", Duration::from_secs(30), |s| {
        Ok(successes(s, "d") >= 1.0)
    })
    .expect("the name resolves at first");
    // Emptied in place: the bind mount keeps the inode.
    std::fs::write(&hosts, "").expect("hosts emptied");
    let emptied = std::time::Instant::now();
    let ok_before = successes(&svc, "d");
    // A run that looks the name up again fails with dns: at the latest the first scheduled run
    // once the kept connections are a minute old (CONNECTION_MAX_AGE), not never.
    svc.wait_for("a dns failure", Duration::from_secs(90), |s| {
        Ok(failures(s, "d", "dns") >= 1.0)
    })
    .expect("the lookup failure shows within a minute and an interval");
    assert!(
        emptied.elapsed() < Duration::from_secs(75),
        "{:?} after the name stopped resolving",
        emptied.elapsed()
    );
    // The runs in between reused the connections: the test is about kept ones.
    assert!(
        successes(&svc, "d") > ok_before,
        "runs on kept connections succeeded after the name stopped resolving"
    );
}
