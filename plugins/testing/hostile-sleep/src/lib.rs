//! Test plugin: waits inside WASI rather than in wasm code, where an epoch deadline cannot
//! reach it. By `Attributes.hostile`:
//!
//! - `"sleep"`: `std::thread::sleep` for an hour (a monotonic-clock subscription, then
//!   `wasi:io/poll`);
//! - `"poll"`: wasi-libc's `poll` with no descriptors and an hour's timeout;
//! - `"nap"`: sleeps one millisecond, well within any budget, and keeps the record.
//!
//! Every record, hostile or not, first reads both clocks: reading the time must keep
//! working. Other records are kept.
use std::time::{Duration, Instant, SystemTime};

use ctrflow_plugin_sdk::{Error, Init, Outcome, Path, Record, Transform};

unsafe extern "C" {
    /// wasi-libc's `poll(2)`.
    fn poll(fds: *mut core::ffi::c_void, nfds: usize, timeout_ms: i32) -> i32;
}

pub struct Sleep {
    hostile: Path,
}

impl Transform for Sleep {
    fn init(init: &mut Init) -> Result<Self, Error> {
        Ok(Sleep { hostile: init.path("Attributes.hostile")? })
    }
    fn process(&mut self, record: &mut Record<'_>) -> Outcome {
        let started = Instant::now();
        if SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).is_err() {
            return Outcome::Fail(Error::internal("the wall clock reads before 1970"));
        }
        match record.get_str(&self.hostile).as_deref() {
            Some("sleep") => std::thread::sleep(Duration::from_secs(3600)),
            Some("poll") => {
                // SAFETY: no descriptors are passed, so the pointer is never read.
                unsafe { poll(core::ptr::null_mut(), 0, 3_600_000) };
            }
            Some("nap") => {
                std::thread::sleep(Duration::from_millis(1));
                if started.elapsed() < Duration::from_millis(1) {
                    return Outcome::Fail(Error::internal("slept less than asked"));
                }
            }
            _ => {}
        }
        Outcome::Keep
    }
}

ctrflow_plugin_sdk::export_transform!(Sleep);
