//! The WASI a plugin gets: every interface a Rust guest imports is linked (a component
//! built for `wasm32-wasip2` imports about thirteen of them whether or not it uses them), but
//! the context behind them grants nothing — no preopened directories, no environment, no
//! arguments, no network, stdin closed, stdout and stderr discarded.
//!
//! Waiting is bounded by the call's deadline. wasmtime's epoch deadline only fires while
//! wasm code runs, so a plugin blocked in a host call (`std::thread::sleep`, a clock
//! subscription it `block`s on, `poll`) would hold its node's thread for as long as it asked.
//! ctrflow therefore replaces `wasi:io/poll`'s two blocking functions, `poll` and
//! `pollable.block`, with versions that wait at most until the deadline of the call in
//! progress and then trap with [`WaitedPastDeadline`], which the host reports as the kind
//! `deadline`. Reading the clocks is untouched, and a short wait within the budget still
//! works.
//!
//! What this does not cover: WASI's other blocking calls (`blocking-read`,
//! `blocking-write-and-flush`, …) wait inside wasmtime on streams that, in this context,
//! are always ready (a closed stdin, discarding stdout/stderr; no file or socket can be
//! opened); and the host's own services (`lookup`) are the host's to keep fast.

use std::time::Instant;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::io::poll as async_poll;
use wasmtime_wasi::p2::bindings::sync::io::poll as sync_poll;
use wasmtime_wasi::runtime::in_tokio;

use super::state::PluginState;

/// Most WASI resources (streams, pollables, sockets) one instance may hold at once; each is
/// an entry in host memory. wasmtime's default is a million.
pub const MAX_WASI_RESOURCES: usize = 1024;
/// Most bytes one `get-random-bytes` call may ask for (the host allocates them).
pub const MAX_RANDOM_BYTES: u64 = 64 << 10;

/// The empty, deny-all WASI context.
pub fn sandbox_ctx() -> WasiCtx {
    let mut builder = WasiCtx::builder();
    builder.max_random_size(MAX_RANDOM_BYTES);
    builder.build()
}

/// The table of an instance's WASI resources, bounded.
pub fn resource_table() -> ResourceTable {
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_WASI_RESOURCES);
    table
}

/// A plugin waited in WASI past the deadline of its call.
#[derive(Debug, thiserror::Error)]
#[error("waited in a blocking WASI call (wasi:io/poll) past its deadline")]
pub struct WaitedPastDeadline;

/// Links WASI: wasmtime's synchronous implementation, with `wasi:io/poll` replaced by the
/// deadline-bounded one.
pub fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    // Redefine `wasi:io/poll`'s functions in place (same names, same resource type).
    linker.allow_shadowing(true);
    sync_poll::add_to_linker::<PluginState, BoundedPoll>(linker, |s| Waiting {
        table: &mut s.table,
        deadline: s.deadline,
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

struct BoundedPoll;

impl HasData for BoundedPoll {
    type Data<'a> = Waiting<'a>;
}

/// The view `wasi:io/poll` gets: the resources, and until when it may wait.
pub struct Waiting<'a> {
    table: &'a mut ResourceTable,
    /// `None` outside a call: then nothing may wait.
    deadline: Option<Instant>,
}

/// Runs a wait until it completes or the deadline passes, whichever is first.
fn bounded<T>(
    deadline: Option<Instant>,
    wait: impl std::future::Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    let deadline = deadline.unwrap_or_else(Instant::now);
    in_tokio(async move {
        match tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), wait).await {
            Ok(done) => done,
            Err(_) => Err(WaitedPastDeadline.into()),
        }
    })
}

impl sync_poll::Host for Waiting<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        let Waiting { table, deadline } = self;
        bounded(*deadline, async_poll::Host::poll(&mut **table, pollables))
    }
}

impl sync_poll::HostPollable for Waiting<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        // Does not wait: it only asks.
        sync_poll::HostPollable::ready(&mut *self.table, pollable)
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        let Waiting { table, deadline } = self;
        bounded(*deadline, async_poll::HostPollable::block(&mut **table, pollable))
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        sync_poll::HostPollable::drop(&mut *self.table, pollable)
    }
}
