//! ctrflow's integration tests: one binary (it links once), a module per area.

mod host;
