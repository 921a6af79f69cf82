//! The node's global allocator: the system allocator, except that a single allocation of
//! [`HUGE_BYTES`] or more is reserved lazily (`mmap` with `MAP_NORESERVE`) instead of refused.
//!
//! Why: the Kafka codecs (`kafka-protocol` 0.18) size a vector from an array length read off the
//! wire before decoding a single element (upstream kafka-protocol-rs PRs #152 and #200, open).
//! Fourteen bytes naming an array of `i32::MAX` topics ask for ~150 GB; the system allocator
//! refuses that under Linux's default overcommit heuristic, and a refused allocation aborts the
//! process — every partition this node serves would go down with one bad frame. Reserved
//! lazily, the request costs address space only: the decode then fails on the missing bytes
//! (each element takes at least one byte of the frame, so at most a frame's worth of pages is
//! ever touched) and the reservation is unmapped. Nothing in Odradek allocates this much on
//! purpose (frames are at most 32 MiB, the request budget 256 MiB), so every other allocation
//! goes to the system allocator unchanged.
//!
//! Invariant: a block is from `mmap` exactly when its layout's size is at least `HUGE_BYTES`,
//! so `dealloc` and `realloc` know which allocator owns a block from its layout alone.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are reserved lazily (see the module comment).
pub const HUGE_BYTES: usize = 1 << 30;

/// The system allocator with lazy reservation of huge blocks.
pub struct LazyHuge;

/// `mmap` returns page-aligned blocks; larger alignments go to the system allocator's rules.
const PAGE_BYTES: usize = 4096;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE_BYTES && layout.align() <= PAGE_BYTES
}

// SAFETY (for the impl): small blocks are the system allocator's, untouched; huge blocks are
// fresh anonymous private mappings of exactly `layout.size()` bytes (page-aligned, so any
// alignment up to a page holds), unmapped with the same size. The invariant above keeps the
// two apart.
unsafe impl GlobalAlloc for LazyHuge {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_huge(&layout) {
            return unsafe { System.alloc(layout) };
        }
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        let block = unsafe { libc::mmap(std::ptr::null_mut(), layout.size(), libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0) };
        if block == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            block.cast()
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            let unmapped = unsafe { libc::munmap(block.cast(), layout.size()) };
            debug_assert_eq!(unmapped, 0, "unmapping a huge block failed");
        } else {
            unsafe { System.dealloc(block, layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // Anonymous mappings are zero-filled.
            unsafe { self.alloc(layout) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            return unsafe { System.realloc(block, layout, new_size) };
        }
        // Across the threshold (or within it): a new block, the bytes copied, the old one freed.
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_huge_reservation_costs_address_space_only_and_small_blocks_are_the_systems() {
        // Far above this machine's memory: refused by the system allocator (an abort in a Vec).
        let reserved: Vec<u64> = Vec::with_capacity(1 << 37);
        assert!(reserved.capacity() >= 1 << 37);
        drop(reserved);
        let mut grown: Vec<u8> = Vec::with_capacity(16);
        grown.extend_from_slice(b"small blocks are untouched");
        assert_eq!(&grown[..5], b"small");
    }
}
