//! ctrflow's integration tests: one binary (it links once), a module per area.

mod actions;
mod aws;
mod connectors;
mod data_plane;
mod faults;
mod fleet;
mod golden;
mod host;
mod lambda;
mod lambda_api;
mod languages;
mod layers;
mod moto;
mod ops;
mod pipeline_tests;
mod pipelines;
mod plugin_versions;
mod restart;
mod scaffold;
mod schema;
mod sink_faults;
mod timing;
mod validate;
