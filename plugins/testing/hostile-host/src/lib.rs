//! Test plugin: asks the host to keep or do as much as it can on the plugin's behalf. By
//! `Attributes.hostile`:
//!
//! - `"log"`: 20,000 log lines of 16 KiB each, then keeps the record;
//! - `"count"`: 100,000 distinct counter names, then keeps the record;
//! - `"paths"`: resolves 100,000 distinct paths, then fails the record as a bad record
//!   whose message says how many the host accepted;
//! - `"set-big"`: sets a 1 KiB text 100,000 times, counting the accepted sets in the
//!   counter `sets_accepted`, then keeps the record;
//! - `"set-tiny"`: sets an integer 1,000,000 times, counting the accepted sets in
//!   `edits_accepted`, then keeps the record;
//! - `"metrics"`: counts under a name that would forge a Prometheus series if written
//!   unescaped (see [`FORGED`]);
//! - `"leak"`: logs the caller's phone number (`CustomerEndpoint.Address`), an e-mail
//!   address and a quoted name at `info` and at `debug`, then keeps the record.
//!
//! Other records are kept unchanged.
use ctrflow_plugin_sdk::bindings::enrich::ctrflow::plugin::host;
use ctrflow_plugin_sdk::{Error, Init, LogLevel, Outcome, Path, Record, Transform};

/// A counter name that closes its label and starts a series of its own.
pub const FORGED: &str = "x\"} 1\nctrflow_records_out_total{node=\"victim\"} 999999\n# ";

pub struct Flood {
    hostile: Path,
    flood: Path,
    caller: Path,
}

impl Transform for Flood {
    fn init(init: &mut Init) -> Result<Self, Error> {
        Ok(Flood {
            hostile: init.path("Attributes.hostile")?,
            flood: init.path("Attributes.flood")?,
            caller: init.path("CustomerEndpoint.Address")?,
        })
    }
    fn process(&mut self, record: &mut Record<'_>) -> Outcome {
        match record.get_str(&self.hostile).as_deref() {
            Some("log") => {
                let line = "x".repeat(16 << 10);
                for _ in 0..20_000 {
                    ctrflow_plugin_sdk::log(LogLevel::Error, &line);
                }
            }
            Some("count") => {
                for i in 0..100_000 {
                    ctrflow_plugin_sdk::count(&format!("flood-{i}"), 1);
                }
            }
            Some("paths") => {
                let accepted = (0..100_000).filter(|i| host::resolve_path(&format!("Flood.p{i}")).is_ok()).count();
                return Outcome::Fail(Error::bad_record(format!("the host accepted {accepted} paths")));
            }
            Some("set-big") => {
                let text = "y".repeat(1024);
                let accepted = (0..100_000).filter(|_| record.set(&self.flood, text.as_str()).is_ok()).count();
                ctrflow_plugin_sdk::count("sets_accepted", accepted as i64);
            }
            Some("set-tiny") => {
                let accepted = (0..1_000_000_i64).filter(|i| record.set(&self.flood, *i).is_ok()).count();
                ctrflow_plugin_sdk::count("edits_accepted", accepted as i64);
            }
            Some("metrics") => ctrflow_plugin_sdk::count(FORGED, 1),
            Some("leak") => {
                let caller = record.get_str(&self.caller).unwrap_or_default();
                let line = format!("caller {caller} wrote from jane.doe@example.com as \"Jane Doe\"");
                ctrflow_plugin_sdk::log(LogLevel::Info, &line);
                ctrflow_plugin_sdk::log(LogLevel::Debug, &format!("debug: {line}"));
            }
            _ => {}
        }
        Outcome::Keep
    }
}

ctrflow_plugin_sdk::export_transform!(Flood);
