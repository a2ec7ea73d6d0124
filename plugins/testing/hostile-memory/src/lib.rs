//! Test plugin: allocates without bound on records whose `Attributes.hostile` is
//! `"memory"`; keeps every other record. The host must stop it at the memory cap.
use ctrflow_plugin_sdk::{Error, Init, Outcome, Path, Record, Transform};

pub struct Bomb {
    hostile: Path,
}

impl Transform for Bomb {
    fn init(init: &mut Init) -> Result<Self, Error> {
        Ok(Bomb { hostile: init.path("Attributes.hostile")? })
    }
    fn process(&mut self, record: &mut Record<'_>) -> Outcome {
        if record.get_str(&self.hostile).as_deref() == Some("memory") {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        Outcome::Keep
    }
}

ctrflow_plugin_sdk::export_transform!(Bomb);
