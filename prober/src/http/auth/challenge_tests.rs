//! Properties of the WWW-Authenticate parser: any text is parsed or refused without a panic
//! and with a short message, and challenges written from a model in every way RFC 7235 allows
//! (scheme and parameter names in any case, parameters in any order, tokens or quoted strings
//! with any escaping, optional whitespace, empty list elements) parse back to the model.

use proptest::prelude::*;

use super::*;
use crate::proptests::cases;

/// How one challenge is written: what it says, a token68 after another scheme, parameters
/// the prober ignores, and the choices the writer makes (letter case, order, quoting,
/// escaping, whitespace), drawn as numbers.
#[derive(Clone, Debug)]
struct Written {
    model: Challenge,
    token68: Option<String>,
    extra: Vec<(String, String)>,
    case_mask: u64,
    order: u64,
    styles: Vec<u8>,
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        // Printable ASCII with space: what a header value can carry in a quoted string.
        "[ -~]{0,30}",
        "https://[a-z0-9.-]{1,20}(:[0-9]{1,5})?/[ -~]{0,20}",
        "repository:[a-z0-9/._-]{1,20}:(pull|push|pull,push|\\*)",
        // Only the characters that matter to the grammar.
        "[\"\\\\,= \t=a]{0,12}",
    ]
}

fn param_name() -> impl Strategy<Value = String> {
    "[a-zA-Z][a-zA-Z0-9!#$%&'*+.^_`|~-]{0,8}".prop_filter("not a parameter the prober reads", |n| {
        !["realm", "service", "scope"]
            .iter()
            .any(|k| k.eq_ignore_ascii_case(n))
    })
}

/// A challenge, and the token68 written after it (another scheme only).
fn model() -> impl Strategy<Value = (Challenge, Option<String>)> {
    prop_oneof![
        proptest::option::of(value()).prop_map(|realm| (Challenge::Basic { realm }, None)),
        (
            value(),
            proptest::option::of(value()),
            proptest::option::of(value())
        )
            .prop_map(|(realm, service, scope)| (
                Challenge::Bearer {
                    realm,
                    service,
                    scope
                },
                None
            )),
        (
            "[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,10}".prop_filter("another scheme", |s| {
                !s.eq_ignore_ascii_case("basic") && !s.eq_ignore_ascii_case("bearer")
            }),
            proptest::option::of("[A-Za-z0-9._~+/-]{1,20}={0,2}"),
        )
            .prop_map(|(scheme, token68)| (Challenge::Other { scheme }, token68)),
    ]
}

fn written() -> impl Strategy<Value = Written> {
    (
        model(),
        proptest::collection::vec((param_name(), value()), 0..3),
        any::<u64>(),
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 32),
    )
        .prop_map(
            |((model, token68), extra, case_mask, order, styles)| Written {
                model,
                token68,
                extra,
                case_mask,
                order,
                styles,
            },
        )
}

/// Hands out the writer's choices one by one.
struct Choices<'a> {
    styles: &'a [u8],
    next: usize,
}

impl Choices<'_> {
    fn pick(&mut self) -> u8 {
        let b = self.styles[self.next % self.styles.len()];
        self.next += 1;
        b
    }

    fn one_in(&mut self, n: u8) -> bool {
        self.pick().is_multiple_of(n)
    }

    fn ows(&mut self) -> &'static str {
        ["", "", " ", "\t", "  "][usize::from(self.pick()) % 5]
    }
}

/// `name` with the letters whose bit is set in `mask` flipped in case.
fn recase(name: &str, mask: u64) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 64) & 1 == 1 {
                if c.is_ascii_lowercase() {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            } else {
                c
            }
        })
        .collect()
}

/// A parameter value: a bare token when it is one and the writer likes, else a quoted string
/// with `"` and `\` escaped and any other character escaped at the writer's whim.
fn write_value(v: &str, choices: &mut Choices<'_>) -> String {
    if !v.is_empty() && v.bytes().all(is_tchar) && choices.one_in(2) {
        return v.to_owned();
    }
    let mut out = String::from('"');
    for c in v.chars() {
        if c == '"' || c == '\\' || choices.one_in(8) {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn write_challenge(w: &Written) -> String {
    let mut choices = Choices {
        styles: &w.styles,
        next: 0,
    };
    let (scheme, mut params): (&str, Vec<(&str, &str)>) = match &w.model {
        Challenge::Basic { realm } => (
            "Basic",
            realm.iter().map(|r| ("realm", r.as_str())).collect(),
        ),
        Challenge::Bearer {
            realm,
            service,
            scope,
        } => {
            let mut p = vec![("realm", realm.as_str())];
            p.extend(service.iter().map(|s| ("service", s.as_str())));
            p.extend(scope.iter().map(|s| ("scope", s.as_str())));
            ("Bearer", p)
        }
        Challenge::Other { scheme, .. } => (scheme.as_str(), Vec::new()),
    };
    // Basic and Bearer in any case; another scheme is reported as written.
    let mut out = match &w.model {
        Challenge::Other { .. } => scheme.to_owned(),
        _ => recase(scheme, w.case_mask),
    };
    if let Some(t) = &w.token68 {
        out.push(' ');
        out.push_str(t);
        return out;
    }
    params.extend(w.extra.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    // A shuffle driven by `order`, so it shrinks with the rest.
    let mut order = w.order;
    for i in (1..params.len()).rev() {
        let j = (order % (i as u64 + 1)) as usize;
        order /= i as u64 + 1;
        params.swap(i, j);
    }
    for (i, (name, value)) in params.iter().enumerate() {
        out.push_str(if i == 0 { " " } else { "," });
        if i > 0 {
            out.push_str(choices.ows());
            if choices.one_in(6) {
                out.push(',');
                out.push_str(choices.ows());
            }
        }
        out.push_str(&recase(name, w.case_mask.rotate_left(i as u32 * 7)));
        out.push_str(choices.ows());
        out.push('=');
        out.push_str(choices.ows());
        out.push_str(&write_value(value, &mut choices));
        out.push_str(choices.ows());
    }
    out
}

/// A header of several challenges, with empty list elements and whitespace between them.
fn header_of(challenges: &[Written], separators: &[u8]) -> String {
    let mut header = String::new();
    for (i, w) in challenges.iter().enumerate() {
        if i > 0 {
            let sep = separators[i % separators.len()];
            header.push_str([",", ", ", " ,", ", ,", ",\t"][usize::from(sep) % 5]);
        }
        header.push_str(&write_challenge(w));
    }
    header
}

/// An error message stays short however long the header: the header is quoted up to 200
/// characters.
fn assert_short(e: &ChallengeError) {
    let message = e.to_string();
    assert!(
        message.chars().count() <= MAX_QUOTED_HEADER + 120,
        "{} characters: {message}",
        message.chars().count()
    );
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn any_text_is_parsed_or_refused_with_a_short_message(header in any::<String>()) {
        if let Err(e) = parse_challenges(&header) {
            assert_short(&e);
        }
    }

    #[test]
    fn any_header_of_grammar_characters_is_parsed_or_refused(
        header in "[A-Za-z=,\" \t\\\\/+.~_-]{0,600}"
    ) {
        if let Err(e) = parse_challenges(&header) {
            assert_short(&e);
        }
    }

    #[test]
    fn challenges_written_any_valid_way_parse_back_to_what_was_written(
        challenges in proptest::collection::vec(written(), 1..4),
        separators in proptest::collection::vec(any::<u8>(), 4),
    ) {
        let header = header_of(&challenges, &separators);
        let parsed = parse_challenges(&header);
        let want: Vec<Challenge> = challenges.iter().map(|w| w.model.clone()).collect();
        prop_assert_eq!(parsed.ok(), Some(want), "header: {}", header);
    }

    #[test]
    fn a_cut_or_changed_valid_header_is_parsed_or_refused(
        challenges in proptest::collection::vec(written(), 1..3),
        cut in any::<prop::sample::Index>(),
        insert in prop::sample::select(vec!['"', '\\', ',', '=', ' ', 'x', '\t']),
    ) {
        let header = header_of(&challenges, &[1]);
        let at = cut.index(header.len() + 1);
        if let Some(prefix) = header.get(..at) {
            if let Err(e) = parse_challenges(prefix) {
                assert_short(&e);
            }
            let changed = format!("{prefix}{insert}{}", &header[at..]);
            if let Err(e) = parse_challenges(&changed) {
                assert_short(&e);
            }
        }
    }
}

/// Found by the grammar property: a token68 whose first characters are a token (`YIIab==`) was
/// read as a parameter without a value, and the whole header refused.
#[test]
fn a_token68_ending_in_padding_is_skipped_not_read_as_a_parameter() {
    assert_eq!(
        parse_challenges(r#"Negotiate YIIab==, Basic realm="x""#).unwrap(),
        vec![
            Challenge::Other {
                scheme: "Negotiate".to_owned()
            },
            Challenge::Basic {
                realm: Some("x".to_owned())
            }
        ]
    );
}
