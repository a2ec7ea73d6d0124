//! The glue the `export_*!` macros expand to: WIT calls in, SDK traits out.

use std::cell::RefCell;

use crate::bindings::enrich::ctrflow::plugin::batch;
use crate::bindings::sink::exports::ctrflow::plugin::encoder;
use crate::bindings::types;
use crate::{Error, Init, Record, Sink, Transform};

fn parse_config(config: &str) -> Result<serde_json::Value, Error> {
    if config.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(config).map_err(|e| Error::invalid_config(format!("config: {e}")))
}

pub fn transform_init<T: Transform>(
    state: &RefCell<Option<T>>,
    config: &str,
) -> Result<types::Info, types::PluginError> {
    let mut init = Init::new(parse_config(config)?);
    let plugin = T::init(&mut init)?;
    *state.borrow_mut() = Some(plugin);
    Ok(types::Info { outputs: init.outputs })
}

/// Runs the plugin over every record of the batch the host lent for this call.
pub fn transform_process<T: Transform>(state: &RefCell<Option<T>>) -> Vec<types::Outcome> {
    let n = batch::len();
    let mut guard = state.borrow_mut();
    let Some(plugin) = guard.as_mut() else {
        let e = Error::internal("process called before init");
        return (0..n).map(|_| types::Outcome::Fail(e.clone().into())).collect();
    };
    (0..n).map(|i| plugin.process(&mut Record::in_batch(i)).into_wit()).collect()
}

pub fn sink_init<T: Sink>(state: &RefCell<Option<T>>, config: &str) -> Result<(), types::PluginError> {
    let mut init = Init::new(parse_config(config)?);
    *state.borrow_mut() = Some(T::init(&mut init)?);
    Ok(())
}

/// Encodes every record of the batch the host lent for this call.
pub fn sink_encode<T: Sink>(state: &RefCell<Option<T>>) -> Vec<Result<encoder::Encoded, types::PluginError>> {
    let n = batch::len();
    let mut guard = state.borrow_mut();
    let Some(plugin) = guard.as_mut() else {
        let e = Error::internal("encode called before init");
        return (0..n).map(|_| Err(e.clone().into())).collect();
    };
    (0..n)
        .map(|i| {
            plugin
                .encode(&Record::in_batch(i))
                .map(|e| encoder::Encoded {
                    partition_key: e.partition_key,
                    sort_key: e.sort_key,
                    columns: e.columns,
                    payload: e.payload,
                })
                .map_err(Into::into)
        })
        .collect()
}
