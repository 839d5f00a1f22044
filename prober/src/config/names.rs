//! Names the config gives: the instance (part of every tag), target names and label values
//! (they become metric labels), repository names (the OCI distribution spec's grammar) and
//! golden image references.

use super::model::Reference;
use super::{invalid, ConfigError};

/// A target name, the `target` label: at most 64 letters, digits, '-', '_' or '.'.
pub(super) fn validate_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(invalid("name: must not be empty"));
    }
    if name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid(format!(
            "name: {name:?} must be at most 64 letters, digits, '-', '_' or '.' (it becomes a metric label)"
        )));
    }
    Ok(())
}

/// The prober's instance name, part of every tag it pushes: [a-z0-9]{1,16}.
pub(super) fn validate_instance(instance: &str) -> Result<(), ConfigError> {
    if instance.is_empty()
        || instance.len() > 16
        || !instance
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(invalid(format!(
            "instance: {instance:?} must be 1 to 16 lowercase letters or digits (it is part of every tag the prober pushes)"
        )));
    }
    Ok(())
}

/// A label value taken from config (`size_class`, `path`): short, lowercase, closed.
pub(super) fn validate_label(field: &str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty()
        || value.len() > 32
        || !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(invalid(format!(
            "{field}: {value:?} must be 1 to 32 lowercase letters, digits or '_' (it becomes a metric label)"
        )));
    }
    Ok(())
}

/// OCI distribution spec: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
pub(super) fn validate_repository(field: &str, name: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| {
        invalid(format!(
            "{field}: {name:?} is not a valid repository name: {why}"
        ))
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.len() > 255 {
        return Err(bad("longer than 255 characters"));
    }
    for component in name.split('/') {
        if component.is_empty() {
            return Err(bad("empty path component"));
        }
        let bytes = component.as_bytes();
        if !bytes[0].is_ascii_alphanumeric() || !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
            return Err(bad(
                "components must start and end with a lowercase letter or digit",
            ));
        }
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i];
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && matches!(bytes[i], b'.' | b'_' | b'-') {
                i += 1;
            }
            let sep = &component[start..i];
            let ok = sep == "."
                || sep == "_"
                || sep == "__"
                || (!sep.is_empty() && sep.bytes().all(|b| b == b'-'));
            if !ok {
                return Err(bad(&format!(
                    "invalid character or separator {:?}",
                    if sep.is_empty() {
                        &component[start..start + 1]
                    } else {
                        sep
                    }
                )));
            }
        }
    }
    Ok(())
}

/// "repo@sha256:<hex>" or "repo:tag".
pub(super) fn parse_reference(text: &str) -> Result<Reference, String> {
    let (repository, reference) = if let Some((repo, digest)) = text.split_once('@') {
        crate::oci::digest::Digest::parse(digest).map_err(|e| format!("{text:?}: {e}"))?;
        (repo, digest)
    } else if let Some((repo, tag)) = text.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
        let valid_tag = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            && !tag.starts_with(['.', '-']);
        if !valid_tag {
            return Err(format!("{text:?}: invalid tag {tag:?}"));
        }
        (repo, tag)
    } else {
        return Err(format!(
            "{text:?}: expected repository@sha256:<digest> or repository:tag"
        ));
    };
    validate_repository("repository", repository).map_err(|e| format!("{text:?}: {e}"))?;
    Ok(Reference {
        repository: repository.to_string(),
        reference: reference.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_repository_names_like_the_spec() {
        for ok in ["a", "probe/x", "a.b_c__d---e/f0", "registry-prober/probe"] {
            validate_repository("r", ok).expect(ok);
        }
        for bad in ["", "A", "a//b", "-a", "a-", "a/", "a..b", "a___b", "a:b"] {
            assert!(validate_repository("r", bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn parses_golden_references() {
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            parse_reference(&format!("golden/img@{digest}")).expect("valid"),
            Reference {
                repository: "golden/img".into(),
                reference: digest
            }
        );
        assert_eq!(
            parse_reference("golden/img:v1").expect("valid"),
            Reference {
                repository: "golden/img".into(),
                reference: "v1".into()
            }
        );
        assert!(parse_reference("golden/img").is_err());
        assert!(parse_reference("golden/img@sha256:xyz").is_err());
    }
}
