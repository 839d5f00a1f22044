//! `scripts/demo`, stopped as a user stops it: Ctrl-C (SIGINT to its whole process group)
//! once the service is up. Afterwards no process it started is left, and its temp dir is gone.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use registry_prober_e2e::{free_port, prober_bin, HttpClient};

/// The processes whose process group is `pgid` (from /proc/<pid>/stat, field 5).
fn group_members(pgid: u32) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after its ')'.
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|p| p.parse::<u32>().ok()) == Some(pgid) {
            found.push(head.to_string() + ")");
        }
    }
    found
}

#[test]
fn ctrl_c_stops_every_process_the_demo_started_and_removes_its_temp_dir() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let prober_port = free_port();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let log = std::fs::File::create(tmp.path().join("demo.log")).expect("log file");
    let work = tmp.path().join("tmp");
    std::fs::create_dir(&work).expect("mkdir");
    let mut demo = Command::new("bash")
        .arg(root.join("scripts/demo"))
        .env("TMPDIR", &work)
        .env("PROBER_PORT", prober_port.to_string())
        .env(
            "REGISTRY_PROBER_BIN",
            prober_bin().expect("the prober binary"),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        // Its own process group, as a terminal gives a foreground job: Ctrl-C reaches it all.
        .process_group(0)
        .spawn()
        .expect("scripts/demo starts");
    let pgid = demo.id();
    let stop = |demo: &mut std::process::Child| {
        let _ = Command::new("kill")
            .args(["-s", "INT", "--", &format!("-{pgid}")])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if demo.try_wait().ok().flatten().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    };

    let ready = format!("http://127.0.0.1:{prober_port}/readyz");
    let client = HttpClient::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut up = false;
    while Instant::now() < deadline {
        if client.get(&ready).is_ok_and(|r| r.status == 200) {
            up = true;
            break;
        }
        if demo.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = || std::fs::read_to_string(tmp.path().join("demo.log")).unwrap_or_default();
    if !up {
        stop(&mut demo);
        panic!("the demo's service did not come up:\n{}", log());
    }
    let running = group_members(pgid);
    assert!(
        running
            .iter()
            .filter(|p| p.contains("docker-registry"))
            .count()
            == 2,
        "the registry and its cache run in the demo's group: {running:?}"
    );

    assert!(
        stop(&mut demo),
        "the demo did not exit after Ctrl-C:\n{}",
        log()
    );
    // The trap has run; give killed children a moment to be reaped.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !group_members(pgid).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        group_members(pgid),
        Vec::<String>::new(),
        "processes left after Ctrl-C:\n{}",
        log()
    );
    let left: Vec<_> = std::fs::read_dir(&work)
        .expect("TMPDIR")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}\n{}", log());
}
