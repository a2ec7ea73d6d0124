//! SQLite's process-wide settings: its allocations go to mimalloc, the allocator of the rest
//! of the binary (`alloc.rs`), and it keeps no memory statistics.
//!
//! Apart from `alloc.rs` because that file is compiled into the throughput benchmark's
//! native limit too, which has no SQLite.

use std::ffi::{c_int, c_void};

use libmimalloc_sys as mi;
use rusqlite::ffi;

/// Hands SQLite's own allocations (its page cache, statements, rows being built) to
/// mimalloc and turns off SQLite's memory statistics, before any database is opened.
///
/// By default SQLite allocates through the C library's `malloc`, and with its statistics on
/// (the compiled-in default) it takes one process-wide mutex around every allocation and
/// free to count them; the SQLite sinks' writers run on several threads at once. Nothing
/// in ctrflow reads those statistics. Returns false when SQLite was already initialised
/// (a connection was opened first), in which case it keeps its defaults; call it at the
/// start of `main`.
pub fn configure() -> bool {
    unsafe extern "C" fn malloc(n: c_int) -> *mut c_void {
        // SAFETY: mimalloc accepts any size; SQLite never asks for a negative one.
        unsafe { mi::mi_malloc(n as usize) }
    }
    unsafe extern "C" fn free(p: *mut c_void) {
        // SAFETY: SQLite frees only blocks `malloc` or `realloc` gave it (or null).
        unsafe { mi::mi_free(p) }
    }
    unsafe extern "C" fn realloc(p: *mut c_void, n: c_int) -> *mut c_void {
        // SAFETY: as for `free`; SQLite never asks for a negative size.
        unsafe { mi::mi_realloc(p, n as usize) }
    }
    unsafe extern "C" fn size(p: *mut c_void) -> c_int {
        // SAFETY: as for `free`. SQLite's blocks are under 2 GiB (its length limits).
        unsafe { mi::mi_usable_size(p) as c_int }
    }
    unsafe extern "C" fn roundup(n: c_int) -> c_int {
        // mimalloc's blocks are words. SQLite asks only for sizes under 0x7fffff00 (it
        // refuses larger ones before calling), so this cannot overflow.
        (n + 7) & !7
    }
    unsafe extern "C" fn init(_: *mut c_void) -> c_int {
        ffi::SQLITE_OK
    }
    unsafe extern "C" fn shutdown(_: *mut c_void) {}

    let methods = ffi::sqlite3_mem_methods {
        xMalloc: Some(malloc),
        xFree: Some(free),
        xRealloc: Some(realloc),
        xSize: Some(size),
        xRoundup: Some(roundup),
        xInit: Some(init),
        xShutdown: Some(shutdown),
        pAppData: std::ptr::null_mut(),
    };
    // SAFETY: `sqlite3_config` before `sqlite3_initialize` (it refuses with SQLITE_MISUSE
    // otherwise, changing nothing); SQLite copies the methods before it returns, and every
    // method keeps SQLite's contract (8-byte aligned blocks, sizes of live blocks).
    unsafe {
        ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int) == ffi::SQLITE_OK
            && ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &methods as *const ffi::sqlite3_mem_methods)
                == ffi::SQLITE_OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Configured first in a process, SQLite allocates from mimalloc and counts nothing;
    /// once it has started, configuring it is refused and changes nothing. Runs in a child
    /// process of this test binary, where no other test has opened a database yet.
    #[test]
    fn sqlite_allocates_from_mimalloc_when_configured_first() {
        const CHILD: &str = "CTRFLOW_TEST_SQLITE_CONFIG_CHILD";
        const NAME: &str = "connectors::sqlite::memory::tests::sqlite_allocates_from_mimalloc_when_configured_first";
        if std::env::var_os(CHILD).is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", NAME, "--test-threads=1"])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("1 passed"),
                "child: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        assert!(configure(), "configured before SQLite started");
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t(a); INSERT INTO t VALUES (randomblob(50000)), (zeroblob(9));").unwrap();
        let n: i64 = conn.query_row("SELECT sum(length(a)) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 50_009);
        // SAFETY: a block from SQLite's allocator, checked and given back once.
        unsafe {
            let p = ffi::sqlite3_malloc(100);
            assert!(!p.is_null() && mi::mi_is_in_heap_region(p), "SQLite's block is mimalloc's");
            ffi::sqlite3_free(p);
            assert_eq!(ffi::sqlite3_memory_used(), 0, "SQLite keeps no memory statistics");
        }
        assert!(!configure(), "refused once SQLite has started");
    }
}
