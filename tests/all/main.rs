//! ctrflow's integration tests: one binary (it links once), a module per area.

mod aws;
mod connectors;
mod faults;
mod golden;
mod host;
mod moto;
mod pipelines;
mod restart;
mod timing;
mod validate;
