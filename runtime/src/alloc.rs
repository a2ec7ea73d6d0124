//! [`Allocator`]: mimalloc, asked for blocks the way it serves them fastest.
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

#[cfg(test)]
mod tests {
    use super::*;

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
