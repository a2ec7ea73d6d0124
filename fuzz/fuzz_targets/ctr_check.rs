//! The CTR check: the SDK's typed model (`ContactTraceRecord`) and the runtime's gate
//! (`source::parse_ctr`), plus the timestamp parser newer-wins relies on.
//!
//! Checks: a record the model accepts is accepted by the runtime too; the model's
//! serialisation reads back to the same record; a parsed timestamp formats and parses
//! back to the same second.
#![no_main]

use ctrflow_plugin_sdk::ctr::{ContactTraceRecord, format_timestamp, parse_timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = ContactTraceRecord::from_json(data) {
        #[cfg(feature = "runtime")]
        {
            let gate = ctrflow::contract::source::parse_ctr(data, 1 << 20);
            assert!(gate.is_ok(), "the runtime refuses a record the model accepts: {:?}", gate.err());
        }
        let text = serde_json::to_vec(&record).expect("a record serialises");
        let again = ContactTraceRecord::from_json(&text).expect("a serialised record reads back");
        assert_eq!(again, record, "a record survives a round trip");
        if let Some(ms) = record.last_update() {
            assert_eq!(parse_timestamp(&format_timestamp(ms)), Some(ms - ms.rem_euclid(1000)));
        }
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(ms) = parse_timestamp(text)
    {
        assert_eq!(parse_timestamp(&format_timestamp(ms)), Some(ms - ms.rem_euclid(1000)), "{text:?}");
    }
});
