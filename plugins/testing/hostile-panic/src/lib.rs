//! Test plugin: panics on records whose `Attributes.hostile` is `"panic"`; keeps every
//! other record. The host must discard the instance and go on.
use ctrflow_plugin_sdk::{Error, Init, Outcome, Path, Record, Transform};

pub struct Panicky {
    hostile: Path,
}

impl Transform for Panicky {
    fn init(init: &mut Init) -> Result<Self, Error> {
        Ok(Panicky { hostile: init.path("Attributes.hostile")? })
    }
    fn process(&mut self, record: &mut Record<'_>) -> Outcome {
        if record.get_str(&self.hostile).as_deref() == Some("panic") {
            panic!("hostile-panic was asked to panic");
        }
        Outcome::Keep
    }
}

ctrflow_plugin_sdk::export_transform!(Panicky);
