//! [`Checkpointer`]: a shared database's WAL copied back into the database file on a thread
//! of its own, so that no sink's write waits for it.
//!
//! In WAL mode every commit appends pages to the `-wal` file, and a checkpoint copies them
//! into the database file, syncing the WAL before and the database after (with
//! `synchronous` NORMAL or FULL). SQLite runs one itself, on the connection that commits,
//! once the WAL holds 1,000 pages: inside that sink's write, under the lock that every sink
//! of the file shares, so every sink of the file waited for two syncs and a copy of 16 MB,
//! and behind them the whole graph. On the throughput graph that was 93 syncs and 0.62 s a
//! run, most of it under the lock (docs/performance.md, fifteenth round).
//!
//! Here a second connection runs SQLite's PASSIVE checkpoint (which never blocks a writer
//! and never waits for one) at most every [`EVERY`] while commits arrive, and not at all
//! while none do. The writing connection keeps its own checkpoint at 16 MB of WAL
//! ([`BACKSTOP_BYTES`]): a passive checkpoint copies only what was committed before it began,
//! and SQLite starts the WAL over only once a checkpoint has copied all of it, which under
//! a steady stream of commits the background one never quite does. So the writer's own
//! still runs, under the lock, once the WAL holds 16 MB, and the WAL starts over as
//! before; but the thread has copied and synced nearly everything by then, so it finds
//! little to copy and little to sync. (With the writer's threshold at 4,096 pages instead,
//! the WAL grew to 70 MB in every run instead of 19 MB, for 0.12 s of syncs on the sinks'
//! threads instead of 0.24 s: docs/performance.md, fifteenth round; the same with 64 KiB
//! pages and 1,000 of them: 69–73 MB, eighteenth round.)
//!
//! A checkpoint that fails (the disk full, an I/O error) loses nothing: the pages stay in
//! the WAL, where readers find them, and the next checkpoint (or the backstop) copies them.
//! The thread stops before the writing connection closes, so that connection, the last one,
//! copies what is left and removes the WAL, as SQLite does on the last close.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// At most one checkpoint this often: on the throughput graph about 30 a run, as many as
/// SQLite's own at 1,000 pages, each copying what 100 ms of commits wrote.
pub(super) const EVERY: Duration = Duration::from_millis(100);

/// The writing connection's own checkpoint threshold, in bytes of WAL (set in pages,
/// `wal_autocheckpoint`, from the file's page size): SQLite's default of 1,000 pages with
/// the 16 KiB pages the sink gives a new database, and the same bytes of WAL for a database
/// with pages of another size (see the module docs).
pub(super) const BACKSTOP_BYTES: i64 = 1000 * super::PAGE_SIZE;

/// The checkpoint thread of one database file (see the module docs).
pub(super) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    /// Whether a transaction committed since the last checkpoint began.
    committed: bool,
    stop: bool,
}

impl Checkpointer {
    /// Starts the thread for the database at `path`, which the caller has opened and put in
    /// WAL mode. `None` (with a warning) when the thread cannot start: SQLite's own
    /// checkpoints then do the work, as they did before.
    pub(super) fn start(path: &Path) -> Option<Checkpointer> {
        let shared = Arc::new(Shared::default());
        let (path, state) = (path.to_path_buf(), shared.clone());
        let thread = std::thread::Builder::new()
            .name("ctrflow-sqlite-checkpoint".into())
            .spawn(move || run(&path, &state))
            .map_err(|e| tracing::warn!(error = %e, "SQLite: cannot start the checkpoint thread; the sinks checkpoint"))
            .ok()?;
        Some(Checkpointer { shared, thread: Some(thread) })
    }

    /// A transaction committed: the WAL has new pages to copy.
    pub(super) fn committed(&self) {
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if !state.committed {
            state.committed = true;
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(path: &Path, shared: &Shared) {
    let conn = match rusqlite::Connection::open(path) {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "SQLite: the checkpoint thread cannot open the database; the sinks checkpoint");
            return;
        }
    };
    let mut last: Option<Instant> = None;
    let mut warned = false;
    loop {
        // Wait for a commit, then for the rest of the interval since the last checkpoint.
        {
            let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            while !state.committed && !state.stop {
                state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if let Some(wait) = last.and_then(|at| EVERY.checked_sub(at.elapsed())) {
                state = shared.wake.wait_timeout_while(state, wait, |s| !s.stop).unwrap_or_else(|e| e.into_inner()).0;
            }
            if state.stop {
                return;
            }
            state.committed = false;
        }
        last = Some(Instant::now());
        // Its row (busy, pages in the WAL, pages copied) says nothing that needs acting on.
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            Ok(()) => {}
            Err(e) if !warned => {
                warned = true;
                tracing::warn!(path = %path.display(), error = %e, "SQLite: a checkpoint failed; the pages stay in the WAL and the next one copies them");
            }
            Err(_) => {}
        }
    }
}
