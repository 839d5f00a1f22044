//! The tags the prober pushes: every one starts with `registry-prober-` and names the prober
//! instance, so its leftovers can be told from anything else and only its own are swept.

use std::time::SystemTime;

/// Prefix of every tag the prober pushes.
pub const TAG_PREFIX: &str = "registry-prober-";

/// `registry-prober-<instance>-<unix seconds>-<8 hex of the seed>`: unique per run, sortable
/// by age, and naming the prober instance that pushed it (hygiene sweeps only its own).
pub(super) fn run_tag(instance: &str, seed: u64) -> String {
    format!("{TAG_PREFIX}{instance}-{}-{:08x}", unix_now(), seed as u32)
}

/// `registry-prober-<instance>-<size class>-rotating-<n>`, the tag of turn `n` in rotate mode:
/// each run re-tags one of a few fixed tags, leaving the image it untags to the registry's
/// lifecycle policy. Never a run tag, so sweeps leave it alone.
pub(super) fn rotating_tag(instance: &str, class: &str, n: u64) -> String {
    format!("{TAG_PREFIX}{instance}-{class}-rotating-{n}")
}

/// A run tag's parts: (instance, unix seconds). Canary tags and foreign tags are None.
pub(super) fn parse_run_tag(tag: &str) -> Option<(&str, u64)> {
    let rest = tag.strip_prefix(TAG_PREFIX)?;
    let mut parts = rest.split('-');
    let (instance, secs, hex) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((instance, secs.parse().ok()?))
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_valid_and_carry_the_prefix_and_the_instance() {
        let t = run_tag("eu1", 0xdead_beef_0102_0304);
        assert!(t.starts_with("registry-prober-eu1-"), "{t}");
        assert!(t.ends_with("-01020304"), "{t}");
        assert!(t.len() <= 128 && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        let (instance, secs) = parse_run_tag(&t).expect("parses");
        assert_eq!(instance, "eu1");
        assert!(secs > 1_700_000_000);
    }

    #[test]
    fn rotating_tags_are_valid_and_never_run_tags() {
        let t = rotating_tag("eu1", "small", 2);
        assert_eq!(t, "registry-prober-eu1-small-rotating-2");
        assert_eq!(parse_run_tag(&t), None);
        assert_eq!(parse_run_tag(&rotating_tag("eu1", "1700000000", 2)), None);
    }

    #[test]
    fn only_run_tags_parse_as_run_tags() {
        assert_eq!(
            parse_run_tag("registry-prober-default-1700000000-0a0b0c0d"),
            Some(("default", 1_700_000_000))
        );
        for other in [
            "registry-prober-default-canary-1700000000-0011223344556677",
            "registry-prober-1700000000-0a0b0c0d",
            "latest",
            "registry-prober-default-1700000000-xyz",
        ] {
            assert_eq!(parse_run_tag(other), None, "{other}");
        }
    }
}
