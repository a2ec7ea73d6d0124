//! How a generated record writes a moment: CTR timestamps (`yyyy-mm-ddThh:mm:ssZ`, UTC, second
//! precision, as Connect writes them) and the time stamp in a call recording's S3 key.
//!
//! The calendar is `time`'s; this module only lays the fields out, digit by digit, because a
//! record carries up to a dozen timestamps and `time`'s general formatter would dominate the
//! cost of generating it. Moments are unix seconds (the scenario does its arithmetic in
//! seconds); it does not decide when anything happens (see `timeline`).

use serde_json::Value;
use time::{OffsetDateTime, PrimitiveDateTime};

use super::text::push_digits;

/// The moment `secs` after the epoch, clamped to what `time` represents (years −9999..=9999
/// without its `large-dates` feature); only an absurd `now` handed to the generator gets
/// there, and clamping keeps the order of the timestamps.
pub(super) fn at(secs: i64) -> OffsetDateTime {
    let min = PrimitiveDateTime::MIN.assume_utc().unix_timestamp();
    let max = PrimitiveDateTime::MAX.assume_utc().unix_timestamp();
    OffsetDateTime::from_unix_timestamp(secs.clamp(min, max)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `yyyy-mm-ddThh:mm:ssZ`: RFC 3339 with Connect's second precision.
pub(super) fn format_ts(secs: i64) -> String {
    let t = at(secs);
    let mut s = String::with_capacity(20);
    push_date(&mut s, t, '-');
    s.push('T');
    push_digits(&mut s, u64::from(t.hour()), 2);
    s.push(':');
    push_digits(&mut s, u64::from(t.minute()), 2);
    s.push(':');
    push_digits(&mut s, u64::from(t.second()), 2);
    s.push('Z');
    s
}

pub(super) fn ts_val(secs: i64) -> Value {
    Value::String(format_ts(secs))
}

/// `<prefix>YYYY/MM/DD/<ContactId>_YYYYMMDDTHH:MM_UTC.wav`, the layout of the real samples'
/// recording locations (tests/fixtures/ctr/kyopark-voice-inbound-update-v1.json), stamped with
/// `secs`, the moment the agent connected (the recording starts then; in that sample 17:20 is
/// the `ConnectedToAgentTimestamp`).
pub(super) fn recording_location(prefix: &str, contact_id: &str, secs: i64) -> String {
    let t = at(secs);
    let mut s = String::with_capacity(prefix.len() + contact_id.len() + 40);
    s.push_str(prefix);
    push_date(&mut s, t, '/');
    s.push('/');
    s.push_str(contact_id);
    s.push('_');
    push_year(&mut s, t.year());
    push_digits(&mut s, u64::from(u8::from(t.month())), 2);
    push_digits(&mut s, u64::from(t.day()), 2);
    s.push('T');
    push_digits(&mut s, u64::from(t.hour()), 2);
    s.push(':');
    push_digits(&mut s, u64::from(t.minute()), 2);
    s.push_str("_UTC.wav");
    s
}

/// `yyyy<sep>mm<sep>dd`.
fn push_date(s: &mut String, t: OffsetDateTime, sep: char) {
    push_year(s, t.year());
    s.push(sep);
    push_digits(s, u64::from(u8::from(t.month())), 2);
    s.push(sep);
    push_digits(s, u64::from(t.day()), 2);
}

fn push_year(s: &mut String, year: i32) {
    match u64::try_from(year) {
        Ok(y) => push_digits(s, y, 4),
        // Before year 0, outside RFC 3339; only reachable with an absurd `now`.
        Err(_) => s.push_str(&format!("{year:05}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use time::format_description::well_known::Rfc3339;

    #[test]
    fn timestamp_format_matches_time() {
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..10_000 {
            let secs = rng.random_range(-62_000_000_000i64..253_000_000_000);
            let t = OffsetDateTime::from_unix_timestamp(secs).expect("in range");
            let expect = t.format(&Rfc3339).expect("format");
            assert_eq!(format_ts(secs), expect);
        }
        assert_eq!(format_ts(1_641_404_915), "2022-01-05T17:48:35Z");
        assert_eq!(
            recording_location(
                "bucket/connect/demo/CallRecordings/",
                "6fe40d2a-1a89-4d73-bfcf-5d9c33894f47",
                1_641_403_232
            ),
            "bucket/connect/demo/CallRecordings/2022/01/05/6fe40d2a-1a89-4d73-bfcf-5d9c33894f47_20220105T17:20_UTC.wav"
        );
    }

    #[test]
    fn out_of_range_moments_clamp_in_order() {
        let early = format_ts(i64::MIN);
        let late = format_ts(i64::MAX);
        assert_eq!(late, "9999-12-31T23:59:59Z");
        assert!(early.starts_with("-9999-01-01T00:00:00"), "{early}");
        assert_eq!(at(i64::MIN), at(i64::MIN + 1));
    }
}
