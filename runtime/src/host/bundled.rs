//! The bundled plugins, built from `plugins/` by `build.rs` and embedded in the binary,
//! so `plugin = "redact-pii"` works wherever the binary is copied.

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// The bundled plugin with this name.
pub fn bundled(name: &str) -> Option<&'static [u8]> {
    BUNDLED.iter().find(|(n, _)| *n == name).map(|(_, bytes)| *bytes)
}
