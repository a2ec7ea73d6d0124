//! What a plugin's own log lines may carry at `info` and above: no customer data unless
//! the node asks for the plugin's words verbatim (`plugin_log = "verbatim"`).
//!
//! The host cannot know what a plugin put in a message, so at `info`, `warn` and `error` it
//! masks the shapes customer data takes in a log line before the line is written:
//!
//! - quoted text (`"…"`, and `'…'` when the quote opens and closes a word) — how Rust's
//!   `{:?}`, JSON and most messages quote a value — becomes `"…"`;
//! - e-mail addresses become `<email>`;
//! - a run of digits with the separators phone numbers are written with (`+`, space, `-`,
//!   `.`, `(`, `)`) and at least [`MIN_DIGITS`] digits becomes `<number>`: phone numbers,
//!   account and card numbers, timestamps.
//!
//! What it does not do: recognise a bare name or an address written without quotes. The
//! guarantee is therefore "the usual shapes", and the documented rule for plugin authors
//! is the firm one: put values in `debug`/`trace` lines, which are written verbatim and are
//! off unless an operator turns them on. A line that was changed carries `redacted=true`.

use std::borrow::Cow;

/// Fewest digits in a run that is masked as a number (phone numbers have at least 7).
pub const MIN_DIGITS: usize = 6;

/// The message with quoted values, e-mail addresses and long digit runs masked; borrowed
/// when nothing needed masking.
pub fn redact(message: &str) -> Cow<'_, str> {
    let quoted = mask_quoted(message);
    let emails = mask_emails(&quoted);
    let numbers = mask_numbers(&emails);
    if numbers == message { Cow::Borrowed(message) } else { Cow::Owned(numbers) }
}

/// `"…"` always; `'…'` only when the quote opens a word (start, space or punctuation before)
/// and closes one (end, space or punctuation after), so apostrophes (`can't`) stay.
fn mask_quoted(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let opens_word = i == 0 || !chars[i - 1].is_alphanumeric();
        if c == '"' || (c == '\'' && opens_word) {
            let close = (i + 1..chars.len()).find(|&j| {
                chars[j] == c
                    && chars[j - 1] != '\\'
                    && (c == '"' || chars.get(j + 1).is_none_or(|n| !n.is_alphanumeric()))
            });
            if let Some(j) = close {
                out.push(c);
                if j > i + 1 {
                    out.push('…');
                }
                out.push(c);
                i = j + 1;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Words (split at spaces, quotes, brackets and commas) shaped `local@domain.tld`.
fn mask_emails(s: &str) -> String {
    let is_break = |c: char| c.is_whitespace() || "\"'<>()[]{},;".contains(c);
    let mut out = String::with_capacity(s.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let trimmed = word.trim_end_matches(['.', ':', '!', '?']);
        let tail = &word[trimmed.len()..];
        let looks = trimmed.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        });
        if looks {
            out.push_str("<email>");
            out.push_str(tail);
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in s.chars() {
        if is_break(c) {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Runs starting with a digit, `+` or `(`, made of digits and `+ -.()`, ending with a digit, with
/// at least [`MIN_DIGITS`] digits. A digit run glued to a letter (`v2`, an id like `abc1234567`)
/// is part of a word and masked too when long enough: it may still be an account number.
fn mask_numbers(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let opens = c == '+' || c == '(';
        if c.is_ascii_digit() || (opens && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            // The longest run of digits and separators, cut back to its last digit.
            let mut end = i;
            let mut last_digit = i;
            let mut digits = 0;
            while end < chars.len() && (chars[end].is_ascii_digit() || "+-.() ".contains(chars[end])) {
                if chars[end].is_ascii_digit() {
                    digits += 1;
                    last_digit = end;
                }
                end += 1;
            }
            if digits >= MIN_DIGITS {
                out.push_str("<number>");
            } else {
                out.extend(&chars[i..=last_digit]);
            }
            i = last_digit + 1;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_data_is_masked_and_the_rest_of_the_line_kept() {
        assert_eq!(redact("no lookup row for queue BasicQueue"), "no lookup row for queue BasicQueue");
        assert!(matches!(redact("took 12 ms for 3 records"), Cow::Borrowed(_)));
        assert_eq!(redact("caller +61 401 004 854 hung up"), "caller <number> hung up");
        assert_eq!(redact("phone (02) 9555-0100."), "phone <number>.");
        assert_eq!(redact("mail jane.doe@example.com: bounced"), "mail <email>: bounced");
        assert_eq!(redact("to <jane@example.co.uk>"), "to <<email>>");
        assert_eq!(redact(r#"bad name "Jane Doe" in Attributes"#), r#"bad name "…" in Attributes"#);
        assert_eq!(redact(r#"record {"Name":"Jane"}"#), r#"record {"…":"…"}"#);
        assert_eq!(redact("can't parse 'Jane Doe', skipping"), "can't parse '…', skipping");
        assert_eq!(redact("card 4111111111111111"), "card <number>");
        assert_eq!(redact("v2 of the plugin, 12345 records"), "v2 of the plugin, 12345 records");
        assert_eq!(redact(r#"empty "" value"#), r#"empty "" value"#);
    }

    #[test]
    fn an_unclosed_quote_is_left_alone_and_nothing_panics_on_odd_text() {
        assert_eq!(redact(r#"half "quoted"#), r#"half "quoted"#);
        for s in ["", "\"", "'", "+", "@", "a@b", "é'ü\"ö", "1-2-3-4-5-6", "+-"] {
            let _ = redact(s);
        }
        assert_eq!(redact("1-2-3-4-5-6"), "<number>");
    }
}
