//! [`Allocator`]: mimalloc, asked for blocks the way it serves them fastest; and
//! [`configure_sqlite`], which gives SQLite's own allocations to it too.
//!
//! Records are trees of small allocations (a contact record is about two hundred of them:
//! its keys, its strings, its maps' nodes), and glibc's `malloc`/`free` were the largest
//! single item in profiles of the demo and of one hop, so the binary and the benchmarks
//! allocate with mimalloc (`#[global_allocator]` in `main.rs` and each bench).
//!
//! The `mimalloc` crate's own `GlobalAlloc` asks for every block through
//! `mi_malloc_aligned`, whatever its alignment. Nearly every block Rust asks for wants an
//! alignment of 8 or less, which every mimalloc block has (block sizes are whole words,
//! and pages start on word boundaries), and `mi_malloc` skips the aligned path's checks
//! and its generic fallback, which it takes for every block over 1 KiB and whenever the
//! size's page has no free block at hand. Measured with callgrind on the throughput graph:
//! 69 instructions an allocation through `mi_malloc_aligned` (docs/performance.md,
//! eighteenth round). Larger alignments still go through mimalloc's aligned calls.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The global allocator of the binary and the benchmarks.
pub struct Allocator;

/// The alignment every mimalloc block has: a word.
const WORD: usize = std::mem::size_of::<usize>();

// SAFETY: every method hands the layout's request to mimalloc, which returns blocks of at
// least the size asked for, aligned as asked (`mi_malloc` and friends only where the
// alignment asked for is at most a word, which every block has), or null when out of
// memory; `dealloc` and `realloc` receive only blocks these methods returned, which are all
// mimalloc's and may be freed or resized by `mi_free` and `mi_realloc` whatever call made them.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl's comment.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl's comment.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: see the impl's comment.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: see the impl's comment; the block keeps the layout's alignment.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

/// Hands SQLite's own allocations (its page cache, statements, rows being built) to
/// mimalloc and turns off SQLite's memory statistics, before any database is opened.
///
/// By default SQLite allocates through the C library's `malloc`, and with its statistics on
/// (the compiled-in default) it takes one process-wide mutex around every allocation and
/// free to count them; the SQLite sinks' writers run on several threads at once. Nothing
/// in ctrflow reads those statistics. Returns false when SQLite was already initialised
/// (a connection was opened first), in which case it keeps its defaults; call it at the
/// start of `main`.
pub fn configure_sqlite() -> bool {
    use rusqlite::ffi;
    use std::ffi::c_int;

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
        const NAME: &str = "alloc::tests::sqlite_allocates_from_mimalloc_when_configured_first";
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
        use rusqlite::ffi;
        assert!(configure_sqlite(), "configured before SQLite started");
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
        assert!(!configure_sqlite(), "refused once SQLite has started");
    }

    /// Every size a record's blocks come in and past mimalloc's small and medium sizes, every
    /// alignment up to a page: each block is aligned as asked, holds what is written to its
    /// every byte, keeps it when grown, and is zeroed when asked.
    #[test]
    fn every_block_is_aligned_as_asked_and_holds_its_size() {
        let sizes = (1..=300).chain([1023, 1024, 1025, 4096, 65_536, 1 << 20, (8 << 20) + 3]);
        for size in sizes {
            for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero sizes; each block is used within its size and freed once.
                unsafe {
                    let p = Allocator.alloc(layout);
                    assert!(!p.is_null() && (p as usize).is_multiple_of(align), "{size} bytes aligned to {align}");
                    std::ptr::write_bytes(p, 0xAB, size);
                    let grown = Allocator.realloc(p, layout, size * 2 + 1);
                    assert!(
                        !grown.is_null() && (grown as usize).is_multiple_of(align),
                        "{size} grown, aligned to {align}"
                    );
                    assert!((0..size).all(|i| *grown.add(i) == 0xAB), "{size} bytes kept when grown");
                    Allocator.dealloc(grown, Layout::from_size_align(size * 2 + 1, align).unwrap());
                    let z = Allocator.alloc_zeroed(layout);
                    assert!(!z.is_null() && (z as usize).is_multiple_of(align));
                    assert!((0..size).all(|i| *z.add(i) == 0), "{size} bytes zeroed");
                    Allocator.dealloc(z, layout);
                }
            }
        }
    }
}
