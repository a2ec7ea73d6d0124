//! ctrflow's integration tests: one binary (it links once), a module per area.

mod actions;
mod aws;
mod connectors;
mod golden;
mod host;
mod layers;
mod moto;
mod pipelines;
mod record_faults;
mod restart;
mod timing;
mod validate;
