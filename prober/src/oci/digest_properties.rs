//! Properties of digests and the streaming verifier: any text is a digest exactly when it is
//! `sha256:` and 64 lowercase hex, refused otherwise with a short message; digests round-trip
//! through text and serde; the verifier accepts exactly the bytes it was given, in any
//! chunking, and names a short, long or changed body as such.

use proptest::prelude::*;

use super::*;
use crate::proptests::cases;

fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A valid digest with one thing changed: a character replaced, removed or added.
fn near_digest() -> impl Strategy<Value = String> {
    (
        any::<[u8; 32]>(),
        0usize..71,
        prop_oneof![
            Just('A'),
            Just('g'),
            Just('é'),
            Just(':'),
            Just(' '),
            Just('0')
        ],
        0u8..3,
    )
        .prop_map(|(hash, at, c, how)| {
            let mut s: Vec<char> = Digest::from_sha256(hash).as_str().chars().collect();
            match how {
                0 => s[at] = c,
                1 => {
                    s.remove(at);
                }
                _ => s.insert(at, c),
            }
            s.into_iter().collect()
        })
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn any_text_is_a_digest_exactly_when_it_is_sha256_and_64_lowercase_hex(
        s in prop_oneof![any::<String>(), near_digest(), "sha256:[0-9a-fA-F]{60,68}"],
    ) {
        match Digest::parse(&s) {
            Ok(d) => {
                prop_assert!(is_digest(&s), "{}", s);
                prop_assert_eq!(d.as_str(), s.as_str());
                prop_assert_eq!(d.hex().len(), 64);
            }
            Err(e) => {
                prop_assert!(!is_digest(&s), "{}", s);
                // The value is quoted up to 200 characters, and at most twice (as the
                // algorithm too).
                prop_assert!(e.to_string().chars().count() <= 2 * (MAX_QUOTED_LEN + 3) + 100);
            }
        }
    }

    #[test]
    fn a_digest_round_trips_through_text_and_json(hash in any::<[u8; 32]>()) {
        let d = Digest::from_sha256(hash);
        prop_assert_eq!(d.hex(), hex::encode(hash));
        prop_assert_eq!(Digest::parse(d.as_str()).ok(), Some(d.clone()));
        let json = serde_json::to_string(&d).expect("serializes");
        prop_assert_eq!(serde_json::from_str::<Digest>(&json).ok(), Some(d));
    }

    #[test]
    fn the_verifier_accepts_exactly_the_bytes_it_was_given_in_any_chunking(
        data in proptest::collection::vec(any::<u8>(), 0..2048),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
        at.sort_unstable();
        let mut verifier = Verifier::new(Digest::of(&data), data.len() as u64);
        let mut from = 0;
        for to in at.into_iter().chain([data.len()]) {
            verifier.update(&data[from..to]).expect("never more than expected");
            from = to;
        }
        prop_assert_eq!(verifier.finish(), Ok(data.len() as u64));
    }

    #[test]
    fn the_verifier_names_a_short_long_or_changed_body(
        data in proptest::collection::vec(any::<u8>(), 1..2048),
        at in any::<prop::sample::Index>(),
        change in 0u8..3,
    ) {
        let expected = Digest::of(&data);
        let len = data.len() as u64;
        let mut got = data.clone();
        let i = at.index(data.len());
        match change {
            0 => got[i] ^= 0x01,
            1 => got.truncate(i),
            _ => got.insert(i, 0),
        }
        let mut verifier = Verifier::new(expected, len);
        let fed = verifier.update(&got);
        let result = fed.and_then(|()| verifier.finish());
        let want_size = got.len() as u64 != len;
        match result {
            Err(Mismatch::Size { expected, actual, more }) => {
                prop_assert!(want_size);
                prop_assert_eq!(expected, len);
                prop_assert_eq!(actual, got.len() as u64);
                prop_assert_eq!(more, actual > len);
            }
            Err(Mismatch::Digest { actual, .. }) => {
                prop_assert!(!want_size);
                prop_assert_eq!(actual, Digest::of(&got));
            }
            Ok(n) => prop_assert!(false, "accepted a changed body of {} bytes", n),
        }
    }
}
