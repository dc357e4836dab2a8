//! Packs the heap just before the snapshot.
//!
//! Building leaves gaps all over the heap: the script's source, its
//! bytecode, the scratch runtime that compiled it. The allocator keeps
//! those gaps on its free lists, and a call's small allocations would be
//! carved out of them, scattered over the whole heap; every page a call
//! touches is a page to check and restore when the sandbox's memory is
//! reset after it. [`seal`] takes every free block out of circulation,
//! zeroed so that it costs nothing in the snapshot, and leaves the
//! allocator only its top chunk: a call's allocations then sit together at
//! the end of the heap, whatever the size of the script. The price is that
//! a call cannot reuse those gaps: at most what building left free, counted
//! against the call's memory limit like the rest of the snapshot.
//!
//! This relies on how wasi-libc's allocator (dlmalloc) lays out a chunk on
//! wasm32: a 4-byte size word, with flags in its low 3 bits, right before
//! the memory it hands out; chunks follow one another; the top chunk ends
//! just below the break. Every step is bounded, so a different allocator
//! costs at worst a few wasted blocks, never a hang.

use std::ptr;

unsafe extern "C" {
    fn malloc(size: usize) -> *mut u8;
    fn free(block: *mut u8);
    fn malloc_usable_size(block: *mut u8) -> usize;
    fn sbrk(increment: isize) -> *mut u8;
}

/// Request sizes, largest first: each round takes the free blocks that the
/// rounds before it could not use.
const ROUNDS: [usize; 12] = [
    1 << 20,
    256 << 10,
    64 << 10,
    16 << 10,
    4 << 10,
    1 << 10,
    256,
    128,
    64,
    32,
    16,
    8,
];

/// Slack between the top chunk's end and the break (dlmalloc keeps a small
/// footer there).
const TOP_SLACK: usize = 256;

/// Takes every free block off the allocator's free lists. Call it last,
/// after everything built during initialization has been dropped.
///
/// Returns whether the heap ended up sealed: the last round reached the top
/// chunk, and a small allocation now comes from it, above every block taken
/// out. `false` means the allocator no longer lays out chunks as described
/// above (a toolchain update): calls would quietly get slower and the build
/// could reserve up to twice the memory, so the build must fail instead.
pub fn seal() -> bool {
    // SAFETY: sbrk(0) only reads the current break.
    let heap_end = unsafe { sbrk(0) } as usize;
    // Never take more than the heap holds: if the layout assumptions were
    // wrong, this bounds the waste.
    let mut budget = heap_end;
    let mut highest_taken = 0;
    let mut reached_top = false;
    for size in ROUNDS {
        reached_top = false;
        while budget >= size {
            // SAFETY: plain allocation; the block is checked before use.
            let block = unsafe { malloc(size) };
            if block.is_null() {
                return false;
            }
            if comes_from_top(block) {
                // SAFETY: `block` was just allocated and is freed once.
                unsafe { free(block) };
                reached_top = true;
                break;
            }
            // SAFETY: `block` holds `malloc_usable_size(block)` bytes, and
            // it is never freed: it stays out of circulation.
            unsafe { ptr::write_bytes(block, 0, malloc_usable_size(block)) };
            highest_taken = highest_taken.max(block as usize);
            budget -= size;
        }
    }
    // SAFETY: plain allocation, freed at once.
    let probe = unsafe { malloc(8) };
    if probe.is_null() {
        return false;
    }
    let sealed = reached_top && comes_from_top(probe) && probe as usize > highest_taken;
    // SAFETY: `probe` was just allocated and is freed once.
    unsafe { free(probe) };
    sealed
}

/// Whether `block` was carved from the top chunk: the chunk after it is
/// then the rest of the top chunk, which ends at the break.
fn comes_from_top(block: *mut u8) -> bool {
    let size_of = |chunk: usize| {
        // SAFETY: `chunk + 4` is the size word of a chunk inside the heap.
        (unsafe { ptr::read_volatile((chunk + 4) as *const u32) } as usize) & !7
    };
    let chunk = block as usize - 8;
    let next = chunk + size_of(chunk);
    // SAFETY: sbrk(0) only reads the current break.
    let heap_end = unsafe { sbrk(0) } as usize;
    next < heap_end && heap_end - (next + size_of(next)) < TOP_SLACK
}
