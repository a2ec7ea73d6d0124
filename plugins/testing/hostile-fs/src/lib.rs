//! Test plugin: on every record, tries to read `/etc/passwd` and to create a file, and
//! writes what happened to `Attributes.fs_read` / `Attributes.fs_write` (`"ok: …"` or
//! `"denied: …"`). The sandbox grants no filesystem, so both must be denied.
use ctrflow_plugin_sdk::{Error, Init, Outcome, Path, Record, Transform};

pub struct Fs {
    read: Path,
    write: Path,
}

impl Transform for Fs {
    fn init(init: &mut Init) -> Result<Self, Error> {
        Ok(Fs { read: init.path("Attributes.fs_read")?, write: init.path("Attributes.fs_write")? })
    }
    fn process(&mut self, record: &mut Record<'_>) -> Outcome {
        let read = match std::fs::read_to_string("/etc/passwd") {
            Ok(text) => format!("ok: {} bytes", text.len()),
            Err(e) => format!("denied: {e}"),
        };
        let write = match std::fs::write("/tmp/ctrflow-hostile-fs", b"x") {
            Ok(()) => "ok: wrote".to_string(),
            Err(e) => format!("denied: {e}"),
        };
        match record.set(&self.read, read).and_then(|()| record.set(&self.write, write)) {
            Ok(()) => Outcome::Keep,
            Err(e) => Outcome::Fail(e),
        }
    }
}

ctrflow_plugin_sdk::export_transform!(Fs);
