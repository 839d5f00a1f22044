//! Sizes as the config writes them: a number of bytes or "4KiB", "1 MiB", "16MB". Hand-rolled
//! (30 lines) so the units accepted stay exactly the documented ones and every message names
//! the field, quotes the value and says what was expected.

use super::raw::RawSize;
use super::{invalid, ConfigError};

/// The largest layer: 64 GiB.
const MAX_LAYER_SIZE: u64 = 64 * 1024 * 1024 * 1024;
/// The most layers an image may have.
pub(super) const MAX_LAYERS: i64 = 128;

/// Parses "4KiB", "1 MiB", "16MB", "512" (bytes). Binary and decimal units, case-insensitive.
pub(super) fn parse_size(field: &str, raw: &RawSize) -> Result<u64, ConfigError> {
    let bad = |why: &str| invalid(format!("{field}: invalid size {raw}: {why}"));
    let bytes = match raw {
        RawSize::Bytes(n) if *n < 0 => return Err(bad("a size cannot be negative")),
        RawSize::Bytes(n) => *n as u64,
        RawSize::Text(text) => {
            let t = text.trim();
            if t.starts_with('-') {
                return Err(bad("a size cannot be negative"));
            }
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            if num.is_empty() {
                return Err(bad(
                    "expected a number followed by an optional unit, e.g. \"4KiB\" or \"16MiB\"",
                ));
            }
            let n: u64 = num.parse().map_err(|_| bad("number too large"))?;
            let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "k" | "kb" => 1000,
                "kib" | "ki" => 1 << 10,
                "m" | "mb" => 1_000_000,
                "mib" | "mi" => 1 << 20,
                "g" | "gb" => 1_000_000_000,
                "gib" | "gi" => 1 << 30,
                other => {
                    return Err(bad(&format!(
                        "unknown unit {other:?} (use B, KiB, MiB, GiB, KB, MB or GB)"
                    )))
                }
            };
            n.checked_mul(mult).ok_or_else(|| bad("too large"))?
        }
    };
    if bytes > MAX_LAYER_SIZE {
        return Err(bad(&format!(
            "larger than the maximum of {MAX_LAYER_SIZE} bytes (64 GiB)"
        )));
    }
    Ok(bytes)
}

/// A list of layer sizes: at least one, at most [`MAX_LAYERS`], each named by its index.
pub(super) fn size_list(field: &str, sizes: &[RawSize]) -> Result<Vec<u64>, ConfigError> {
    if sizes.is_empty() {
        return Err(invalid(format!("{field}: at least one layer is required")));
    }
    if sizes.len() > MAX_LAYERS as usize {
        return Err(invalid(format!(
            "{field}: {} layers is too many (at most {MAX_LAYERS})",
            sizes.len()
        )));
    }
    sizes
        .iter()
        .enumerate()
        .map(|(i, s)| parse_size(&format!("{field}[{i}]"), s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_with_units() {
        let s = |t: &str| parse_size("f", &RawSize::Text(t.into()));
        assert_eq!(s("4KiB").expect("valid"), 4096);
        assert_eq!(s("1 MiB").expect("valid"), 1 << 20);
        assert_eq!(s("16MB").expect("valid"), 16_000_000);
        assert_eq!(s("512").expect("valid"), 512);
        assert_eq!(parse_size("f", &RawSize::Bytes(7)).expect("valid"), 7);
        assert_eq!(
            s("-1MiB").expect_err("negative").to_string(),
            "f: invalid size \"-1MiB\": a size cannot be negative"
        );
        assert_eq!(
            s("3 parsecs").expect_err("unit").to_string(),
            "f: invalid size \"3 parsecs\": unknown unit \"parsecs\" (use B, KiB, MiB, GiB, KB, MB or GB)"
        );
    }
}
