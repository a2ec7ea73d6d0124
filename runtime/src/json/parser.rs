//! A JSON parser straight into `serde_json::Value`, for the documents a source reads.
//!
//! serde_json builds its `Value` through serde's visitor protocol: every string, key and
//! number passes through a deserializer, a map access and a visitor, with a peek and a
//! check at each step, and each object is built by inserting its keys one by one. For a
//! contact record (about a hundred short strings in objects a few levels deep) those were
//! about 30% of parsing and freeing a record, counted in instructions with callgrind
//! (docs/performance.md, seventeenth round). This parser walks the text once, builds the
//! same tree (a `String` for every key and string, each object's map in one step: see
//! [`Parser::object`]), and finds the end of each string sixteen bytes at a time with the
//! string writer's own scan ([`super::next_escape`]: the same three classes of byte).
//!
//! It answers only when its answer is serde_json's. Anything else returns `None`, and the
//! caller asks serde_json, whose tree or error is then the answer: every syntax error (so
//! error messages and positions are serde_json's), control characters in strings, escapes
//! of surrogates (pairs and lone ones), nesting past [`MAX_DEPTH`]. Numbers other than a
//! plain non-negative integer that fits a `u64` are read by serde_json's own
//! `Number::from_str`, which runs its parser's code for numbers, so a float or a negative
//! number comes out bit for bit as serde_json reads it. The unit tests hold it to
//! serde_json on every real sample, on 200,000 mutations of them and on the edge cases of
//! numbers, escapes, duplicate keys and depth.

use serde_json::{Map, Number, Value};

/// Deeper documents go to serde_json (whose own limit is 128 levels, with its error).
const MAX_DEPTH: u32 = 100;

/// The document `text` holds (with white space around it), when this parser reads it as
/// serde_json does; `None` sends the caller to serde_json.
pub(super) fn parse(text: &str) -> Option<Value> {
    let mut parser = Parser::new(text);
    parser.skip_white_space();
    let value = parser.value()?;
    parser.skip_white_space();
    (parser.at == parser.bytes.len()).then_some(value)
}

/// The first document of `text` (after any white space) and where it ends, when it is an
/// object or an array that this parser reads as serde_json does.
pub(super) fn parse_first(text: &str) -> Option<(Value, usize)> {
    let mut parser = Parser::new(text);
    parser.skip_white_space();
    if !matches!(parser.peek(), Some(b'{' | b'[')) {
        // A scalar's end needs serde_json's stream rules (what may follow a number).
        return None;
    }
    let value = parser.value()?;
    Some((value, parser.at))
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    depth: u32,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser { text, bytes: text.as_bytes(), at: 0, depth: 0 }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// JSON's four white-space bytes, as serde_json skips them.
    #[inline]
    fn skip_white_space(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn value(&mut self) -> Option<Value> {
        match self.peek()? {
            b'"' => {
                self.at += 1;
                self.string().map(Value::String)
            }
            b'{' => {
                self.at += 1;
                self.object()
            }
            b'[' => {
                self.at += 1;
                self.array()
            }
            b't' => self.literal(b"true", Value::Bool(true)),
            b'f' => self.literal(b"false", Value::Bool(false)),
            b'n' => self.literal(b"null", Value::Null),
            b'0'..=b'9' | b'-' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8], value: Value) -> Option<Value> {
        self.bytes[self.at..].starts_with(word).then(|| {
            self.at += word.len();
            value
        })
    }

    /// A plain non-negative integer that fits a `u64` (nearly every number in a contact
    /// record), read here; anything else through [`Parser::other_number`].
    fn number(&mut self) -> Option<Value> {
        let start = self.at;
        let mut end = start;
        let mut n: u64 = 0;
        while let Some(&digit @ b'0'..=b'9') = self.bytes.get(end) {
            match n.checked_mul(10).and_then(|n| n.checked_add(u64::from(digit - b'0'))) {
                Some(next) => n = next,
                None => return self.other_number(start),
            }
            end += 1;
        }
        let digits = end - start;
        let leading_zero = digits > 1 && self.bytes[start] == b'0';
        if digits == 0 || leading_zero || matches!(self.bytes.get(end), Some(b'.' | b'e' | b'E')) {
            return self.other_number(start);
        }
        self.at = end;
        Some(Value::Number(n.into()))
    }

    /// A negative number, a fraction, an exponent, an integer past `u64`: serde_json's
    /// `Number::from_str` on the number's text (the characters a number can hold; what it
    /// refuses, serde_json's whole parse reports).
    #[cold]
    fn other_number(&mut self, start: usize) -> Option<Value> {
        let len = self.bytes[start..]
            .iter()
            .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
            .unwrap_or(self.bytes.len() - start);
        let number: Number = self.text[start..start + len].parse().ok()?;
        self.at = start + len;
        Some(Value::Number(number))
    }

    /// After the `[`.
    fn array(&mut self) -> Option<Value> {
        self.enter()?;
        let mut items = Vec::new();
        self.skip_white_space();
        if self.peek()? == b']' {
            self.at += 1;
        } else {
            loop {
                items.push(self.value()?);
                if self.after_element(b']')? {
                    break;
                }
            }
        }
        self.depth -= 1;
        Some(Value::Array(items))
    }

    /// After the `{`. The fields are gathered, then the map is built from them in one step
    /// (`Map::from_iter`: a stable sort, which finds sorted keys sorted in one pass, and
    /// `BTreeMap`'s bulk build). Inserting them one by one, as serde_json does, searches the
    /// map from its root for every key, and for keys that arrive sorted (a contact record's
    /// do) compares each new key with every key of the last leaf. Counted with callgrind on
    /// 5,000 of the throughput benchmark's records, parsing and freeing: 370 million
    /// instructions inserting, 312 million built in one step (serde_json: 445 million); on
    /// the same records with every object's keys shuffled, 357 against 368 million. A key
    /// seen twice keeps its last value either way (the sort is stable and the bulk build
    /// keeps the last of equal keys), as serde_json's does.
    fn object(&mut self) -> Option<Value> {
        self.enter()?;
        let mut fields: Vec<(String, Value)> = Vec::with_capacity(8);
        self.skip_white_space();
        if self.peek()? == b'}' {
            self.at += 1;
        } else {
            loop {
                if self.peek()? != b'"' {
                    return None;
                }
                self.at += 1;
                let key = self.string()?;
                self.skip_white_space();
                if self.peek()? != b':' {
                    return None;
                }
                self.at += 1;
                self.skip_white_space();
                fields.push((key, self.value()?));
                if self.after_element(b'}')? {
                    break;
                }
            }
        }
        self.depth -= 1;
        Some(Value::Object(fields.into_iter().collect::<Map<String, Value>>()))
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// After an element: `Some(true)` past the closing bracket, `Some(false)` past a comma
    /// (and the white space after it), `None` for anything else.
    #[inline]
    fn after_element(&mut self, close: u8) -> Option<bool> {
        self.skip_white_space();
        let b = self.peek()?;
        self.at += 1;
        if b == close {
            return Some(true);
        }
        if b != b',' {
            return None;
        }
        self.skip_white_space();
        Some(false)
    }

    /// After the opening quote: the string (and `at` past its closing quote).
    fn string(&mut self) -> Option<String> {
        let start = self.at;
        let end = super::next_escape(self.bytes, start)?;
        if self.bytes[end] == b'"' {
            self.at = end + 1;
            return Some(self.text[start..end].to_owned());
        }
        self.escaped_string(start, end)
    }

    /// A string with an escape (or a control character, which is serde_json's error) at
    /// `at`.
    #[cold]
    fn escaped_string(&mut self, start: usize, mut at: usize) -> Option<String> {
        let mut out = String::with_capacity(at - start + 16);
        out.push_str(&self.text[start..at]);
        loop {
            match self.bytes[at] {
                b'"' => {
                    self.at = at + 1;
                    return Some(out);
                }
                b'\\' => {
                    let (c, len) = match *self.bytes.get(at + 1)? {
                        b'"' => ('"', 2),
                        b'\\' => ('\\', 2),
                        b'/' => ('/', 2),
                        b'b' => ('\u{8}', 2),
                        b'f' => ('\u{c}', 2),
                        b'n' => ('\n', 2),
                        b'r' => ('\r', 2),
                        b't' => ('\t', 2),
                        b'u' => {
                            let hex = self.bytes.get(at + 2..at + 6)?;
                            let code =
                                hex.iter().try_fold(0u32, |code, &h| Some(code * 16 + (h as char).to_digit(16)?))?;
                            // `None` for a surrogate: pairs and lone ones are serde_json's.
                            (char::from_u32(code)?, 6)
                        }
                        _ => return None,
                    };
                    out.push(c);
                    at += len;
                }
                _ => return None,
            }
            let next = super::next_escape(self.bytes, at)?;
            out.push_str(&self.text[at..next]);
            at = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This parser's answer, when it gives one, must be serde_json's tree, numbers bit for
    /// bit (compared as text).
    fn agrees(text: &str) -> bool {
        let Some(ours) = parse(text) else { return true };
        match serde_json::from_str::<Value>(text) {
            Ok(theirs) => ours == theirs && crate::json::to_string(&ours) == crate::json::to_string(&theirs),
            Err(_) => false,
        }
    }

    fn real_lines() -> Vec<String> {
        crate::json::real_samples().into_iter().map(|(_, doc)| doc.to_string()).collect()
    }

    #[test]
    fn every_real_sample_is_read_here_as_serde_json_reads_it() {
        for line in real_lines() {
            assert_eq!(parse(&line).as_ref(), Some(&serde_json::from_str::<Value>(&line).unwrap()));
            let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(&line).unwrap()).unwrap();
            assert_eq!(parse(&pretty), parse(&line), "white space between tokens");
        }
    }

    #[test]
    fn mutated_samples_are_read_as_serde_json_reads_them_or_left_to_it() {
        let lines = real_lines();
        let alphabet = b"{}[]\",:\\ \n\t0123456789-+.eEtrufalsn/u\x01\x1fAaz";
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as usize
        };
        let (mut read_here, mut tried) = (0, 0);
        for _ in 0..200_000 {
            let mut bytes = lines[next() % lines.len()].clone().into_bytes();
            for _ in 0..1 + next() % 3 {
                let at = next() % bytes.len();
                let b = alphabet[next() % alphabet.len()];
                match next() % 3 {
                    0 => bytes[at] = b,
                    1 => bytes.insert(at, b),
                    _ => drop(bytes.remove(at)),
                }
            }
            let Ok(text) = std::str::from_utf8(&bytes) else { continue };
            tried += 1;
            read_here += usize::from(parse(text).is_some());
            assert!(agrees(text), "{text}");
        }
        // Most mutations still parse (a changed letter in a string): this parser read them.
        assert!(read_here > tried / 3, "{read_here} of {tried} read here");
    }

    #[test]
    fn numbers_escapes_keys_and_depth_are_serde_jsons_or_left_to_it() {
        let deep_ok = format!("{}{}", "[".repeat(MAX_DEPTH as usize), "]".repeat(MAX_DEPTH as usize));
        let too_deep = format!("{}{}", "[".repeat(120), "]".repeat(120));
        let cases = [
            "0",
            "-0",
            "7",
            "1.5",
            "-1",
            "1e2",
            "1E+2",
            "2.5e-3",
            "0.0",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "1e400",
            "01",
            "1.",
            ".5",
            "-",
            "[-]",
            "[1,2]",
            "[1,2,]",
            "{\"a\":1,}",
            "{\"a\":1,\"a\":2}",
            "{\"b\":1,\"a\":[true,false,null]}",
            "\"\\ud83d\\ude00\"",
            "\"\\ud83d\"",
            "\"\\ude00\"",
            "\"a\\u00e9\\u0000\"",
            "\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"",
            "\"\\x\"",
            "\"\\u12\"",
            "\"tab\there\"",
            "  {}  ",
            "{} x",
            "{}{}",
            "tru",
            "nul",
            "[true false]",
            "{\"a\" 1}",
            "{1:2}",
            "",
            " ",
            "\"unterminated",
            &deep_ok,
            &too_deep,
        ];
        for case in cases {
            assert!(agrees(case), "{case}");
        }
        // Read here, not left to serde_json: the common shapes.
        for case in ["7", "-1", "1.5", "{\"a\":1,\"a\":2}", "\"a\\u00e9\"", &deep_ok] {
            assert!(parse(case).is_some(), "{case}");
        }
        // Left to serde_json: surrogates, and nesting past the limit (serde_json reads it).
        for case in ["\"\\ud83d\\ude00\"", &too_deep] {
            assert!(parse(case).is_none() && serde_json::from_str::<Value>(case).is_ok(), "{case}");
        }
    }

    #[test]
    fn the_first_document_ends_where_serde_jsons_stream_says() {
        for text in ["{\"a\":1} {\"b\":2}", "  {\"a\":[1]},", "{\"a\":1}]", "[1, 2]\n", "{\"a\":\"b\"}x"] {
            let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
            let theirs = stream.next().unwrap().unwrap();
            assert_eq!(parse_first(text), Some((theirs, stream.byte_offset())), "{text}");
        }
        assert_eq!(parse_first("7 8"), None, "a scalar goes to serde_json's stream rules");
        assert_eq!(parse_first("{\"a\":"), None);
    }
}
