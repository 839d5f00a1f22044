//! Reading the YAML: serde-saphyr, read as serde_yaml read it (YAML 1.2 booleans, no merge
//! keys), with serde_path_to_error so a message names the key path as well as line and column:
//! `targets[0].interval: invalid value: string "3x", expected a duration at line 4, column 5`.

use std::fmt;

use serde_saphyr::options::MergeKeyPolicy;

use super::raw::RawConfig;

/// A config that is not YAML, or YAML that does not fit the config's shape.
#[derive(Debug)]
pub struct YamlError {
    /// Where in the document, e.g. "targets[0].interval"; empty at the top.
    path: String,
    /// What was wrong, ending with the line and column.
    message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for YamlError {}

impl RawConfig {
    /// Parses a config file's text; nothing is validated yet (see [`RawConfig::validate`]).
    pub fn from_yaml(text: &str) -> Result<RawConfig, YamlError> {
        let options = serde_saphyr::options! {
            // One line a message: it goes to logs and to `check-config` as one line.
            with_snippet: false,
            // `allow_plain_http: yes` is an error, not true, as with serde_yaml and YAML 1.2.
            strict_booleans: true,
            // `<<` is a key like any other (so an unknown one), as with serde_yaml.
            merge_keys: MergeKeyPolicy::AsOrdinary,
        };
        let mut path = String::new();
        serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
            serde_path_to_error::deserialize(de).map_err(|e| {
                // "?" stands for a key not read yet, as in a syntax error: say no more than known.
                let known = e.path().to_string();
                path = known
                    .trim_end_matches('?')
                    .trim_end_matches('.')
                    .to_string();
                e.into_inner()
            })
        })
        .map_err(|e| YamlError {
            path,
            message: message(&e, text),
        })
    }
}

/// The parser's message, except where it speaks to programmers (the API to call instead) or
/// leaves out the value.
fn message(e: &serde_saphyr::Error, text: &str) -> String {
    let Some(at) = e.location() else {
        return e.to_string();
    };
    let (line, column) = (at.line(), at.column());
    match e {
        serde_saphyr::Error::MultipleDocuments { .. } => format!(
            "a config file holds one YAML document; a second one begins at line {line}, column {column}"
        ),
        serde_saphyr::Error::InvalidBooleanStrict { .. } => format!(
            "invalid boolean {:?} (expected true or false) at line {line}, column {column}",
            scalar_at(text, line, column)
        ),
        _ => e.to_string(),
    }
}

/// The plain scalar starting at a 1-based line and column, up to a comment or the line's end.
fn scalar_at(text: &str, line: u64, column: u64) -> String {
    let line = text
        .lines()
        .nth(line.saturating_sub(1) as usize)
        .unwrap_or("");
    let rest: String = line
        .chars()
        .skip(column.saturating_sub(1) as usize)
        .collect();
    let value = rest.split(" #").next().unwrap_or("");
    value.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(yaml: &str) -> String {
        RawConfig::from_yaml(yaml)
            .expect_err("must be rejected")
            .to_string()
    }

    #[test]
    fn a_syntax_error_says_where() {
        assert_eq!(
            error("targets:\n  - name: \"local\n    registry: http://127.0.0.1:5000\n"),
            "targets[0]: unclosed quote at line 2, column 11"
        );
        assert_eq!(
            error("targets:\n  - name: a: b\n"),
            "targets[0]: mapping values are not allowed in this context at line 2, column 12"
        );
    }

    #[test]
    fn a_wrong_type_names_the_key_and_quotes_the_value() {
        assert_eq!(
            error("targets:\n  - name: a\n    allow_plain_http: yes\n"),
            "targets[0].allow_plain_http: invalid boolean \"yes\" (expected true or false) at line 3, column 23"
        );
        assert_eq!(
            error("shutdown_grace: 3 fortnights\n"),
            "shutdown_grace: invalid value: string \"3 fortnights\", expected a duration at line 1, column 1"
        );
    }

    #[test]
    fn merge_keys_and_second_documents_are_refused() {
        assert!(
            error("targets:\n  - <<: {name: a}\n").contains("unknown field `<<`"),
            "merge keys are ordinary keys"
        );
        assert_eq!(
            error("targets: []\n---\ntargets: []\n"),
            "a config file holds one YAML document; a second one begins at line 3, column 1"
        );
    }

    #[test]
    fn an_empty_file_is_an_empty_config() {
        let raw = RawConfig::from_yaml("# nothing yet\n").expect("parses");
        assert!(raw.targets.is_empty());
    }
}
