//! Verification: bytes streamed through sha256 and counted, compared with the digest and
//! length that were pushed.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

const SHA256_PREFIX: &str = "sha256:";
const SHA256_HEX_LEN: usize = 64;
/// Digests come from registry headers and manifests; an error quoting one is cut here so a
/// hostile or broken server cannot flood a log line.
const MAX_QUOTED_LEN: usize = 200;

/// A content digest, "sha256:" followed by 64 lowercase hex characters.
///
/// sha256 is the only algorithm we produce, and the only one we accept: a registry answering
/// with another algorithm for content we pushed as sha256 is itself a finding.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error(
        "invalid digest \"{value}\": expected \"sha256:\" followed by 64 lowercase hex characters"
    )]
    MissingAlgorithm { value: String },
    #[error("invalid digest \"{value}\": unsupported algorithm \"{algorithm}\", only sha256 is supported")]
    UnsupportedAlgorithm { value: String, algorithm: String },
    #[error("invalid digest \"{value}\": expected 64 hex characters after \"sha256:\", got {len}")]
    WrongLength { value: String, len: usize },
    #[error("invalid digest \"{value}\": {found:?} at position {position} is not lowercase hex")]
    NotLowercaseHex {
        value: String,
        found: char,
        position: usize,
    },
}

impl Digest {
    /// Parses "sha256:<64 lowercase hex>". Uppercase hex is rejected rather than normalised:
    /// the OCI spec requires lowercase, and comparing digests as strings relies on it.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let Some((algorithm, encoded)) = s.split_once(':') else {
            return Err(DigestError::MissingAlgorithm { value: quoted(s) });
        };
        if algorithm != "sha256" {
            return Err(DigestError::UnsupportedAlgorithm {
                value: quoted(s),
                algorithm: quoted(algorithm),
            });
        }
        if let Some((offset, found)) = encoded
            .char_indices()
            .find(|&(_, c)| !matches!(c, '0'..='9' | 'a'..='f'))
        {
            return Err(DigestError::NotLowercaseHex {
                value: quoted(s),
                found,
                position: SHA256_PREFIX.len() + offset,
            });
        }
        if encoded.len() != SHA256_HEX_LEN {
            return Err(DigestError::WrongLength {
                value: quoted(s),
                len: encoded.len(),
            });
        }
        Ok(Digest(s.to_owned()))
    }

    /// The whole digest, "sha256:...".
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex characters after "sha256:".
    pub fn hex(&self) -> &str {
        &self.0[SHA256_PREFIX.len()..]
    }

    /// The sha256 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_sha256(Sha256::digest(bytes).into())
    }

    /// The digest whose sha256 hash is `hash`.
    pub fn from_sha256(hash: [u8; 32]) -> Digest {
        let mut s = String::with_capacity(SHA256_PREFIX.len() + SHA256_HEX_LEN);
        s.push_str(SHA256_PREFIX);
        s.push_str(&hex::encode(hash));
        Digest(s)
    }
}

/// Cuts a value quoted in an error to `MAX_QUOTED_LEN` characters.
fn quoted(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED_LEN) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_owned(),
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Digest, DigestError> {
        Digest::parse(s)
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<Digest> for String {
    fn from(digest: Digest) -> String {
        digest.0
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Deserializing validates, so a manifest read back from a registry cannot smuggle in a
/// digest we would not accept from a header.
impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Streams bytes through sha256 and counts them; compares with what was pushed.
pub struct Verifier {
    expected: Digest,
    expected_len: u64,
    hasher: Sha256,
    seen: u64,
    /// Set once more bytes arrived than expected; from then on nothing is hashed.
    overflowed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    #[error("size mismatch: expected {expected} bytes, got {actual} bytes{}", if *more { " (or more)" } else { "" })]
    Size {
        expected: u64,
        actual: u64,
        more: bool,
    },
    #[error("digest mismatch: expected {expected}, got {actual} ({len} bytes)")]
    Digest {
        expected: Digest,
        actual: Digest,
        len: u64,
    },
}

impl Verifier {
    pub fn new(expected: Digest, expected_len: u64) -> Self {
        Verifier {
            expected,
            expected_len,
            hasher: Sha256::new(),
            seen: 0,
            overflowed: false,
        }
    }

    /// Feeds one chunk. Fails as soon as more bytes arrived than expected (the caller then
    /// stops reading: a blob longer than declared must not be read without bound).
    pub fn update(&mut self, chunk: &[u8]) -> Result<(), Mismatch> {
        // usize -> u64 is lossless on every target we build for.
        self.seen = self.seen.saturating_add(chunk.len() as u64);
        if self.overflowed || self.seen > self.expected_len {
            self.overflowed = true;
            return Err(self.size_mismatch());
        }
        // Hashed in place: this is the hot path for multi-GB blobs, so no copy.
        self.hasher.update(chunk);
        Ok(())
    }

    /// Bytes fed so far, including those of a chunk that overflowed the expected length.
    pub fn bytes_seen(&self) -> u64 {
        self.seen
    }

    /// Ends the stream: Ok(bytes) when digest and length match. Length is checked first: a
    /// short body is a size mismatch, not a digest mismatch.
    pub fn finish(self) -> Result<u64, Mismatch> {
        if self.overflowed || self.seen != self.expected_len {
            return Err(self.size_mismatch());
        }
        let actual = Digest::from_sha256(self.hasher.finalize().into());
        if actual != self.expected {
            return Err(Mismatch::Digest {
                expected: self.expected,
                actual,
                len: self.seen,
            });
        }
        Ok(self.seen)
    }

    fn size_mismatch(&self) -> Mismatch {
        Mismatch::Size {
            expected: self.expected_len,
            actual: self.seen,
            more: self.overflowed,
        }
    }
}

#[cfg(test)]
#[path = "digest_properties.rs"]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const ABC: &str = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn parses_a_sha256_digest_and_splits_off_its_hex() {
        let digest = Digest::parse(ABC).unwrap();
        assert_eq!(digest.as_str(), ABC);
        assert_eq!(
            digest.hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(digest.to_string(), ABC);
        assert_eq!(ABC.parse::<Digest>().unwrap(), digest);
    }

    #[test]
    fn hashes_bytes_to_the_known_sha256_values() {
        assert_eq!(Digest::of(b"").as_str(), EMPTY);
        assert_eq!(Digest::of(b"abc").as_str(), ABC);
    }

    #[test]
    fn builds_a_digest_from_a_raw_hash() {
        assert_eq!(
            Digest::from_sha256([0xab; 32]).as_str(),
            format!("sha256:{}", "ab".repeat(32))
        );
    }

    #[test]
    fn rejects_a_digest_with_uppercase_hex() {
        let value = ABC.to_uppercase().replace("SHA256", "sha256");
        let err = Digest::parse(&value).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("invalid digest \"{value}\": 'B' at position 7 is not lowercase hex")
        );
    }

    #[test]
    fn rejects_another_algorithm_naming_it() {
        let err = Digest::parse("sha512:abcd").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid digest \"sha512:abcd\": unsupported algorithm \"sha512\", only sha256 is supported"
        );
    }

    #[test]
    fn rejects_a_digest_without_an_algorithm() {
        let err = Digest::parse("abcd").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid digest \"abcd\": expected \"sha256:\" followed by 64 lowercase hex characters"
        );
    }

    #[test]
    fn rejects_a_digest_with_too_few_hex_characters() {
        let err = Digest::parse(&ABC[..ABC.len() - 1]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "invalid digest \"{}\": expected 64 hex characters after \"sha256:\", got 63",
                &ABC[..ABC.len() - 1]
            )
        );
    }

    #[test]
    fn rejects_a_non_hex_character_even_when_multibyte() {
        let err = Digest::parse("sha256:é").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid digest \"sha256:é\": 'é' at position 7 is not lowercase hex"
        );
    }

    #[test]
    fn cuts_a_long_value_in_an_error_to_200_characters() {
        let value = format!("sha256:{}", "z".repeat(500));
        let DigestError::NotLowercaseHex { value: quoted, .. } = Digest::parse(&value).unwrap_err()
        else {
            panic!("expected NotLowercaseHex");
        };
        assert_eq!(quoted, format!("sha256:{}...", "z".repeat(193)));
    }

    #[test]
    fn serializes_as_a_string_and_validates_when_deserializing() {
        let digest = Digest::parse(ABC).unwrap();
        assert_eq!(
            serde_json::to_string(&digest).unwrap(),
            format!("\"{ABC}\"")
        );
        let back: Digest = serde_json::from_str(&format!("\"{ABC}\"")).unwrap();
        assert_eq!(back, digest);
        let err = serde_json::from_str::<Digest>("\"md5:00\"").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid digest \"md5:00\": unsupported algorithm \"md5\", only sha256 is supported"
        );
    }

    #[test]
    fn accepts_a_stream_matching_digest_and_length_in_any_chunking() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let digest = Digest::of(&data);
        for chunk in [1, 7, 4096, 10_000] {
            let mut verifier = Verifier::new(digest.clone(), 10_000);
            for part in data.chunks(chunk) {
                verifier.update(part).unwrap();
            }
            assert_eq!(verifier.bytes_seen(), 10_000);
            assert_eq!(verifier.finish(), Ok(10_000));
        }
    }

    #[test]
    fn accepts_an_empty_blob() {
        let verifier = Verifier::new(Digest::parse(EMPTY).unwrap(), 0);
        assert_eq!(verifier.finish(), Ok(0));
    }

    #[test]
    fn fails_as_soon_as_more_bytes_arrive_than_expected() {
        let data = vec![7u8; 1_048_577];
        let mut verifier = Verifier::new(Digest::of(&data[..1_048_576]), 1_048_576);
        verifier.update(&data[..1_048_576]).unwrap();
        let err = verifier.update(&data[1_048_576..]).unwrap_err();
        assert_eq!(
            err,
            Mismatch::Size {
                expected: 1_048_576,
                actual: 1_048_577,
                more: true
            }
        );
        assert_eq!(
            err.to_string(),
            "size mismatch: expected 1048576 bytes, got 1048577 bytes (or more)"
        );
        // A caller that ignores the error and finishes still gets the overflow.
        assert_eq!(verifier.finish(), Err(err));
    }

    #[test]
    fn keeps_failing_after_an_overflow() {
        let mut verifier = Verifier::new(Digest::of(b"ab"), 2);
        assert!(verifier.update(b"abc").is_err());
        assert_eq!(
            verifier.update(b""),
            Err(Mismatch::Size {
                expected: 2,
                actual: 3,
                more: true
            })
        );
    }

    #[test]
    fn reports_a_short_body_as_a_size_mismatch_not_a_digest_mismatch() {
        let data = vec![1u8; 1000];
        let mut verifier = Verifier::new(Digest::of(&vec![1u8; 1024]), 1024);
        verifier.update(&data).unwrap();
        let err = verifier.finish().unwrap_err();
        assert_eq!(
            err,
            Mismatch::Size {
                expected: 1024,
                actual: 1000,
                more: false
            }
        );
        assert_eq!(
            err.to_string(),
            "size mismatch: expected 1024 bytes, got 1000 bytes"
        );
    }

    #[test]
    fn reports_a_digest_mismatch_when_a_byte_is_corrupted() {
        let mut verifier = Verifier::new(Digest::of(b"abd"), 3);
        verifier.update(b"abc").unwrap();
        let err = verifier.finish().unwrap_err();
        assert_eq!(
            err,
            Mismatch::Digest {
                expected: Digest::of(b"abd"),
                actual: Digest::parse(ABC).unwrap(),
                len: 3
            }
        );
        assert_eq!(
            err.to_string(),
            format!(
                "digest mismatch: expected {}, got {ABC} (3 bytes)",
                Digest::of(b"abd")
            )
        );
    }
}
