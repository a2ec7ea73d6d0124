//! A record's JSON text: reading it (parsing from text validated once) and writing it (the
//! same bytes as `serde_json::to_writer`, faster).
//!
//! **Reading.** serde_json parsing from bytes (`from_slice`) checks that every string it meets
//! is UTF-8, one call per string: a contact record has a hundred short strings. [`parse`] and
//! [`parse_first`] check the whole document once (a vectorised pass) and parse it as text,
//! which skips those checks: parsing is 1.14× faster on the published samples and 1.32× on
//! the throughput benchmark's records (docs/performance.md). The text is then read by
//! [`parser`], which builds serde_json's tree without serde's visitor plumbing and leaves
//! everything unusual (every error above all) to serde_json. Text that is not UTF-8 is parsed
//! from bytes as before, so its error is serde_json's, with its position.
//!
//! **Writing.** Every record leaves the runtime as JSON text at least once (a lake line, a
//! SQLite column holding a nested object, a value handed to a plugin), and the profile of the
//! throughput graph had serde_json's string escaping as its largest single item (8% of the
//! CPU): it writes each string through `io::Write` in several calls and looks up every byte
//! in a table. This writer appends to a `Vec<u8>` it has reserved, and copies the runs of a
//! string that need no escape sixteen bytes at a time, looking for escapes as it copies. Its
//! output is byte for byte serde_json's compact form (integers through `itoa`, as serde_json
//! writes them; floats through serde_json itself), which the tests check on every real
//! sample and on every byte that needs an escape. docs/performance.md gives the A/B.

use serde_json::Value;

mod parser;

/// Parses one JSON document: `serde_json::from_slice`'s result, checking UTF-8 once.
pub fn parse(bytes: &[u8]) -> serde_json::Result<Value> {
    match std::str::from_utf8(bytes) {
        Ok(text) => match parser::parse(text) {
            Some(doc) => Ok(doc),
            None => serde_json::from_str(text),
        },
        Err(_) => serde_json::from_slice(bytes),
    }
}

/// The first JSON document of `bytes` and the length of the text it took (through any white
/// space before it), when `bytes` is UTF-8 and starts with a whole document; `None` otherwise
/// (text to read from bytes, a document that goes on past `bytes`, a syntax error).
pub fn parse_first(bytes: &[u8]) -> Option<(Value, usize)> {
    let text = std::str::from_utf8(bytes).ok()?;
    if let Some(found) = parser::parse_first(text) {
        return Some(found);
    }
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let doc = stream.next()?.ok()?;
    Some((doc, stream.byte_offset()))
}

/// Appends `value`'s compact JSON text to `out`: exactly what `serde_json::to_writer` writes.
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, key);
                out.push(b':');
                write_value(out, item);
            }
            out.push(b'}');
        }
    }
}

/// `value`'s compact JSON text as a `String`: what `serde_json::to_string` returns.
pub fn to_string(value: &Value) -> String {
    let mut out = Vec::with_capacity(128);
    write_value(&mut out, value);
    // Only UTF-8 goes in: the strings are `str`, the escapes and numbers ASCII.
    String::from_utf8(out).expect("JSON text written from str is UTF-8")
}

fn write_number(out: &mut Vec<u8>, n: &serde_json::Number) {
    if let Some(u) = n.as_u64() {
        out.extend_from_slice(itoa::Buffer::new().format(u).as_bytes());
    } else if let Some(i) = n.as_i64() {
        out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
    } else {
        // Floats (rare in a contact record): serde_json's own formatting, so the text is
        // the same whatever its rules for non-finite or shortest forms.
        let _ = serde_json::to_writer(&mut *out, n);
    }
}

/// Appends `s` as a JSON string, quoted and escaped the way serde_json escapes.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    let start = out.len();
    // SAFETY: `reserve` made room for `bytes.len() + 2` bytes past `start`. The opening quote
    // and `copy_plain` write within the first `bytes.len() + 1` of them (`copy_plain`
    // writes only inside `dst[..bytes.len()]`), and `set_len` covers only bytes written: the
    // quote, then the `plain` bytes `copy_plain` copied (it says it wrote all of those).
    let plain = unsafe {
        let dst = out.as_mut_ptr().add(start);
        dst.write(b'"');
        let plain = copy_plain(dst.add(1), bytes);
        if plain == bytes.len() {
            dst.add(1 + plain).write(b'"');
            out.set_len(start + plain + 2);
            return;
        }
        out.set_len(start + 1 + plain);
        plain
    };
    let mut start = plain;
    while let Some(i) = next_escape(bytes, start) {
        out.extend_from_slice(&bytes[start..i]);
        let b = bytes[i];
        match ESCAPE[b as usize] {
            b'u' => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xF) as usize]]);
            }
            other => out.extend_from_slice(&[b'\\', other]),
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Copies the start of `bytes` that needs no escape to `dst` and says how long it is (all of
/// `bytes` for nearly every string a record holds), writing only inside
/// `dst[..bytes.len()]`, and all of `dst[..returned]`. The copies are of fixed sizes (sixteen
/// bytes, or two overlapping words of eight), which the compiler makes single moves, where
/// copying a string's length is a call to `memcpy`; and the bytes go straight to the buffer
/// reserved for them, not through `Vec`'s checks at each step. A record's strings are short
/// (a key, an id, a name): measured with callgrind on the throughput graph, a run's strings
/// took 107 million instructions this way and 167 million with a `memcpy` call, `Vec`'s
/// checks and (under sixteen bytes) a padded copy for each (docs/performance.md, eighteenth
/// round).
///
/// # Safety
/// `dst` must be valid for writes of `bytes.len()` bytes.
#[cfg(target_arch = "x86_64")]
#[inline]
unsafe fn copy_plain(dst: *mut u8, bytes: &[u8]) -> usize {
    let n = bytes.len();
    let src = bytes.as_ptr();
    // SAFETY (every write below): each is of bytes `dst[k..k + m]` with `k + m <= n`,
    // which the caller's promise covers; each read is inside `bytes`.
    unsafe {
        if n >= 16 {
            let mut i = 0;
            while i + 16 <= n {
                let mask = sse2::escapes(&*src.add(i).cast::<[u8; 16]>());
                std::ptr::copy_nonoverlapping(src.add(i), dst.add(i), 16);
                if mask != 0 {
                    return i + mask.trailing_zeros() as usize;
                }
                i += 16;
            }
            if i < n {
                // The last sixteen bytes, of which the first `16 - (n - i)` are copied already.
                let mask = sse2::escapes(&*src.add(n - 16).cast::<[u8; 16]>()) >> (16 - (n - i));
                std::ptr::copy_nonoverlapping(src.add(n - 16), dst.add(n - 16), 16);
                if mask != 0 {
                    return i + mask.trailing_zeros() as usize;
                }
            }
        } else if n >= 8 {
            let first = src.cast::<u64>().read_unaligned();
            let last = src.add(n - 8).cast::<u64>().read_unaligned();
            if needs_escape(u64::from_le(first)) || needs_escape(u64::from_le(last)) {
                return 0;
            }
            dst.cast::<u64>().write_unaligned(first);
            dst.add(n - 8).cast::<u64>().write_unaligned(last);
        } else {
            for (i, &b) in bytes.iter().enumerate() {
                if ESCAPE[b as usize] != 0 {
                    return i;
                }
                dst.add(i).write(b);
            }
        }
    }
    n
}

/// Elsewhere, the escaping loop does it all.
///
/// # Safety
/// None needed: it writes nothing.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
unsafe fn copy_plain(_dst: *mut u8, _bytes: &[u8]) -> usize {
    0
}

/// Where the first byte at or after `from` that needs an escape is: sixteen bytes at a time
/// with SSE2 (every x86-64 CPU has it), the last few in one more load. Measured with
/// callgrind on the throughput graph: with a loop of eight bytes in a word and the rest one
/// by one, writing strings took about 14% of the run's instructions (docs/performance.md).
#[cfg(target_arch = "x86_64")]
#[inline]
fn next_escape(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 16) {
        let mask = sse2::escapes(chunk.try_into().expect("sixteen bytes"));
        if mask != 0 {
            return Some(i + mask.trailing_zeros() as usize);
        }
        i += 16;
    }
    let rest = bytes.len() - i;
    if rest == 0 {
        return None;
    }
    let mask = if bytes.len() >= 16 {
        // The last sixteen bytes, of which the first `16 - rest` were looked at already.
        let chunk = &bytes[bytes.len() - 16..];
        sse2::escapes(chunk.try_into().expect("sixteen bytes")) >> (16 - rest)
    } else {
        // A short string, padded with spaces (which need no escape).
        let mut padded = [b' '; 16];
        padded[..rest].copy_from_slice(&bytes[i..]);
        sse2::escapes(&padded)
    };
    (mask != 0).then(|| i + mask.trailing_zeros() as usize)
}

#[cfg(not(target_arch = "x86_64"))]
fn next_escape(bytes: &[u8], from: usize) -> Option<usize> {
    next_escape_in_words(bytes, from)
}

/// Where the first byte at or after `from` that needs an escape is: eight bytes at a time
/// in a word, then one by one (other CPUs than x86-64; tested everywhere against SSE2's).
#[cfg(any(test, not(target_arch = "x86_64")))]
fn next_escape_in_words(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(word) = bytes.get(i..i + 8) {
        if needs_escape(u64::from_le_bytes(word.try_into().expect("eight bytes"))) {
            break;
        }
        i += 8;
    }
    bytes[i..].iter().position(|&b| ESCAPE[b as usize] != 0).map(|at| i + at)
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };

    /// A bit for each of the sixteen bytes that needs an escape: a control character
    /// (`max(b, 0x1f) == 0x1f`, unsigned), `"` or `\`.
    #[inline]
    pub(super) fn escapes(chunk: &[u8; 16]) -> u32 {
        // SAFETY: the load reads the sixteen bytes of `chunk` (unaligned loads are allowed);
        // SSE2 is part of the x86-64 baseline, so the instructions exist on every such CPU.
        unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast());
            let control = _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x1f)), _mm_set1_epi8(0x1f));
            let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            _mm_movemask_epi8(_mm_or_si128(control, _mm_or_si128(quote, backslash))) as u32
        }
    }
}

/// Whether any of the word's eight bytes is a control character (< 0x20), `"` or `\`.
/// The classic bit tricks: a byte is zero in `x` exactly when `(x - 0x01..) & !x & 0x80..`
/// has its top bit set; "less than 0x20" is "zero after subtracting 0x20 without borrow"
/// for bytes below 0x80, and bytes from 0x80 up never need an escape.
#[inline]
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    let quote = has_zero(word ^ (ONES * u64::from(b'"')));
    let backslash = has_zero(word ^ (ONES * u64::from(b'\\')));
    (control | quote | backslash) != 0
}

/// serde_json's escape table: 0 for a byte written as is, else the escape's letter
/// (`u` for `\u00XX`).
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0A] = b'n';
    table[0x0C] = b'f';
    table[0x0D] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Every document of the published samples in `tests/fixtures/ctr` (a file may hold several),
/// with its file; at least three, or the fixtures are not where the tests expect them.
#[cfg(test)]
pub(crate) fn real_samples() -> Vec<(std::path::PathBuf, Value)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/ctr");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("tests/fixtures/ctr") {
        let path = entry.expect("a fixture").path();
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        for doc in serde_json::Deserializer::from_str(&text).into_iter::<Value>() {
            let Ok(doc) = doc else { break };
            out.push((path.clone(), doc));
        }
    }
    assert!(out.len() >= 3, "the fixtures hold the published samples ({} read)", out.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn same_as_serde(v: &Value) {
        assert_eq!(to_string(v), serde_json::to_string(v).unwrap(), "for {v:?}");
    }

    #[test]
    fn every_byte_escapes_as_serde_json_escapes_it() {
        for b in 0u8..=0x7F {
            let c = b as char;
            for s in [c.to_string(), format!("abcdefgh{c}ijklmnop"), format!("{c}{c}{c}{c}{c}{c}{c}{c}{c}")] {
                same_as_serde(&Value::String(s));
            }
        }
    }

    #[test]
    fn escapes_are_found_at_every_offset_of_a_word() {
        // Past two 16-byte chunks, so each loop (16 bytes, 8, then 1) meets every offset.
        for len in 0..44 {
            for at in 0..len {
                for special in ['"', '\\', '\n', '\u{1f}', '\u{0}', 'é', '\u{7f}', ' ', '!', '#', '['] {
                    let mut s: String = "x".repeat(len);
                    s.replace_range(at..at + 1, &special.to_string());
                    same_as_serde(&Value::String(s.clone()));
                    same_as_serde(&json!({ s.clone(): s }));
                    for from in 0..=len {
                        let (b, w) = (s.as_bytes(), next_escape_in_words(s.as_bytes(), from));
                        assert_eq!(next_escape(b, from), w, "{s:?} from {from}");
                    }
                }
            }
        }
    }

    #[test]
    fn non_ascii_and_long_strings_are_written_as_they_are() {
        same_as_serde(&json!("Zoë — 電話 📞 \u{2028}\u{80}\u{ff}"));
        same_as_serde(&json!("a".repeat(10_000) + "\"" + &"b".repeat(3)));
    }

    #[test]
    fn numbers_and_nesting_are_serde_jsons() {
        same_as_serde(&json!({
            "u": u64::MAX, "i": i64::MIN, "zero": 0, "neg": -1, "f": 1.5, "tiny": 1e-300, "big": 1.7976931348623157e308,
            "whole": 3.0, "exp": 1e21, "nested": [[], {}, [null, true, false, {"a": [1, {"b": "c"}]}]],
        }));
    }

    #[test]
    fn every_real_sample_is_written_as_serde_json_writes_it() {
        for (path, doc) in real_samples() {
            same_as_serde(&doc);
            let mut flat = Vec::new();
            write_value(&mut flat, &doc);
            assert_eq!(flat, serde_json::to_vec(&doc).unwrap(), "{}", path.display());
        }
    }

    #[test]
    fn parsing_gives_from_slices_tree_and_errors() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/ctr");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            if let Ok(expected) = serde_json::from_slice::<Value>(&bytes) {
                assert_eq!(parse(&bytes).unwrap(), expected);
                seen += 1;
            }
        }
        assert!(seen >= 3, "the fixtures hold the published samples ({seen} read)");
        // Not UTF-8: serde_json's own error, with its position.
        let bad = b"{\"a\": \"caf\xe9\"}";
        assert_eq!(parse(bad).unwrap_err().to_string(), serde_json::from_slice::<Value>(bad).unwrap_err().to_string());
        assert!(parse(b"{\"a\": ").unwrap_err().is_eof());
    }

    #[test]
    fn the_first_document_and_the_text_it_took() {
        assert_eq!(parse_first(b"{\"a\":1} {\"b\":2}"), Some((serde_json::json!({"a": 1}), 7)));
        // An array's element, before its comma or the closing bracket.
        assert_eq!(parse_first(b"  {\"a\":[1]},"), Some((serde_json::json!({"a": [1]}), 11)));
        assert_eq!(parse_first(b"{\"a\":1}]"), Some((serde_json::json!({"a": 1}), 7)));
        // A document that goes on (pretty-printed), a broken one, text that is not UTF-8.
        assert_eq!(parse_first(b"{"), None);
        assert_eq!(parse_first(b"{\"a\" 1}"), None);
        assert_eq!(parse_first(b"{\"a\":\"\xff\"}"), None);
        assert_eq!(parse_first(b""), None);
    }
}
