//! The small builders every part of a generated record uses: zero-padded digits and JSON
//! objects built from pairs already in key order.
//!
//! They exist because the generator is a hot path (benchmarks feed pipelines from it):
//! pushing digits straight into a `String` avoids `format!`'s machinery, and building a
//! `serde_json::Map` from sorted pairs lets it bulk-build instead of searching per key. This
//! module knows nothing about CTRs.

use serde_json::Value;

/// Appends the low `width` decimal digits of `n`, zero-padded.
pub(super) fn push_digits(s: &mut String, n: u64, width: u32) {
    let mut div = 10u64.saturating_pow(width.saturating_sub(1));
    for _ in 0..width {
        s.push(char::from(b'0' + (n / div % 10) as u8));
        div /= 10;
    }
}

/// `prefix` followed by the low `width` digits of `n`, zero-padded (`CASE-00001234`).
pub(super) fn numbered(prefix: &str, n: u64, width: u32) -> String {
    let mut s = String::with_capacity(prefix.len() + width as usize);
    s.push_str(prefix);
    push_digits(&mut s, n, width);
    s
}

/// A JSON object from `(key, value)` pairs; pass them in key order for speed.
pub(super) fn obj<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

pub(super) fn str_val(s: &str) -> Value {
    Value::String(s.to_owned())
}

/// Connect's attributes are all strings, booleans included.
pub(super) fn bool_val(b: bool) -> Value {
    str_val(if b { "true" } else { "false" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_zero_padded_and_truncated_to_width() {
        let mut s = String::new();
        push_digits(&mut s, 42, 4);
        assert_eq!(s, "0042");
        assert_eq!(numbered("REQ-", 1_234_567, 7), "REQ-1234567");
        // Only the low digits: the width is part of the format.
        assert_eq!(numbered("", 123_456, 3), "456");
    }

    #[test]
    fn objects_keep_the_given_order() {
        let v = obj([("A", Value::from(1)), ("B", bool_val(true))]);
        assert_eq!(v.to_string(), r#"{"A":1,"B":"true"}"#);
    }
}
