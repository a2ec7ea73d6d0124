//! Time zones for rendering timestamps: a fixed offset (`"+01:00"`, `"UTC"`) or one of a
//! small embedded table of IANA names with their *current* daylight-saving rules (EU, US,
//! southern Australia, New Zealand, or none).
//!
//! What it does not do: history. A zone's rules are today's for every year (the US rules
//! date from 2007, the EU's from 1996), and a name missing from the table is refused at
//! init rather than guessed — use its offset instead. A full time-zone database would add
//! hundreds of kilobytes to a plugin that renders one line of text.

/// A zone: its standard offset, its names, and its daylight-saving rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    /// Minutes east of UTC outside daylight saving.
    pub standard: i32,
    /// The abbreviation outside and during daylight saving (`GMT`, `BST`); empty for a
    /// fixed offset, which is shown as `+01:00`.
    pub names: (&'static str, &'static str),
    rule: Rule,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    None,
    /// Last Sunday of March 01:00 UTC → last Sunday of October 01:00 UTC.
    Eu,
    /// Second Sunday of March 02:00 local → first Sunday of November 02:00 local.
    Us,
    /// First Sunday of October 02:00 standard → first Sunday of April 03:00 daylight.
    Au,
    /// Last Sunday of September 02:00 standard → first Sunday of April 03:00 daylight.
    Nz,
}

/// (name, standard offset in minutes, standard abbreviation, daylight abbreviation, rule)
const TABLE: &[(&str, i32, &str, &str, Rule)] = &[
    ("UTC", 0, "UTC", "UTC", Rule::None),
    ("Etc/UTC", 0, "UTC", "UTC", Rule::None),
    ("GMT", 0, "GMT", "GMT", Rule::None),
    ("Europe/London", 0, "GMT", "BST", Rule::Eu),
    ("Europe/Dublin", 0, "GMT", "IST", Rule::Eu),
    ("Europe/Lisbon", 0, "WET", "WEST", Rule::Eu),
    ("Europe/Paris", 60, "CET", "CEST", Rule::Eu),
    ("Europe/Berlin", 60, "CET", "CEST", Rule::Eu),
    ("Europe/Madrid", 60, "CET", "CEST", Rule::Eu),
    ("Europe/Rome", 60, "CET", "CEST", Rule::Eu),
    ("Europe/Amsterdam", 60, "CET", "CEST", Rule::Eu),
    ("Europe/Brussels", 60, "CET", "CEST", Rule::Eu),
    ("Europe/Zurich", 60, "CET", "CEST", Rule::Eu),
    ("Europe/Stockholm", 60, "CET", "CEST", Rule::Eu),
    ("Europe/Warsaw", 60, "CET", "CEST", Rule::Eu),
    ("Europe/Helsinki", 120, "EET", "EEST", Rule::Eu),
    ("Europe/Athens", 120, "EET", "EEST", Rule::Eu),
    ("America/New_York", -300, "EST", "EDT", Rule::Us),
    ("America/Toronto", -300, "EST", "EDT", Rule::Us),
    ("America/Chicago", -360, "CST", "CDT", Rule::Us),
    ("America/Denver", -420, "MST", "MDT", Rule::Us),
    ("America/Phoenix", -420, "MST", "MST", Rule::None),
    ("America/Los_Angeles", -480, "PST", "PDT", Rule::Us),
    ("America/Vancouver", -480, "PST", "PDT", Rule::Us),
    ("America/Anchorage", -540, "AKST", "AKDT", Rule::Us),
    ("Pacific/Honolulu", -600, "HST", "HST", Rule::None),
    ("America/Sao_Paulo", -180, "BRT", "BRT", Rule::None),
    ("Africa/Johannesburg", 120, "SAST", "SAST", Rule::None),
    ("Asia/Dubai", 240, "GST", "GST", Rule::None),
    ("Asia/Kolkata", 330, "IST", "IST", Rule::None),
    ("Asia/Singapore", 480, "SGT", "SGT", Rule::None),
    ("Asia/Hong_Kong", 480, "HKT", "HKT", Rule::None),
    ("Asia/Shanghai", 480, "CST", "CST", Rule::None),
    ("Asia/Tokyo", 540, "JST", "JST", Rule::None),
    ("Asia/Seoul", 540, "KST", "KST", Rule::None),
    ("Australia/Perth", 480, "AWST", "AWST", Rule::None),
    ("Australia/Darwin", 570, "ACST", "ACST", Rule::None),
    ("Australia/Adelaide", 570, "ACST", "ACDT", Rule::Au),
    ("Australia/Brisbane", 600, "AEST", "AEST", Rule::None),
    ("Australia/Sydney", 600, "AEST", "AEDT", Rule::Au),
    ("Australia/Melbourne", 600, "AEST", "AEDT", Rule::Au),
    ("Australia/Hobart", 600, "AEST", "AEDT", Rule::Au),
    ("Pacific/Auckland", 720, "NZST", "NZDT", Rule::Nz),
];

impl Zone {
    /// `"UTC"`, `"+01:00"`, `"-05:30"`, or a name from the table.
    pub fn parse(text: &str) -> Result<Zone, String> {
        if let Some(&(_, standard, std_name, dst_name, rule)) = TABLE.iter().find(|z| z.0 == text) {
            return Ok(Zone { standard, names: (std_name, dst_name), rule });
        }
        let b = text.as_bytes();
        if let [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] = b
            && [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit())
        {
            let hours = i32::from((h1 - b'0') * 10 + (h2 - b'0'));
            let minutes = i32::from((m1 - b'0') * 10 + (m2 - b'0'));
            if hours <= 14 && minutes < 60 {
                let total = hours * 60 + minutes;
                let standard = if *sign == b'-' { -total } else { total };
                return Ok(Zone { standard, names: ("", ""), rule: Rule::None });
            }
        }
        let names: Vec<&str> = TABLE.iter().map(|z| z.0).collect();
        Err(format!(
            "{text:?} is not a time zone this plugin knows: use an offset like \"+01:00\" or one of {}",
            names.join(", ")
        ))
    }

    /// The offset from UTC (minutes) and the zone's abbreviation at `utc_ms`.
    pub fn at(&self, utc_ms: i64) -> (i32, &'static str) {
        if self.daylight(utc_ms.div_euclid(1000)) {
            (self.standard + 60, self.names.1)
        } else {
            (self.standard, self.names.0)
        }
    }

    /// Formats `utc_ms` as `2018-11-02 18:00:25 AEDT` (or `… +01:00` for a fixed offset).
    pub fn format(&self, utc_ms: i64) -> String {
        let (offset, name) = self.at(utc_ms);
        let local = utc_ms.div_euclid(1000) + i64::from(offset) * 60;
        let (days, secs) = (local.div_euclid(86_400), local.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        let zone = if name.is_empty() {
            let sign = if offset < 0 { '-' } else { '+' };
            format!("{sign}{:02}:{:02}", offset.abs() / 60, offset.abs() % 60)
        } else {
            name.to_string()
        };
        format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} {zone}", secs / 3600, secs % 3600 / 60, secs % 60)
    }

    /// Whether daylight saving is in force at `utc` (seconds).
    fn daylight(&self, utc: i64) -> bool {
        let std = i64::from(self.standard) * 60;
        // Transitions are compared in local standard time, where each rule is stated.
        let local = utc + std;
        let (year, _, _) = civil_from_days(local.div_euclid(86_400));
        let at = |days: i64, hour: i64| days * 86_400 + hour * 3600;
        match self.rule {
            Rule::None => false,
            Rule::Eu => {
                let start = at(last_sunday(year, 3), 1) + std;
                let end = at(last_sunday(year, 10), 1) + std;
                (start..end).contains(&local)
            }
            Rule::Us => (at(nth_sunday(year, 3, 2), 2)..at(nth_sunday(year, 11, 1), 1)).contains(&local),
            Rule::Au => local >= at(nth_sunday(year, 10, 1), 2) || local < at(nth_sunday(year, 4, 1), 2),
            Rule::Nz => local >= at(last_sunday(year, 9), 2) || local < at(nth_sunday(year, 4, 1), 2),
        }
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// 0 = Sunday.
fn weekday(days: i64) -> i64 {
    (days + 4).rem_euclid(7)
}

/// The day count of the `n`th Sunday of a month.
fn nth_sunday(year: i64, month: i64, n: i64) -> i64 {
    let first = days_from_civil(year, month, 1);
    first + (7 - weekday(first)) % 7 + (n - 1) * 7
}

/// The day count of the last Sunday of a month.
fn last_sunday(year: i64, month: i64) -> i64 {
    let (ny, nm) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    let last = days_from_civil(ny, nm, 1) - 1;
    last - weekday(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        ctrflow_plugin_sdk::ctr::parse_timestamp(text).unwrap()
    }

    #[test]
    fn fixed_offsets_and_utc() {
        assert_eq!(Zone::parse("UTC").unwrap().format(ms("2018-11-02T07:00:25Z")), "2018-11-02 07:00:25 UTC");
        assert_eq!(Zone::parse("+01:00").unwrap().format(ms("2018-11-02T23:30:00Z")), "2018-11-03 00:30:00 +01:00");
        assert_eq!(Zone::parse("-05:30").unwrap().format(ms("2018-11-02T03:00:00Z")), "2018-11-01 21:30:00 -05:30");
        assert!(Zone::parse("Mars/Olympus").unwrap_err().contains("\"+01:00\""));
        assert!(Zone::parse("+25:00").is_err());
    }

    #[test]
    fn london_changes_at_one_in_the_morning_utc_on_the_last_sundays() {
        let london = Zone::parse("Europe/London").unwrap();
        // 2024: BST from 31 March 01:00 UTC to 27 October 01:00 UTC.
        assert_eq!(london.format(ms("2024-03-31T00:59:59Z")), "2024-03-31 00:59:59 GMT");
        assert_eq!(london.format(ms("2024-03-31T01:00:00Z")), "2024-03-31 02:00:00 BST");
        assert_eq!(london.format(ms("2024-10-27T00:59:59Z")), "2024-10-27 01:59:59 BST");
        assert_eq!(london.format(ms("2024-10-27T01:00:00Z")), "2024-10-27 01:00:00 GMT");
        let paris = Zone::parse("Europe/Paris").unwrap();
        assert_eq!(paris.format(ms("2024-07-01T12:00:00Z")), "2024-07-01 14:00:00 CEST");
    }

    #[test]
    fn new_york_follows_the_us_rule() {
        let ny = Zone::parse("America/New_York").unwrap();
        // 2024: EDT from 10 March 07:00 UTC (02:00 EST) to 3 November 06:00 UTC (02:00 EDT).
        assert_eq!(ny.format(ms("2024-03-10T06:59:59Z")), "2024-03-10 01:59:59 EST");
        assert_eq!(ny.format(ms("2024-03-10T07:00:00Z")), "2024-03-10 03:00:00 EDT");
        assert_eq!(ny.format(ms("2024-11-03T05:59:59Z")), "2024-11-03 01:59:59 EDT");
        assert_eq!(ny.format(ms("2024-11-03T06:00:00Z")), "2024-11-03 01:00:00 EST");
    }

    #[test]
    fn sydney_is_in_daylight_saving_across_new_year() {
        let syd = Zone::parse("Australia/Sydney").unwrap();
        // The abandoned sample's enqueue time, in November: AEDT (+11:00).
        assert_eq!(syd.format(ms("2018-11-02T07:00:25Z")), "2018-11-02 18:00:25 AEDT");
        assert_eq!(syd.format(ms("2018-07-02T07:00:25Z")), "2018-07-02 17:00:25 AEST");
        // 2024: AEDT ends 7 April 03:00 AEDT (16:00 UTC on the 6th), starts 6 October 02:00 AEST.
        assert_eq!(syd.format(ms("2024-04-06T15:59:59Z")), "2024-04-07 02:59:59 AEDT");
        assert_eq!(syd.format(ms("2024-04-06T16:00:00Z")), "2024-04-07 02:00:00 AEST");
        assert_eq!(syd.format(ms("2024-10-05T15:59:59Z")), "2024-10-06 01:59:59 AEST");
        assert_eq!(syd.format(ms("2024-10-05T16:00:00Z")), "2024-10-06 03:00:00 AEDT");
        assert_eq!(
            Zone::parse("Australia/Brisbane").unwrap().format(ms("2024-01-01T00:00:00Z")),
            "2024-01-01 10:00:00 AEST"
        );
    }

    #[test]
    fn calendar_helpers_agree_with_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(weekday(days_from_civil(2024, 3, 31)), 0);
        assert_eq!(civil_from_days(last_sunday(2024, 10)), (2024, 10, 27));
        assert_eq!(civil_from_days(nth_sunday(2024, 3, 2)), (2024, 3, 10));
    }
}
