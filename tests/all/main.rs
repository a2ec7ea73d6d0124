//! ctrflow's integration tests: one binary (it links once), a module per area.

mod aws;
mod connectors;
mod golden;
mod host;
mod layers;
mod moto;
mod ops;
mod pipelines;
mod record_faults;
mod restart;
mod timing;
mod validate;
