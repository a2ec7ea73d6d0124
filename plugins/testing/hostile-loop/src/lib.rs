//! Test plugin: loops forever on records whose `Attributes.hostile` is `"loop"`; keeps
//! every other record. The host must stop it at the node's deadline.
use ctrflow_plugin_sdk::{Error, Init, Outcome, Path, Record, Transform};

pub struct Loop {
    hostile: Path,
}

impl Transform for Loop {
    fn init(init: &mut Init) -> Result<Self, Error> {
        Ok(Loop { hostile: init.path("Attributes.hostile")? })
    }
    fn process(&mut self, record: &mut Record<'_>) -> Outcome {
        if record.get_str(&self.hostile).as_deref() == Some("loop") {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Outcome::Keep
    }
}

ctrflow_plugin_sdk::export_transform!(Loop);
